"""The generator trainers' command lines (`patchlib train sing|vae|wavenet-gen|sample-rnn`): every option reaches
the training config, bad counts and bad data are clean errors (exit 2, one line naming the option), never a
traceback."""
import dataclasses

import pytest

from nodes.neural import train_sample_rnn, train_sing, train_vae, train_wavenet_gen
from nodes.neural.traincli import check_counts, config_from_args, run_train
from patchlib.cli import build_parser, main

TRAINERS = {
    "sing": train_sing.SingTrainConfig,
    "vae": train_vae.VaeTrainConfig,
    "wavenet-gen": train_wavenet_gen.GenTrainConfig,
    "sample-rnn": train_sample_rnn.Config,
}
#: options that steer the command rather than the training
NOT_CONFIG = {"handler", "command", "train_what", "evaluate"}


def _sub(what):
    t = next(a for a in build_parser()._subparsers._group_actions[0].choices.values() if a.prog.endswith(" train"))
    return t._subparsers._group_actions[0].choices[what]


@pytest.mark.parametrize("what", TRAINERS)
def test_every_option_is_a_config_field(what):
    """An option that no config field takes would be parsed and silently dropped."""
    p = _sub(what)
    dests = {a.dest for a in p._actions if a.dest != "help"}
    fields = {f.name for f in dataclasses.fields(TRAINERS[what])}
    assert dests - NOT_CONFIG <= fields, sorted(dests - NOT_CONFIG - fields)


@pytest.mark.parametrize("what", TRAINERS)
def test_options_reach_the_config(what, tmp_path):
    """Every parsed value lands in the field of its name (here: the output path, the seed, the threads)."""
    a = build_parser().parse_args(["train", what, "-o", str(tmp_path / "m.pt"), "--seed", "7", "--threads", "2"])
    cfg = config_from_args(TRAINERS[what], a)
    assert (cfg.output, cfg.seed, cfg.threads) == (str(tmp_path / "m.pt"), 7, 2)
    for f in dataclasses.fields(cfg):
        if hasattr(a, f.name):
            assert getattr(cfg, f.name) == getattr(a, f.name), f.name


@pytest.mark.parametrize("what,option", [("sing", "--gen-steps"), ("vae", "--crop"), ("wavenet-gen", "--steps"),
                                         ("sample-rnn", "--batch"), ("wavenet-gen", "--threads")])
def test_a_count_below_one_is_refused_before_training(what, option, tmp_path, capsys):
    rc = main(["train", what, "-o", str(tmp_path / "m.pt"), "--data", str(tmp_path / "none"), option, "0"])
    err = capsys.readouterr().err
    assert rc == 2 and f"{option} must be >= 1" in err, err
    assert not (tmp_path / "none").exists()  # refused before rendering any data


def test_wavenet_gen_eval_only_without_a_state_is_a_clean_error(tmp_path, capsys):
    """--eval-only with no saved state: one line that names the missing file, exit 2 (was a traceback), and
    no dataset rendered for nothing."""
    rc = main(["train", "wavenet-gen", "-o", str(tmp_path / "m.pt"), "--data", str(tmp_path / "data"), "--eval-only"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    assert err.strip() == f"error: --eval-only needs the training state {tmp_path / 'm.pt'}.state.pt"
    assert not (tmp_path / "data").exists()


def test_run_train_exit_codes(capsys):
    def boom(exc):
        def f(cfg):
            raise exc
        return f
    assert run_train(lambda cfg: None, None) == 0
    assert run_train(boom(ValueError("bad data")), None) == 2
    assert run_train(boom(RuntimeError("training diverged at step 3")), None) == 1
    assert run_train(boom(KeyboardInterrupt()), None) == 130
    assert run_train(lambda cfg: None, None, "--steps must be >= 1 (got 0)") == 2
    err = capsys.readouterr().err
    assert "error: bad data" in err and "error: training diverged" in err and "--steps must be >= 1" in err


def test_check_counts_names_the_first_bad_option():
    class A:
        steps, batch, crop = 5, 0, -1
    assert check_counts(A, ("steps", "batch", "crop")) == "--batch must be >= 1 (got 0)"
    assert check_counts(A, ("steps",)) is None

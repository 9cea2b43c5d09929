"""Mistakes in a patch, as a user meets them: `patchlib check` / `patchlib render`.

Each case writes a small broken patch to a file and runs the real CLI entry
point. The contract: a non-zero exit, a message on stderr that names the
file, the line and the node (and says what would be valid), and never a
Python traceback. A render that fails leaves no output file behind.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from patchlib import Node, Output, PatchError, register
from patchlib.cli import main

from conftest import write_patch


def check_fails(tmp_path, capsys, text, name, *, line, node=None, argv=None):
    """Run `patchlib check` on a broken patch; returns stderr after the common assertions."""
    path = write_patch(tmp_path, text, name)
    rc = main(argv or ["check", path])
    out, err = capsys.readouterr()
    assert rc != 0, f"exit code 0 for a broken patch; stdout: {out}"
    assert "Traceback" not in out + err
    assert err.startswith("error: "), err
    assert f"{path}:{line}" in err, f"file and line {line} not named in: {err}"
    if node is not None:
        assert f"node '{node}'" in err, f"node {node!r} not named in: {err}"
    return err


# ---------------------------------------------------------------- YAML
def test_yaml_syntax_error(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc: {type: sine, freq: 440
        out: osc
        """, "syntax.yaml", line=3, node="osc")
    assert "YAML syntax error" in err
    assert "line 2" in err  # where the unclosed mapping starts


def test_yaml_tab_indentation(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, "nodes:\n  osc: {type: sine}\n\tamp: {type: gain, in: osc}\nout: osc\n",
                      "tab.yaml", line=3)
    assert "YAML syntax error" in err


def test_duplicate_node_name(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc: {type: sine}
          osc: {type: saw}
        out: osc
        """, "dup.yaml", line=3, node="osc")
    assert "duplicate key 'osc'" in err and "line 2" in err


def test_duplicate_param_key(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          lfo: {type: sine, freq: 2}
          osc:
            type: sine
            freq: 440
            freq: 880
        out: osc
        """, "dup_param.yaml", line=6, node="osc")
    assert "duplicate key 'freq'" in err and "line 5" in err


def test_yaml_tags_are_refused(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc: !!python/object/apply:os.system ["echo pwned"]
        out: osc
        """, "tag.yaml", line=2, node="osc")
    assert "could not determine a constructor" in err


# ---------------------------------------------------------------- node types and keys
def test_unknown_node_type_suggests_nearest(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc:  {type: saw, freq: 110}
          filt: {type: lowpas, in: osc}
        out: filt
        """, "type.yaml", line=3, node="filt")
    assert "unknown node type 'lowpas'" in err
    assert "did you mean 'lowpass'" in err


def test_unknown_type_far_from_any_points_to_the_list(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          x: {type: zzzzzzzz}
        out: x
        """, "type2.yaml", line=2, node="x")
    assert "patchlib nodes" in err


def test_unknown_param_suggests_nearest(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc:  {type: saw}
          filt:
            type: lowpass
            in: osc
            cutof: 300
        out: filt
        """, "param.yaml", line=6, node="filt")
    assert "'cutof'" in err and "did you mean 'cutoff'" in err


@pytest.mark.parametrize("body, line_text, expect", [
    ("filt: {type: lowpass, in: osc, q: 90}", "q", "q = 90 is out of range [0.1, 40]"),
    ("filt: {type: lowpass, in: osc, cutoff: 30kHz}", "cutoff", "cutoff = 30000 Hz is out of range [10, 24000] Hz"),
    ("filt: {type: delay, in: osc, time: 90s}", "time", "time = 90 s is out of range [0, 60] s"),
    ("filt: {type: gain, in: osc, gain: 30dB}", "gain", "out of range [-16, 16] x"),
])
def test_value_out_of_range_shows_range_and_unit(tmp_path, capsys, body, line_text, expect):
    err = check_fails(tmp_path, capsys, f"""\
        nodes:
          osc: {{type: saw}}
          {body}
        out: filt
        """, "range.yaml", line=3, node="filt")
    assert expect in err
    assert f"key '{line_text}'" in err


def test_modulation_range_out_of_range(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          lfo:  {type: sine, freq: 0.3}
          osc:  {type: saw}
          filt: {type: lowpass, in: osc, cutoff: {from: lfo, range: [300, 30000], curve: exp}}
        out: filt
        """, "modrange.yaml", line=4, node="filt")
    assert "30000 Hz is out of range [10, 24000] Hz" in err


# ---------------------------------------------------------------- connections
def test_connection_to_missing_node(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc:  {type: saw}
          filt: {type: lowpass, in: oscc}
        out: filt
        """, "missing.yaml", line=3, node="filt")
    assert "'oscc'" in err and "not a node" in err and "did you mean 'osc'" in err


def test_modulation_from_missing_node(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc:  {type: saw}
          filt: {type: lowpass, in: osc, cutoff: {from: lfoo, range: [300, 3000]}}
        out: filt
        """, "missing_mod.yaml", line=3, node="filt")
    assert "'lfoo'" in err and "key 'cutoff'" in err


def test_connection_to_missing_port(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc:  {type: saw}
          filt: {type: lowpass, in: osc.nope}
        out: filt
        """, "port.yaml", line=3, node="filt")
    assert "'osc' has no output 'nope'" in err
    assert "out" in err.split("hint:")[1]  # lists the valid outputs


def test_input_not_connected(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          filt: {type: lowpass, cutoff: 300}
        out: filt
        """, "unconnected.yaml", line=2, node="filt")
    assert "input 'in' is not connected" in err


def test_missing_out(tmp_path, capsys):
    # no node is at fault here: the message names the file, the line and the key
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc: {type: sine}
        """, "noout.yaml", line=1)
    assert "key 'out'" in err and "no output" in err


def test_out_names_missing_node(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc: {type: sine}
        out: os
        """, "outmissing.yaml", line=3, node="out")
    assert "'os'" in err and "did you mean 'osc'" in err


# ---------------------------------------------------------------- types
def test_type_mismatch_param_given_a_list(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc: {type: sine, freq: [440, 880]}
        out: osc
        """, "list.yaml", line=2, node="osc")
    assert "type mismatch" in err and "'freq'" in err


def test_type_mismatch_input_given_a_number(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc:  {type: sine}
          filt: {type: lowpass, in: 3}
        out: filt
        """, "in3.yaml", line=3, node="filt")
    assert "type mismatch" in err and "'in'" in err


def test_type_mismatch_stereo_into_pan(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc: {type: sine}
          p1:  {type: pan, in: osc}
          p2:  {type: pan, in: p1}
        out: p2
        """, "stereo.yaml", line=4, node="p2")
    assert "type mismatch" in err and "1 channel" in err and "'p1' gives 2" in err


def test_type_mismatch_unit(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc: {type: sine, freq: 250ms}
        out: osc
        """, "unit.yaml", line=2, node="osc")
    assert "'250ms'" in err and "Hz" in err


# ---------------------------------------------------------------- cycles
def test_cycle_without_delay_names_the_cycle(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          src: {type: saw}
          a:   {type: mix, in: [src, f], gains: [1, 0.5]}
          f:   {type: lowpass, in: a}
        out: a
        """, "cycle.yaml", line=3, node="a")
    assert "cycle without a delay: a -> f -> a" in err
    assert "delay" in err.split("hint:")[1]


def test_cycle_through_a_param_modulation(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc:  {type: sine, freq: {from: filt, range: [100, 200]}}
          filt: {type: lowpass, in: osc}
        out: filt
        """, "modcycle.yaml", line=2, node="osc")
    assert "cycle without a delay" in err and "osc" in err and "filt" in err


# ---------------------------------------------------------------- score
@pytest.mark.parametrize("event, expect", [
    ("{at: 1, set: os.freq, to: 220}", ["no node 'os'", "did you mean 'osc'"]),
    ("{at: 1, set: osc.frq, to: 220}", ["node 'osc'", "has no param 'frq'", "did you mean 'freq'"]),
    ("{at: 1, set: osc.freq}", ["node 'osc'", "needs 'to: VALUE'"]),
    ("{at: 1, set: osc.freq, to: 30kHz}", ["node 'osc'", "out of range [0, 24000] Hz"]),
    ("{at: 1, ramp: osc.freq, to: 220}", ["node 'osc'", "ramp needs 'over"]),
    ("{at: 1, trigger: osc}", ["node 'osc'", "takes no 'trigger' events"]),
    ("{at: 1, trigger: envv}", ["no node 'envv'", "did you mean 'env'"]),
    ("{at: -1, trigger: env}", ["cannot be negative"]),
    ("{set: osc.freq, to: 220}", ["needs 'at'"]),
    ("{at: 1, sett: osc.freq, to: 220}", ["unknown key 'sett'", "did you mean 'set'"]),
])
def test_bad_score_event(tmp_path, capsys, event, expect):
    err = check_fails(tmp_path, capsys, f"""\
        nodes:
          osc: {{type: sine}}
          env: {{type: adsr}}
          amp: {{type: gain, in: osc, gain: env}}
        out: amp
        score:
          - {{at: 0, trigger: env}}
          - {event}
        """, "score.yaml", line=8)
    for text in expect:
        assert text in err, f"{text!r} not in {err!r}"


def test_every_mistake_is_reported_at_once(tmp_path, capsys):
    err = check_fails(tmp_path, capsys, """\
        nodes:
          osc:  {type: sine, freq: 99kHz}
          filt: {type: lowpas, in: osc}
        out: osc
        """, "two.yaml", line=2, node="osc")
    path = str(tmp_path / "two.yaml")
    assert f"{path}:3, node 'filt'" in err


def test_patch_file_that_does_not_exist(tmp_path, capsys):
    path = str(tmp_path / "nothere.txt")
    assert main(["check", path]) != 0
    out, err = capsys.readouterr()
    assert path in err and "cannot read patch" in err and "Traceback" not in out + err


def test_check_accepts_a_good_patch(tmp_path, capsys):
    """The other side of every test above: the same checker passes a correct patch."""
    path = write_patch(tmp_path, """\
        nodes:
          lfo:  {type: sine, freq: 0.3}
          osc:  {type: saw, freq: 110}
          filt: {type: lowpass, in: osc, cutoff: {from: lfo, range: [300, 3000], curve: exp}, q: 4}
        out: filt
        score:
          - {at: 1, set: osc.freq, to: 220}
        """)
    assert main(["check", path]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ok: ") and err == ""


# ---------------------------------------------------------------- render writes nothing on failure
def _dir_listing(d):
    return sorted(os.listdir(d))


def test_render_of_bad_patch_writes_nothing(tmp_path, capsys):
    path = write_patch(tmp_path, """\
        nodes:
          osc:  {type: saw}
          filt: {type: lowpass, in: osc, q: 90}
        out: filt
        """)
    before = _dir_listing(tmp_path)
    wav = tmp_path / "out.wav"
    rc = main(["render", path, "-o", str(wav), "-q"])
    out, err = capsys.readouterr()
    assert rc != 0
    assert f"{path}:3, node 'filt'" in err and "Traceback" not in out + err
    assert not wav.exists()
    assert _dir_listing(tmp_path) == before  # no partial/temporary file either


def test_render_without_input_audio_writes_nothing(tmp_path, capsys):
    path = write_patch(tmp_path, """\
        nodes:
          dry:  {type: input}
          filt: {type: lowpass, in: dry}
        out: filt
        """)
    before = _dir_listing(tmp_path)
    wav = tmp_path / "out.wav"
    rc = main(["render", path, "-o", str(wav), "-q", "--seconds", "0.1"])
    out, err = capsys.readouterr()
    assert rc != 0
    assert f"{path}:2, node 'dry'" in err and "--input" in err and "Traceback" not in out + err
    assert _dir_listing(tmp_path) == before


def test_render_with_unreadable_input_file_writes_nothing(tmp_path, capsys):
    path = write_patch(tmp_path, """\
        nodes:
          dry: {type: input}
        out: dry
        """)
    missing = str(tmp_path / "missing.wav")
    wav = tmp_path / "out.wav"
    rc = main(["render", path, "--input", missing, "-o", str(wav), "-q"])
    out, err = capsys.readouterr()
    assert rc != 0 and missing in err and "Traceback" not in out + err
    assert not wav.exists()


_FAIL_AT = 4800


class _FailMidway(Node):
    """Plays a tone, then fails at frame 4800 (a user interrupt, or a node's PatchError)."""

    outputs = {"out": Output("a tone", channels=1)}
    mode = "interrupt"

    def process(self, n, t):
        if t + n > _FAIL_AT:
            if self.mode == "interrupt":
                raise KeyboardInterrupt
            raise PatchError("gave up mid-way")
        self.out["out"][0, :n] = 0.25 * np.sin(2 * np.pi * 440 * (t + np.arange(n)) / 48000)


@pytest.mark.parametrize("mode", ["interrupt", "patch_error"])
def test_render_that_fails_midway_writes_nothing(tmp_path, capsys, monkeypatch, scratch_registry, mode):
    register("test_fail_midway")(_FailMidway)
    monkeypatch.setattr(_FailMidway, "mode", mode)
    path = write_patch(tmp_path, """\
        nodes:
          tone: {type: test_fail_midway}
        out: tone
        """)
    # the target already exists from an earlier render: a failed render must leave it alone
    wav = tmp_path / "out.wav"
    sf.write(str(wav), np.zeros(10, dtype=np.float32), 48000)
    old = wav.read_bytes()
    before = _dir_listing(tmp_path)
    rc = main(["render", path, "-o", str(wav), "-q", "--seconds", "1"])
    out, err = capsys.readouterr()
    assert rc != 0 and "Traceback" not in out + err
    assert ("interrupted; nothing written" if mode == "interrupt" else "gave up mid-way") in err
    assert wav.read_bytes() == old
    assert _dir_listing(tmp_path) == before

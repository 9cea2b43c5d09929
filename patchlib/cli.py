"""The `patchlib` command line."""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path

from .errors import PatchError

MAIN_HELP = """\
patchlib: write a patch in YAML, check it, render it to WAV.

A patch is a graph of nodes; any param can be a constant, a scored
automation, or driven by another node's signal:

    # bass.yaml
    sample_rate: 48000
    nodes:
      lfo:    {type: sine, freq: 0.3}
      osc:    {type: saw, freq: A1}
      filter: {type: lowpass, in: osc, cutoff: {from: lfo, range: [300, 3000], curve: exp}, q: 4}
      amp:    {type: gain, in: filter, gain: -10dB}
    out: amp

    patchlib check bass.yaml                  # validate (file, line, node for every mistake)
    patchlib render bass.yaml -o bass.wav --seconds 10 --spectrogram bass.png
    patchlib graph bass.yaml -o bass-graph.png
    patchlib nodes                            # every node type; 'patchlib nodes lowpass' for one

The patch format: docs/patch-format.md. Node reference: docs/nodes.md.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="patchlib", description=MAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    p.add_argument("--version", action="version", version=f"patchlib {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("render", help="render a patch to a WAV file", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=textwrap.dedent("""\
        Render a patch offline to a WAV file (24-bit by default), with a progress bar.
        The file appears only when the render succeeded: a failed render leaves nothing.

        examples:
          patchlib render patches/flagship.yaml -o flagship.wav --spectrogram flagship.png
          patchlib render patches/echo.yaml --input guitar.wav -o wet.wav
          patchlib render bass.yaml -o bass.wav --seconds 30 --block-size 64 --sample-rate 44100
        """))
    r.add_argument("patch", help="the YAML patch")
    r.add_argument("-o", "--output", required=True, metavar="OUT.wav",
                   help="the WAV file to write (with --sweep: the folder for the files and manifest)")
    r.add_argument("--input", metavar="IN.wav", help="audio for the patch's 'input' node")
    r.add_argument("--seconds", type=float, metavar="S", help="length (default: the patch's duration)")
    r.add_argument("--block-size", type=int, metavar="N", help="frames per block (speed only; the sound is the same)")
    r.add_argument("--sample-rate", type=int, metavar="R", help="override the patch's sample rate")
    r.add_argument("--spectrogram", metavar="OUT.png", help="also write a waveform + spectrogram picture")
    r.add_argument("--format", choices=["pcm16", "pcm24", "float"], default="pcm24", help="sample format (default pcm24)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    from .dataset import add_dataset_parser, add_sweep_args

    add_sweep_args(r)  # --sweep PARAM=LO:HI:N: one file per point (then -o is a folder)
    add_dataset_parser(sub)

    c = sub.add_parser("check", help="validate a patch without rendering",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Validate a patch: syntax, node types, params and ranges, connections, cycles,\n"
                                   "score. Prints every mistake with file, line and node; exits 1 if any.\n\n"
                                   "example:\n  patchlib check patches/flagship.yaml")
    c.add_argument("patch")

    n = sub.add_parser("nodes", help="list node types, or one type's params",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="List every node type, or show one type's inputs, outputs, params (unit, range,\n"
                                   "default, curve, rate), options and events.\n\n"
                                   "examples:\n  patchlib nodes\n  patchlib nodes lowpass\n"
                                   "  patchlib nodes --markdown > docs/nodes.md")
    n.add_argument("type", nargs="?", help="a node type")
    n.add_argument("--markdown", action="store_true", help="print the reference as Markdown")

    g = sub.add_parser("graph", help="draw a patch's graph to a PNG",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Draw the patch: nodes left to right in signal order, audio connections solid,\n"
                                   "param modulations dashed.\n\nexample:\n"
                                   "  patchlib graph patches/flagship.yaml -o graph.png")
    g.add_argument("patch")
    g.add_argument("-o", "--output", required=True, metavar="OUT.png")

    b = sub.add_parser("bench", help="benchmark the engine against pyo and scipy, and the neural pedals",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=textwrap.dedent("""\
        Render reference workloads with patchlib (and with pyo's offline server where it has
        the same patch), in one run, at each block size, and print real-time factors (xRT):

          voices   16 band-limited saws through resonant lowpasses swept by their own LFOs,
                   mixed (also rendered by hand-written numpy/scipy chains); vs pyo
          strings  8 Karplus-Strong strings (E2 A2 D3 G3 B3 E4 A4 D5, T60 2 s), each plucked
                   every 0.5 s by score events, mixed; vs pyo
          neural   a plucked-string riff into a 'pedal' node: the shipped overdrive.pt, NAM's
                   standard WaveNet and NAM's 3x18 LSTM (.nam files, seeded random weights),
                   each with engine fast (fused numba) and torch (one torch call per op; at
                   most 10 s rendered), one thread; and the diode_clipper (oversample 4, 2)
                   and the riff alone. Per row: xRT, fast/torch, multiply-adds per sample,
                   GFLOP/s and its share of the one-thread float32 peak measured in the run.
          generators  each shipped neural generator (SING, sample-level RNN, WaveNet) and the
                   VAE (encoder + decoder of a timbre transfer) alone at 16 kHz: xRT against
                   its multiply-adds per sample
          live     a patch played in real time (null backend) under OSC: latency, 5000 param
                   messages/s for 10 s to 20 nodes, the highest rate sustained, 10,000 malformed
                   packets, bundle timing, and 100 random live graph edits (unpinned)

        Targets, checked and reported as met / NOT met / n/a: live: none lost and no underrun
        at 5000 msg/s, every malformed packet counted; voices patchlib/pyo >= 1.0 at
        block 256 and >= 0.7 at block 64, and faster than scipy; strings patchlib/pyo >= 2.0 at
        blocks 64 and 256; neural at block 64, fast engine: overdrive.pt >= 10x real time,
        standard WaveNet >= 5x, LSTM >= 10x; generators at 16 kHz: SING >= 50x, sample-level
        RNN >= 2x, WaveNet >= 1x, VAE encoder + decoder >= 20x; start-up (import + first
        block of each DSP patch, warm numba cache) under 2 s. Runs pinned to one core; each figure is the best
        of --repeats runs. Writes the report (patches, tables, targets, what each engine runs)
        to docs/benchmarks.md.

        examples:
          patchlib bench                                  # 30 s per figure, a few minutes
          patchlib bench --seconds 5 --output -           # quick look, print only
          patchlib bench --workloads strings --block-sizes 64 --seconds 5 --output /tmp/b.md
          patchlib bench --workloads neural --seconds 5 --no-startup --output -
        """))
    b.add_argument("--seconds", type=float, default=30.0, help="audio seconds per measurement (default 30)")
    b.add_argument("--block-sizes", default="64,256", help="comma-separated (default 64,256)")
    b.add_argument("--workloads", default="voices,strings,neural,generators,live",
                   help="comma-separated, from voices, strings, neural, generators, live (default all)")
    b.add_argument("--repeats", type=int, default=2, metavar="N", help="runs per figure, the best counts (default 2)")
    b.add_argument("--output", default="docs/benchmarks.md", help="Markdown report to write ('-' for none)")
    b.add_argument("--no-pyo", action="store_true", help="skip the pyo comparison (its targets become n/a)")
    b.add_argument("--no-scipy", action="store_true", help="skip the scipy comparison")
    b.add_argument("--no-startup", action="store_true", help="skip the start-up measurement")

    t = sub.add_parser("train", help="train a model (pedal: a neural effect; mapper: a sensor-to-params mapping)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train a model: 'patchlib train pedal --help' (a WaveNet/LSTM effect from dry/wet "
                                   "WAVs), 'patchlib train mapper --help' (a gesture mapping from examples), "
                                   "'patchlib train sing|sample-rnn|wavenet-gen|vae --help' (neural generators and the "
                                   "timbre VAE on the dataset).")
    tsub = t.add_subparsers(dest="train_what", metavar="WHAT")
    from .wekinator import add_map_parser, add_train_parser as add_mapper_train_parser

    add_mapper_train_parser(tsub)
    add_map_parser(sub)
    from nodes.neural.train_sing import add_train_parser as add_sing_train_parser

    add_sing_train_parser(tsub)
    from nodes.neural.train_sample_rnn import add_train_parser as add_srnn_train_parser

    add_srnn_train_parser(tsub)
    from nodes.neural.train_wavenet_gen import add_train_parser as add_wavenet_gen_train_parser

    add_wavenet_gen_train_parser(tsub)
    from nodes.neural.train_vae import add_train_parser as add_vae_train_parser

    add_vae_train_parser(tsub)
    tp = tsub.add_parser("pedal", help="a WaveNet or LSTM effect from dry/wet WAV pairs",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description=textwrap.dedent("""\
        Train a neural effect (a 'pedal' node's model) from dry/wet WAV pairs.

        Data: a pedal_data manifest (pairs at knob settings, a train/validation split in
        time, held-out knob settings), or --make-data to render one first (the virtual-analog
        diode_clipper; end to end in one command), or --dry/--wet for one pair without knobs,
        or --pair DRY WET gain=0.5,tone=0.3 (repeat; knob values 0..1). The wet file's
        latency is found by cross-correlation, reported and removed. Knobs that vary between
        pairs become conditioning inputs and the model's knobs (range 0..1).

        Loss: ESR after pre-emphasis 1 - 0.85 z^-1 (Damskaegg et al. 2019), optionally plus
        a multi-resolution STFT term; random segments with a warm-up of the receptive field
        (not scored); Adam with exponential learning-rate decay; early stopping on the
        validation ESR (the best weights are kept). Deterministic for a seed on the CPU.

        Writes the checkpoint (architecture, sample rate, knobs, validation ESR at the
        trained and at held-out knob settings, this command) and a PNG of target vs
        prediction (waveform excerpt and spectra); prints the ESRs.

        examples:
          patchlib train pedal --make-data data/overdrive -o patches/models/overdrive.pt --size paper
          patchlib train pedal --manifest data/overdrive/manifest.json -o od.pt --steps 20000 --device cuda
          patchlib train pedal --dry di.wav --wet amp.wav -o amp.pt --arch lstm --size standard
          patchlib train pedal --pair di.wav g2.wav gain=0.2 --pair di.wav g8.wav gain=0.8 -o fuzz.pt
        """))
    tp.add_argument("-o", "--output", required=True, metavar="OUT.pt", help="the checkpoint to write")
    src = tp.add_argument_group("data")
    src.add_argument("--manifest", metavar="MANIFEST.json", help="a pedal_data manifest (or its folder)")
    src.add_argument("--make-data", metavar="DIR", help="render a pedal_data dataset into DIR first, then train on it")
    src.add_argument("--data-seconds", type=float, default=40.0, metavar="S",
                     help="with --make-data: seconds of audio (default 40)")
    src.add_argument("--data-seed", type=int, default=0, metavar="N", help="with --make-data: its seed (default 0)")
    src.add_argument("--dry", metavar="DRY.wav", help="one dry recording (with --wet; no knobs)")
    src.add_argument("--wet", metavar="WET.wav", help="the pedal's output for --dry")
    src.add_argument("--pair", nargs="+", action="append", default=[], metavar="ARG",
                     help="DRY.wav WET.wav [name=value,...]: a training pair at knob values 0..1 (repeat)")
    src.add_argument("--heldout-pair", nargs="+", action="append", default=[], metavar="ARG",
                     help="like --pair, but only scored (knob settings never trained on)")
    src.add_argument("--val-fraction", type=float, default=0.2, metavar="F",
                     help="without a manifest split: the last F of every pair validates (default 0.2)")
    src.add_argument("--max-lag", type=int, default=2000, metavar="N", help="latency search range in samples (default 2000)")
    src.add_argument("--latency", type=int, metavar="N", help="advance the wet files by N samples (skips the detection)")
    src.add_argument("--latency-safety", type=int, default=4, metavar="N",
                     help="advance by the detected lag minus N (a pedal's own impulse response can peak a "
                          "few samples late; too early is harmless for a causal model; default 4)")
    m = tp.add_argument_group("model and training")
    m.add_argument("--arch", choices=["wavenet", "lstm"], default="wavenet", help="default wavenet")
    m.add_argument("--size", choices=["tiny", "paper", "standard"], default="paper",
                   help="tiny (tests), paper (Damskaegg 2019: 10 gated layers x 16), standard (NAM's); default paper")
    m.add_argument("--input-gain", action="store_true",
                   help="WaveNet: add a learnt knob-dependent input gain x * 10**(w . knobs + b) (FiLM on the "
                        "input; for drive knobs that span tens of dB)")
    m.add_argument("--hidden", type=int, metavar="N", help="LSTM: hidden size (default: the size's: 8, 32, 24)")
    sk = m.add_mutually_exclusive_group()
    sk.add_argument("--skip", dest="skip", action="store_true", default=None,
                    help="LSTM: add the dry input to the output (Wright et al.; the sizes' default)")
    sk.add_argument("--no-skip", dest="skip", action="store_false",
                    help="LSTM: no dry skip (better for pedals whose tone filter removes what the dry signal has)")
    m.add_argument("--steps", type=int, default=2000, metavar="N", help="optimiser steps (default 2000)")
    m.add_argument("--batch", type=int, default=8, metavar="N", help="segments per step (default 8)")
    m.add_argument("--segment", type=int, default=8192, metavar="N",
                   help="scored samples per segment, after a warm-up of the receptive field (default 8192)")
    m.add_argument("--lr", type=float, default=4e-3, help="Adam's initial learning rate (default 4e-3)")
    m.add_argument("--lr-final", type=float, default=4e-4, help="learning rate at the last step, exponential decay (default 4e-4)")
    m.add_argument("--stft-weight", type=float, default=0.0, metavar="W",
                   help="weight of a multi-resolution STFT loss term added to the ESR (default 0)")
    m.add_argument("--eval-every", type=int, default=100, metavar="N", help="validate every N steps (default 100)")
    m.add_argument("--patience", type=int, default=8, metavar="N",
                   help="stop after N validations without improvement (0: never; default 8)")
    m.add_argument("--max-minutes", type=float, default=0.0, metavar="M",
                   help="stop (validate, keep the best) after M minutes of training (default 0: no limit)")
    m.add_argument("--seed", type=int, default=0, help="seed of the weights and segment choice (default 0)")
    m.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: cuda when available")
    m.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's)")
    tp.add_argument("--report", metavar="OUT.png", help="the target-vs-prediction picture (default: OUT with .png)")
    tp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    pl = sub.add_parser("play", help="play a patch in real time (pyo, or the null backend without a sound card)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description=textwrap.dedent("""\
        Play a patch in real time until Ctrl-C (or --seconds). Blocks are rendered on an
        audio thread; when one is not ready by the time the device needs it, that is an
        underrun: each is reported as it happens and counted in the summary printed at the
        end (blocks, underruns, compute time per block against the block period).

        backends:
          pyo    pyo's Server on PortAudio/JACK: the sound card. The patch's 'input' node
                 (one without a file:) hears the sound card's input, one block late.
          null   no sound card: blocks paced by the clock, for headless machines, scripts
                 and tests; --record keeps what it played.

        examples:
          patchlib play patches/flagship.yaml                      # to the sound card
          patchlib play patches/echo-input.yaml --block-size 128   # live input through an echo
          patchlib play bass.yaml --backend null --seconds 5 --record /tmp/bass.wav
          patchlib play bass.yaml --osc-port 9000                  # then: /filter/cutoff 800
          patchlib play patches/io-midi-synth.yaml --midi          # keys and knobs from the first MIDI input
          patchlib play mypatch.yaml --watch                       # edit the file, save, hear it

        live edits (with --osc-port): /patch/add NAME TYPE [KEY VALUE]..., /patch/remove NAME,
        /patch/connect SRC NODE.PORT [LO HI], /patch/disconnect NODE.PORT, /patch/load FILE,
        /patch/save FILE: each is compiled off the audio thread and crossfaded in; one that
        fails is answered /error and changes nothing (see docs/live.md).
        """))
    pl.add_argument("patch", help="the YAML patch")
    pl.add_argument("--backend", choices=["pyo", "null"], default="pyo", help="audio backend (default pyo)")
    pl.add_argument("--osc-port", type=int, nargs="?", const=9000, metavar="PORT",
                    help="listen for OSC on this UDP port (9000 if no PORT given)")
    pl.add_argument("--host", default="127.0.0.1", help="address the OSC server binds (default 127.0.0.1: this machine only)")
    pl.add_argument("--wekinator", metavar="NODE",
                    help="serve Wekinator's OSC protocol for the mapper node NODE: /wek/inputs on UDP 6448, "
                         "/wekinator/control/... (record, train, run), /wek/outputs to 127.0.0.1:12000")
    pl.add_argument("--osc-tcp", action="store_true",
                    help="also accept OSC over TCP on the same port number (SLIP framing, OSC 1.1: python-osc's "
                         "TCPClient); replies go back on the connection")
    pl.add_argument("--block-size", type=int, metavar="N", help="frames per block (default: the patch's); smaller is "
                                                                "less latency and more risk of underruns")
    pl.add_argument("--sample-rate", type=int, metavar="R", help="override the patch's sample rate")
    pl.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds (default: play until Ctrl-C)")
    pl.add_argument("--input-channels", type=int, default=1, metavar="N",
                    help="channels of live input for the patch's 'input' node (default 1)")
    pl.add_argument("--record", metavar="OUT.wav", help="null backend: write what was played (at most the "
                                                        "last 10 minutes) to a float WAV")
    pl.add_argument("--midi", nargs="?", const="", metavar="PORT",
                    help="play from a MIDI input: notes to the patch's poly nodes, controllers to its midi_cc "
                         "params; PORT is an input's name or part of it (default: the first input)")
    pl.add_argument("--midi-virtual", nargs="?", const="patchlib", metavar="NAME",
                    help="open a virtual MIDI input NAME (default 'patchlib') for other programs to play")
    pl.add_argument("--midi-channel", type=int, metavar="N", help="hear MIDI channel N (1..16) only")
    pl.add_argument("--watch", action="store_true",
                    help="reload the patch whenever its file changes: a valid file replaces the running patch "
                         "with a crossfade (unchanged nodes keep their state: strings ring on, LFOs keep their "
                         "phase, values set over OSC stay); an invalid one is reported and the sound goes on")
    pl.add_argument("--crossfade", type=float, default=0.02, metavar="SECONDS",
                    help="crossfade of a live edit or reload (default 0.02)")
    return p


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def cmd_render(a) -> int:
    if getattr(a, "sweep", None):
        from .dataset import run_sweep

        return run_sweep(a)
    from .render import render_file

    warnings = []
    res = render_file(Path(a.patch), a.output, a.seconds, block_size=a.block_size, sample_rate=a.sample_rate,
                      input_path=a.input, fmt=a.format, spectrogram=a.spectrogram, progress=not a.quiet,
                      on_warning=lambda w: warnings.append(w))
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not a.quiet:
        ch = {1: "mono", 2: "stereo"}.get(res.channels, f"{res.channels} channels")
        print(f"wrote {res.path}: {res.frames / res.sample_rate:.2f} s, {res.sample_rate} Hz, {ch}, "
              f"peak {res.peak_db:.1f} dBFS")
        if a.spectrogram:
            print(f"wrote {a.spectrogram}")
    if res.clipped:
        print(f"warning: {res.clipped} samples clipped (peak {res.peak_db:+.1f} dBFS): lower a gain",
              file=sys.stderr)
    return 0


def cmd_check(a) -> int:
    from .engine import Engine
    from .patch import load_patch

    spec = load_patch(Path(a.patch))
    # Compiling catches what only the graph knows (channel counts, input
    # files). Audio for `--input` comes at render time: stand in a silent
    # mono frame so input nodes without a file of their own still compile.
    import numpy as np

    Engine(spec, audio_inputs={"": (np.zeros((1, 1), np.float32), spec.sample_rate)})
    n_ev = len(spec.score)
    print(f"ok: {a.patch}: {len(spec.nodes)} nodes, {n_ev} score events, {spec.sample_rate} Hz, "
          f"{spec.duration:g} s")
    return 0


def cmd_nodes(a) -> int:
    from . import docs

    if a.markdown:
        print(docs.markdown_reference())
    elif a.type:
        print(docs.describe(a.type))
    else:
        print(docs.listing())
    return 0


def cmd_graph(a) -> int:
    from .draw import draw_graph
    from .patch import load_patch

    draw_graph(load_patch(Path(a.patch)), a.output)
    print(f"wrote {a.output}")
    return 0


def cmd_bench(a) -> int:
    from . import bench

    try:
        sizes = tuple(int(s) for s in a.block_sizes.split(",") if s.strip())
    except ValueError:
        _err(f"--block-sizes: expected whole numbers like 64,256, got {a.block_sizes!r}")
        return 2
    if not sizes or min(sizes) < 1:
        _err(f"--block-sizes: expected positive whole numbers like 64,256, got {a.block_sizes!r}")
        return 2
    names = [w.strip() for w in a.workloads.split(",") if w.strip()]
    unknown = [w for w in names if w not in bench.WORKLOADS]
    if unknown or not names:
        _err(f"--workloads: unknown {', '.join(unknown) or 'empty list'}; use {', '.join(bench.WORKLOADS)}")
        return 2
    if a.seconds <= 0:
        _err("--seconds must be > 0")
        return 2
    bench.run(seconds=a.seconds, block_sizes=sizes, output=None if a.output == "-" else a.output,
              pyo=not a.no_pyo, scipy=not a.no_scipy, repeats=a.repeats, startup=not a.no_startup,
              workloads=names)
    # a missed target is a finding, reported, not a failure of the command
    return 0


def cmd_train(a) -> int:
    if getattr(a, "handler", None) is not None and a.train_what != "pedal":
        return a.handler(a)
    if a.train_what != "pedal":
        _err("say what to train: 'patchlib train pedal --help' or 'patchlib train mapper --help'")
        return 2
    from nodes.neural.train import TrainConfig, parse_knobs, train

    pairs = []
    for opt, group, sets in (("--pair", a.pair, "grid"), ("--heldout-pair", a.heldout_pair, "heldout")):
        for args in group:
            if len(args) not in (2, 3):
                _err(f"{opt} takes DRY.wav WET.wav [name=value,...], got {' '.join(args)}")
                return 2
            try:
                knobs = parse_knobs(args[2]) if len(args) == 3 else {}
            except ValueError as e:
                _err(f"{opt}: {e}")
                return 2
            pairs.append((args[0], args[1], knobs, sets))
    if not (a.manifest or a.make_data or a.dry or a.wet or pairs):
        _err("no data: give --manifest, --make-data, --dry/--wet or --pair (see 'patchlib train pedal --help')")
        return 2
    for name in ("steps", "batch", "segment", "eval_every"):
        if getattr(a, name) < 1:
            _err(f"--{name.replace('_', '-')} must be >= 1")
            return 2
    if not (a.lr > 0 and a.lr_final >= 0 and a.stft_weight >= 0 and 0 < a.val_fraction < 1 and a.data_seconds > 0):
        _err("--lr must be > 0, --lr-final and --stft-weight >= 0, --val-fraction in (0, 1), --data-seconds > 0")
        return 2
    cfg = TrainConfig(output=a.output, manifest=a.manifest, make_data=a.make_data, data_seconds=a.data_seconds,
                      data_seed=a.data_seed, dry=a.dry, wet=a.wet, pairs=pairs, arch=a.arch, size=a.size,
                      input_gain=a.input_gain, hidden=a.hidden, skip=a.skip,
                      steps=a.steps, batch=a.batch, segment=a.segment, lr=a.lr, lr_final=a.lr_final,
                      stft_weight=a.stft_weight, eval_every=a.eval_every, patience=a.patience,
                      max_minutes=a.max_minutes,
                      val_fraction=a.val_fraction, max_lag=a.max_lag, latency=a.latency,
                      latency_safety=a.latency_safety, seed=a.seed, device=a.device, threads=a.threads,
                      report=a.report, quiet=a.quiet)
    try:
        train(cfg)
    except ValueError as e:
        _err(str(e))
        return 2
    return 0


def cmd_play(a) -> int:
    import time

    from .patch import load_patch
    from .realtime import Player, make_engine

    if a.block_size is not None and a.block_size < 1:
        _err("--block-size must be >= 1")
        return 2
    if a.seconds is not None and a.seconds <= 0:
        _err("--seconds must be > 0")
        return 2
    if a.record and a.backend != "null":
        _err("--record works with --backend null only")
        return 2
    osc_cls = None
    if a.osc_port is not None:
        try:
            from .osc import OscServer as osc_cls
        except ImportError as e:
            _err(f"OSC is not available: {e}; play without --osc-port")
            return 2
    spec = load_patch(Path(a.patch))
    engine = make_engine(spec, block_size=a.block_size, sample_rate=a.sample_rate,
                         input_channels=a.input_channels)
    options = {}
    if a.backend == "null" and a.record:
        options["record_seconds"] = min(a.seconds or 600.0, 600.0) + 1.0
    player = Player(engine, a.backend, input_channels=a.input_channels, **options)
    live = None
    if a.watch or osc_cls is not None:
        from .live import LiveSession, preload

        t0 = time.monotonic()
        missing = preload(sample_rate=player.sample_rate, block_size=player.block_size)
        print(f"live edits: node kernels loaded in {time.monotonic() - t0:.1f} s"
              + (f" (not {', '.join(missing)}: they load when first used)" if missing else ""))
        live = LiveSession(player, a.patch, crossfade_s=a.crossfade,
                           on_report=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"playing {a.patch} ({a.backend}): {player.sample_rate} Hz, {player.channels} channel(s), block "
          f"{player.block_size} ({1e3 * player.period:.1f} ms); "
          + (f"{a.seconds:g} s" if a.seconds else "Ctrl-C to stop"))
    import contextlib

    seen_warn = underruns = errors = 0
    warn_engine = player.engine
    midi = None
    interrupted = False
    with contextlib.ExitStack() as stack:
        if a.midi is not None or a.midi_virtual is not None:
            from .midi import MidiError, MidiInput

            virtual = a.midi_virtual is not None
            try:
                midi = stack.enter_context(MidiInput(player, port=a.midi_virtual if virtual else (a.midi or None),
                                                     virtual=virtual, channel=a.midi_channel))
            except (MidiError, ValueError) as e:
                _err(str(e))
                return 1
            ccs = ", ".join(map(str, sorted({b.cc for b in midi.bindings}))) or "none bound"
            print(f"MIDI in: {midi.stats()['port']}; notes to {', '.join(midi.voices) or 'no poly node'}; CC {ccs}")
        try:
            stack.enter_context(player)
        except RuntimeError as e:
            _err(str(e))
            return 1
        for note in getattr(player.backend, "notes", ()):
            print(f"note: {note}", file=sys.stderr)
        server = None
        if osc_cls is not None:
            server = stack.enter_context(osc_cls(player, host=a.host, port=a.osc_port,
                                                 **({"tcp": True} if a.osc_tcp else {})))
            server.on_edit = live.handle
            print(f"OSC on udp://{a.host}:{server.port}"
                  + (f" and tcp://{a.host}:{server.tcp_port}" if a.osc_tcp else ""))
        if a.wekinator:
            from .wekinator import WekinatorServer

            try:
                wek = stack.enter_context(WekinatorServer(player, a.wekinator))
            except (ValueError, OSError) as e:
                _err(f"--wekinator: {e}")
                return 1
            print(f"Wekinator: inputs on udp://{wek.host}:{wek.port}, outputs to {wek.out_addr[0]}:{wek.out_addr[1]}")
        if a.watch:
            live.watch()
            stack.callback(live.stop_watching)
            print(f"watching {a.patch}: save it to hear the change")
        t_end = None if a.seconds is None else time.monotonic() + a.seconds
        try:
            while t_end is None or time.monotonic() < t_end:
                time.sleep(0.05 if t_end is None else max(0.0, min(0.05, t_end - time.monotonic())))
                # report from this thread: the audio thread never prints
                if player.engine is not warn_engine:  # a live edit or reload swapped in another engine
                    warn_engine, seen_warn = player.engine, 0
                while seen_warn < len(warn_engine.warnings):
                    print(f"warning: {warn_engine.warnings[seen_warn]}", file=sys.stderr)
                    seen_warn += 1
                if player.underruns != underruns:
                    underruns = player.underruns
                    print(f"underrun ({underruns} so far) at {player.frames_played / player.sample_rate:.2f} s",
                          file=sys.stderr)
                if player.errors != errors:
                    if not errors:
                        print(f"error in the audio thread (the block played silence): {player.first_error!r}",
                              file=sys.stderr)
                    errors = player.errors
        except KeyboardInterrupt:
            interrupted = True
    print(("stopped: " if interrupted else "done: ") + player.summary())
    if server is not None:
        st = server.stats
        kinds = ", ".join(f"{k} {v}" for k, v in st["errors"].items())
        print(f"osc: {st['received']} packet(s) received, {st['applied']} applied, {st['errors_total']} error(s)"
              + (f" ({kinds}; answered with /error)" if kinds else "") + f", {st['late']} late bundle(s)")
    if midi is not None:
        print(midi.summary())
    if live is not None and (live.edits or live.reloads or live.failed):
        print(f"live: {live.edits} edit(s), {live.reloads} reload(s), {live.failed} refused")
    if player.underruns:
        print(f"warning: {player.underruns} underrun(s): try a larger --block-size", file=sys.stderr)
    if a.record:
        frames = player.backend.write_wav(a.record)
        print(f"wrote {a.record}: {frames / player.sample_rate:.2f} s")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.command:
        parser.print_help()
        return 0
    try:
        return {"render": cmd_render, "check": cmd_check, "nodes": cmd_nodes, "graph": cmd_graph,
                "bench": cmd_bench, "train": cmd_train, "play": cmd_play,
                "dataset": lambda a: a.handler(a), "map": lambda a: a.handler(a)}[a.command](a)
    except PatchError as e:
        for line in str(e).splitlines():
            _err(line) if not line.startswith("  ") else print(line, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _err("interrupted; nothing written")
        return 130
    except OSError as e:
        _err(f"{e.filename or ''}: {e.strerror}" if e.strerror else str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main())

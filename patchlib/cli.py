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
    r.add_argument("-o", "--output", required=True, metavar="OUT.wav", help="the WAV file to write")
    r.add_argument("--input", metavar="IN.wav", help="audio for the patch's 'input' node")
    r.add_argument("--seconds", type=float, metavar="S", help="length (default: the patch's duration)")
    r.add_argument("--block-size", type=int, metavar="N", help="frames per block (speed only; the sound is the same)")
    r.add_argument("--sample-rate", type=int, metavar="R", help="override the patch's sample rate")
    r.add_argument("--spectrogram", metavar="OUT.png", help="also write a waveform + spectrogram picture")
    r.add_argument("--format", choices=["pcm16", "pcm24", "float"], default="pcm24", help="sample format (default pcm24)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")

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

    b = sub.add_parser("bench", help="benchmark the engine against pyo and scipy",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=textwrap.dedent("""\
        Render two reference workloads with patchlib and with pyo (offline server), in one run,
        at each block size, and print real-time factors (xRT) and the patchlib/pyo ratios:

          voices   16 band-limited saws through resonant lowpasses swept by their own LFOs,
                   mixed (also rendered by hand-written numpy/scipy chains)
          strings  8 Karplus-Strong strings (E2 A2 D3 G3 B3 E4 A4 D5, T60 2 s), each plucked
                   every 0.5 s by score events, mixed

        Targets, checked and reported as met / NOT met / n/a: voices patchlib/pyo >= 1.0 at
        block 256 and >= 0.7 at block 64, and faster than scipy; strings patchlib/pyo >= 2.0 at
        blocks 64 and 256; start-up (import + first block of each patch, warm numba cache)
        under 2 s. Runs pinned to one core; each figure is the best of --repeats runs. Writes
        the report (patches, tables, targets, what each engine runs) to docs/benchmarks.md.

        examples:
          patchlib bench                                  # 30 s per figure, a minute or two
          patchlib bench --seconds 5 --output -           # quick look, print only
          patchlib bench --workloads strings --block-sizes 64 --seconds 5 --output /tmp/b.md
        """))
    b.add_argument("--seconds", type=float, default=30.0, help="audio seconds per measurement (default 30)")
    b.add_argument("--block-sizes", default="64,256", help="comma-separated (default 64,256)")
    b.add_argument("--workloads", default="voices,strings",
                   help="comma-separated, from voices, strings (default both)")
    b.add_argument("--repeats", type=int, default=2, metavar="N", help="runs per figure, the best counts (default 2)")
    b.add_argument("--output", default="docs/benchmarks.md", help="Markdown report to write ('-' for none)")
    b.add_argument("--no-pyo", action="store_true", help="skip the pyo comparison (its targets become n/a)")
    b.add_argument("--no-scipy", action="store_true", help="skip the scipy comparison")
    b.add_argument("--no-startup", action="store_true", help="skip the start-up measurement")
    return p


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def cmd_render(a) -> int:
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


def main(argv=None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.command:
        parser.print_help()
        return 0
    try:
        return {"render": cmd_render, "check": cmd_check, "nodes": cmd_nodes, "graph": cmd_graph,
                "bench": cmd_bench}[a.command](a)
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

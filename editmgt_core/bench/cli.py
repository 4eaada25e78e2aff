"""Benchmarks.

    python -m editmgt_core.bench forward --config editmgt --grid 16 --batch 2 --text-len 256
    python -m editmgt_core.bench edit --model editmgt_core/assets/default-model
    python -m editmgt_core.bench edit --config editmgt --random-weights --size 1024 --dtype bf16 --device cuda
    python -m editmgt_core.bench stream --model editmgt_core/assets/default-model --runs 5
    python -m editmgt_core.bench browser --model editmgt_core/assets/default-model --runs 3

`forward` times the transformer (median of N runs after a warm-up; random weights) with and without attention
capture, and reports peak resident memory. `edit` times whole edits of a model folder, split into text encoding,
VQ encoding, sampling and decoding, with plain sampling (λ = 0, no capture) against capture + consolidation + hold.
With `--random-weights` it builds the preset's whole editor in memory instead (`random_model`: the published shapes
for `editmgt`, no download) and times edits with the map and hold on, the first streamed frame, peak memory, and
the same edits in eager float32 as a ratio (see `bench_random_edit`).
`stream` serves the studio (`app.py`, a subprocess with the same thread count) and times streamed edits against
in-process `edit()` (another subprocess), interleaved, same image, instruction and seed, through two clients: a lean
one (`http_stream`: gradio_client's requests, each event read as it arrives) and gradio_client itself (which hands
events over by polling every 50 ms). For each: the time from submit to the first streamed update ("started", with
the warnings), to the first decoded frame and to the result file downloaded, the ratio to the in-process edit, and
the transport floor: the first update of a model-free endpoint with the same inputs.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..model.config import PRESETS
from .common import DTYPES


def add_forward(sub) -> None:
    fwd = sub.add_parser("forward", help="time one transformer forward")
    fwd.add_argument("--config", default="editmgt", choices=sorted(PRESETS), help="named transformer preset")
    fwd.add_argument("--grid", type=int, default=16, help="token grid side (before the 2x2 downsample)")
    fwd.add_argument("--batch", type=int, default=2, help="batch rows (2 = a guidance pair)")
    fwd.add_argument("--text-len", type=int, default=256, help="text sequence length")
    fwd.add_argument("--gamma", type=float, default=1.1, help="condition strength γ")
    fwd.add_argument("--no-cond", action="store_true", help="run without the source-image condition stream")
    fwd.add_argument("--capture-from", type=int, default=28, help="first global block index to capture")
    fwd.add_argument("--capture-count", type=int, default=9, help="number of consecutive blocks to capture")
    fwd.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    fwd.add_argument("--device", default="cpu")
    fwd.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    fwd.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up")


def add_edit(sub) -> None:
    ed = sub.add_parser("edit", help="time whole edits of a model folder, split by stage")
    ed.add_argument("--model", default="editmgt_core/assets/default-model", help="model folder or hub id")
    ed.add_argument("--instruction", default="make the red circle blue")
    ed.add_argument(
        "--lam",
        type=float,
        help="λ for the capture + consolidation + hold run (default: the model's "
        "when above 0, else 0.3); 'plain' runs at λ = 0, both with the model's other defaults",
    )
    ed.add_argument("--steps", type=int, default=None, help="decoding steps (default: the model's)")
    ed.add_argument("--device", default="cpu")
    ed.add_argument("--threads", type=int, default=2)
    ed.add_argument("--repeats", type=int, default=5, help="timed edits per setting after one warm-up")
    ed.add_argument(
        "--random-weights",
        action="store_true",
        help="build --config's editor with random weights "
        "instead of loading --model (published shapes for 'editmgt'; nothing is downloaded)",
    )
    ed.add_argument("--config", default="editmgt", help="preset for --random-weights: editmgt or tiny")
    ed.add_argument(
        "--size",
        type=int,
        default=None,
        help="working side in pixels (--random-weights; default the preset's: 1024 for editmgt)",
    )
    ed.add_argument(
        "--dtype",
        default="fp32",
        choices=sorted(DTYPES),
        help="transformer and text encoders' precision (--random-weights; the VQ stays float32)",
    )
    ed.add_argument("--offload", action="store_true", help="text encoders visit the device only while encoding")
    ed.add_argument(
        "--compile",
        default="off",
        choices=("off", "default", "reduce-overhead", "max-autotune"),
        help="torch.compile each transformer block in this mode (--random-weights)",
    )
    ed.add_argument("--no-fp32", action="store_true", help="skip the eager float32 comparison (--random-weights)")
    ed.add_argument(
        "--quick",
        action="store_true",
        help="timed edits and peak memory only: no streamed run and no profile (--random-weights)",
    )


def add_stream_and_browser(sub) -> None:
    st = sub.add_parser("stream", help="streamed edits through the studio's API against in-process edits")
    st.add_argument("--model", default="editmgt_core/assets/default-model", help="model folder")
    st.add_argument("--image", default=None, help="input image (default: the bundled recolour example)")
    st.add_argument("--instruction", default="Paint the yellow circle green")
    st.add_argument("--threads", type=int, default=2, help="torch CPU threads, here and in the server")
    st.add_argument("--runs", type=int, default=5, help="interleaved timed runs of each after one warm-up")
    st.add_argument("--no-previews", dest="previews", action="store_false", help="stream with previews=False")
    br = sub.add_parser("browser", help="a 4000x3000 JPEG through the studio in headless Chromium: click to done")
    br.add_argument("--model", default="editmgt_core/assets/default-model", help="model folder")
    br.add_argument("--instruction", default="make the red circle blue")
    br.add_argument("--threads", type=int, default=2, help="torch CPU threads, in the server and in-process")
    br.add_argument("--runs", type=int, default=3, help="timed runs of each after one warm-up")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m editmgt_core.bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_forward(sub)
    add_edit(sub)
    add_stream_and_browser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["edit-worker"]:  # `stream`'s in-process side
        from .stream import edit_worker

        edit_worker(*argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    print(json.dumps(run(args), indent=2))
    return 0


def run(args: argparse.Namespace) -> dict:
    """The named benchmark's report (each imported only when asked for: `browser` needs Playwright, `stream` gradio)."""
    if args.command == "forward":
        from .forward import bench_forward

        return bench_forward(args)
    if args.command == "edit":
        from .edit import bench_edit

        return bench_edit(args)
    if args.command == "stream":
        from .stream import bench_stream

        return bench_stream(args)
    from .browser import bench_browser

    return bench_browser(args)

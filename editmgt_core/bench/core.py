"""Benchmarks.

    python -m editmgt_core.bench forward --config editmgt --grid 16 --batch 2 --text-len 256
    python -m editmgt_core.bench edit --model assets/default-model
    python -m editmgt_core.bench edit --config editmgt --random-weights --size 1024 --dtype bf16 --device cuda
    python -m editmgt_core.bench stream --model assets/default-model --runs 5
    python -m editmgt_core.bench browser --model assets/default-model --runs 3

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
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

from ..model.config import PRESETS
from ..model.transformer import EditMGTTransformer
from . import http_stream

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is KiB on Linux


def random_transformer(name: str, device: str, dtype: torch.dtype) -> EditMGTTransformer:
    """The named preset with random weights, allocated once (no fp32 copy when asking for half precision)."""
    with torch.device("meta"):
        model = EditMGTTransformer(PRESETS[name])
    model = model.to_empty(device=device).to(dtype)
    if torch.device(device).type == "meta":  # shapes only (parameter counts)
        return model.eval()
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, p.shape[-1] ** -0.5 if p.ndim > 1 else 0.02, generator=g)
    return model.eval()


def time_forward(model, inputs, capture, gamma, repeats) -> list[float]:
    times = []
    for i in range(repeats + 1):
        if inputs["tokens"].is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            model(**inputs, gamma=gamma, capture=capture)
        if inputs["tokens"].is_cuda:
            torch.cuda.synchronize()
        if i:  # the first run is a warm-up
            times.append(time.perf_counter() - start)
    return times


def bench_forward(args) -> dict:
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    model = random_transformer(args.config, args.device, dtype)
    c = model.config
    b, g = args.batch, torch.Generator().manual_seed(1)
    inputs = dict(
        tokens=torch.randint(0, c.codebook_size, (b, args.grid, args.grid), generator=g),
        txt=torch.randn(b, args.text_len, c.joint_attention_dim, generator=g).to(dtype),
        pooled=torch.randn(b, c.pooled_projection_dim, generator=g).to(dtype),
        micro=torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 6.0]]).repeat(b, 1),
        timestep=torch.full((b,), 10),
        cond=None if args.no_cond else torch.randint(0, c.codebook_size, (b, args.grid, args.grid), generator=g),
    )
    inputs = {k: v.to(args.device) if v is not None else v for k, v in inputs.items()}
    capture = list(range(args.capture_from, min(args.capture_from + args.capture_count, c.depth)))
    plain = time_forward(model, inputs, [], args.gamma, args.repeats)
    captured = time_forward(model, inputs, capture, args.gamma, args.repeats)
    result = {
        "config": args.config,
        "token_grid": args.grid,
        "batch": b,
        "text_len": args.text_len,
        "cond_stream": not args.no_cond,
        "gamma": args.gamma,
        "dtype": args.dtype,
        "threads": args.threads,
        "median_ms": round(1000 * statistics.median(plain), 1),
        "median_ms_capture": round(1000 * statistics.median(captured), 1),
        "capture_layers": capture,
        "capture_overhead": round(statistics.median(captured) / statistics.median(plain) - 1, 4),
        "peak_rss_gb": round(peak_rss_gb(), 3),
    }
    if args.device.startswith("cuda"):
        result["peak_cuda_gb"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    return result


def bench_edit(args) -> dict:
    if args.random_weights:
        from .edit import bench_random_edit

        return bench_random_edit(args)
    from PIL import Image

    from ..edit.editing import default_options, edit
    from ..model.loading import load_editor

    torch.set_num_threads(args.threads)
    editor = load_editor(args.model, device=args.device)
    rng = torch.Generator().manual_seed(0)
    side = int(editor.settings.pixels**0.5)
    image = Image.fromarray((torch.rand(side, side, 3, generator=rng) * 255).byte().numpy())
    result = {"model": str(args.model), "threads": args.threads, "work_pixels": editor.settings.pixels}
    default_lam = default_options(editor).lam
    hold_lam = args.lam if args.lam is not None else default_lam if default_lam > 0 else 0.3
    for name, lam in (("plain", 0.0), ("hold", hold_lam)):
        options = default_options(editor, lam=lam, seed=0, **({"steps": args.steps} if args.steps else {}))
        runs = [edit(editor, image, args.instruction, options) for _ in range(args.repeats + 1)][1:]
        parts = {k: round(1000 * statistics.median(r.timings[k] for r in runs), 1) for k in runs[0].timings}
        total = [sum(r.timings.values()) for r in runs]
        result[name] = {"lam": lam, "steps": options.steps, "median_ms": round(1000 * statistics.median(total), 1),
                        "parts_ms": parts}  # fmt: skip
    result["hold_overhead_sampling"] = round(
        result["hold"]["parts_ms"]["sampling"] / result["plain"]["parts_ms"]["sampling"] - 1, 4
    )
    result["peak_rss_gb"] = round(peak_rss_gb(), 3)
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def studio_process(model, root: Path, env: dict) -> tuple[int, subprocess.Popen]:
    """The studio (app.py) on the CPU in a process of its own, on a free port -> (port, process)."""
    port = _free_port()
    cmd = [sys.executable, str(root / "app.py"), "--model", str(model), "--port", str(port), "--device", "cpu"]
    return port, subprocess.Popen(cmd, env=env, **QUIET)


def _start(args, root: Path, env: dict) -> tuple[int, int, list[subprocess.Popen]]:
    """The studio (app.py) and the echo server, each in a process of its own -> (port, echo port, processes)."""
    port, studio = studio_process(args.model, root, env)
    echo_port = _free_port()
    echo_cmd = [sys.executable, "-m", "editmgt_core.bench", "echo-server", str(echo_port)]
    return port, echo_port, [studio, subprocess.Popen(echo_cmd, cwd=root, env=env, **QUIET)]


def _edit_worker(args, root: Path, env: dict, path: Path):
    """In-process edits in a process of their own (gradio_client's threads would hold this one's GIL) -> (process,
    a function that runs one edit there and returns (seconds, steps))."""
    work = [sys.executable, "-m", "editmgt_core.bench", "edit-worker", str(args.model), str(path), args.instruction,
            str(args.threads)]  # fmt: skip
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL, "text": True}
    worker = subprocess.Popen(work, cwd=root, env=env, **pipes)

    def local_edit() -> tuple[float, int]:
        worker.stdin.write("run\n")
        worker.stdin.flush()
        seconds, steps = worker.stdout.readline().split()
        return float(seconds), int(steps)

    return worker, local_edit


def _streamed(client, image, instruction: str, knobs: dict) -> tuple[float, float, float, int]:
    """One streamed edit through gradio_client -> (first update, first frame, whole edit) in seconds, updates."""
    start, seen = time.perf_counter(), []
    job = client.submit(image, instruction, **knobs)
    for out in job:  # each streamed update as it arrives
        seen.append((time.perf_counter() - start, out[1]))
    frame = next(t for t, info in seen if info.get("step", 0) >= 1 or info.get("done"))
    job.result()
    return seen[0][0], frame, time.perf_counter() - start, len(job.outputs())


def _lean(http, endpoint, path: Path, instruction: str, named: dict) -> tuple[float, float, float, int]:
    """The same through http_stream's lean client."""
    out = http_stream.call(http, endpoint, str(path), instruction, **named)
    info = [data[1] if data else {} for data in out.updates]
    frame = next(t for t, i in zip(out.times, info, strict=True) if i.get("step", 0) >= 1 or i.get("done"))
    return out.times[0], frame, out.total, len(out.times)


def bench_stream(args) -> dict:
    from gradio_client import Client, handle_file  # the client library only: the server runs in its own process

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "GRADIO_ANALYTICS_ENABLED": "False"}
    port, echo_port, servers = _start(args, root, env)
    try:
        client, floor = _connect(Client, port), _connect(Client, echo_port)
        http = httpx.Client(timeout=600)
        endpoint, echo_endpoint = (http_stream.Endpoint.of(http, f"http://127.0.0.1:{p}", "/edit")
                                   for p in (port, echo_port))  # fmt: skip
        path = Path(args.image or root / "assets" / "examples" / "recolor-yellow-circle.png")
        worker, local_edit = _edit_worker(args, root, env, path)
        named = {"seed": 1} if args.previews else {"seed": 1, "previews": False}
        knobs = {**named, "api_name": "/edit"}
        client.predict(handle_file(str(path)), args.instruction, **knobs)  # warm-up, all of them
        floor.predict(handle_file(str(path)), args.instruction, api_name="/edit")
        _lean(http, endpoint, path, args.instruction, named)
        local_edit()
        rows = {"in_process": [], "lean": [], "gradio_client": [], "floor_lean": [], "floor_gradio_client": []}
        for _ in range(args.runs):
            seconds, steps = local_edit()
            rows["in_process"].append(seconds)
            rows["lean"].append(_lean(http, endpoint, path, args.instruction, named))
            rows["floor_lean"].append(_lean(http, echo_endpoint, path, args.instruction, {})[0])
            rows["gradio_client"].append(_streamed(client, handle_file(str(path)), args.instruction, knobs))
            rows["floor_gradio_client"].append(_echo(floor, handle_file(str(path)), args.instruction))
        worker.stdin.close()
        worker.wait(timeout=30)
    finally:
        for s in servers:
            s.terminate()
            s.wait(timeout=30)
    med = lambda xs: round(1000 * statistics.median(xs), 1)  # noqa: E731
    local = med(rows["in_process"])
    result = {"model": str(args.model), "threads": args.threads, "runs": args.runs, "steps": steps,
              "previews": args.previews, "in_process_ms": local}  # fmt: skip
    for name in ("lean", "gradio_client"):
        first, frame, total, updates = zip(*rows[name], strict=True)
        # each streamed edit over the in-process edit run just before it: drift on a shared machine cancels
        paired = [round(t / i, 3) for t, i in zip(total, rows["in_process"], strict=True)]
        result[name] = {
            "first_update_ms": med(first), "first_frame_ms": med(frame), "streamed_ms": med(total),
            "updates": statistics.median(updates), "streamed_over_in_process": round(med(total) / local, 3),
            "paired_ratio": statistics.median(paired), "paired_ratios": paired,
            "transport_floor_ms": med(rows["floor_" + name]),
        }  # fmt: skip
    return result


def _echo(floor, image, instruction: str) -> float:
    """The transport floor through gradio_client: seconds to the first update of the echo server's /edit."""
    start = time.perf_counter()
    job = floor.submit(image, instruction, api_name="/edit")
    next(iter(job))
    seconds = time.perf_counter() - start
    job.result()
    return seconds


def _connect(client_class, port: int, seconds: float = 120.0):
    for _ in range(int(seconds / 0.5)):
        try:
            return client_class(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:  # not up yet
            time.sleep(0.5)
    raise RuntimeError(f"the server on port {port} did not start within {seconds:.0f} s")


def echo_server(port: str) -> None:
    """`stream`'s transport floor: a Blocks app with /edit's first two inputs whose generator yields at once (the
    upload, queue and first-message cost of any gradio endpoint on this machine, without the model)."""
    import gradio as gr

    def echo(image, instruction):
        yield None, {"step": 0}
        yield None, {"done": True}

    with gr.Blocks() as demo:
        inputs = [gr.Image(type="filepath"), gr.Textbox()]
        gr.Button().click(echo, inputs, [gr.Image(), gr.JSON()], api_name="edit")
    demo.queue()._queue.sleep_when_free = 0.01  # as the studio's queue (app.calm_queue): no 1 ms poll beside the edits
    demo.launch(server_name="127.0.0.1", server_port=int(port), quiet=True)


def edit_worker(model: str, path: str, instruction: str, threads: str) -> None:
    """`stream`'s in-process side: one timed edit() per 'run' line on stdin, '<seconds> <steps>' on stdout."""
    from PIL import Image

    from ..edit.editing import default_options, edit
    from ..model.loading import load_editor

    torch.set_num_threads(int(threads))
    editor = load_editor(model)
    options = default_options(editor, seed=1)
    for _ in sys.stdin:
        start = time.perf_counter()
        edit(editor, Image.open(path), instruction, options)
        print(f"{time.perf_counter() - start:.6f} {options.steps}", flush=True)


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
    ed.add_argument("--model", default="assets/default-model", help="model folder or hub id")
    ed.add_argument("--instruction", default="make the red circle blue")
    ed.add_argument("--lam", type=float, help="λ for the capture + consolidation + hold run (default: the model's "
                    "when above 0, else 0.3); 'plain' runs at λ = 0, both with the model's other defaults")  # fmt: skip
    ed.add_argument("--steps", type=int, default=None, help="decoding steps (default: the model's)")
    ed.add_argument("--device", default="cpu")
    ed.add_argument("--threads", type=int, default=2)
    ed.add_argument("--repeats", type=int, default=5, help="timed edits per setting after one warm-up")
    ed.add_argument("--random-weights", action="store_true", help="build --config's editor with random weights "
                    "instead of loading --model (published shapes for 'editmgt'; nothing is downloaded)")  # fmt: skip
    ed.add_argument("--config", default="editmgt", help="preset for --random-weights: editmgt or tiny")
    ed.add_argument("--size", type=int, default=None, help="working side in pixels (--random-weights; default the "
                    "preset's: 1024 for editmgt)")  # fmt: skip
    ed.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="transformer and text encoders' precision "
                    "(--random-weights; the VQ stays float32)")  # fmt: skip
    ed.add_argument("--offload", action="store_true", help="text encoders visit the device only while encoding")
    ed.add_argument("--compile", default="off", choices=("off", "default", "reduce-overhead", "max-autotune"),
                    help="torch.compile each transformer block in this mode (--random-weights)")  # fmt: skip
    ed.add_argument("--no-fp32", action="store_true", help="skip the eager float32 comparison (--random-weights)")
    ed.add_argument("--quick", action="store_true", help="timed edits and peak memory only: no streamed run and no "
                    "profile (--random-weights)")  # fmt: skip


def add_stream_and_browser(sub) -> None:
    st = sub.add_parser("stream", help="streamed edits through the studio's API against in-process edits")
    st.add_argument("--model", default="assets/default-model", help="model folder")
    st.add_argument("--image", default=None, help="input image (default: the bundled recolour example)")
    st.add_argument("--instruction", default="Paint the yellow circle green")
    st.add_argument("--threads", type=int, default=2, help="torch CPU threads, here and in the server")
    st.add_argument("--runs", type=int, default=5, help="interleaved timed runs of each after one warm-up")
    st.add_argument("--no-previews", dest="previews", action="store_false", help="stream with previews=False")
    br = sub.add_parser("browser", help="a 4000x3000 JPEG through the studio in headless Chromium: click to done")
    br.add_argument("--model", default="assets/default-model", help="model folder")
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
    if argv[:1] == ["edit-worker"]:
        edit_worker(*argv[1:])
        return 0
    if argv[:1] == ["echo-server"]:
        echo_server(*argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    if args.command == "browser":
        from .browser import bench_browser

        print(json.dumps(bench_browser(args), indent=2))
        return 0
    run = {"forward": bench_forward, "edit": bench_edit, "stream": bench_stream}[args.command]
    print(json.dumps(run(args), indent=2))
    return 0


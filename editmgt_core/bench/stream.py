"""`stream`: streamed edits through the studio's API against in-process edits (see the package's docstring)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

from editmgt_core import paths

from . import http_stream
from .common import QUIET, ROOT, connect, free_port, studio_process


def _start(args, root: Path, env: dict) -> tuple[int, int, list[subprocess.Popen]]:
    """The studio (app.py) and the echo server, each in a process of its own -> (port, echo port, processes)."""
    port, studio = studio_process(args.model, root, env)
    echo_port = free_port()
    echo_cmd = [sys.executable, "-m", "editmgt_core.app.echo", str(echo_port)]
    return port, echo_port, [studio, subprocess.Popen(echo_cmd, cwd=root, env=env, **QUIET)]


def _edit_worker(args, root: Path, env: dict, path: Path):
    """In-process edits in a process of their own (gradio_client's threads would hold this one's GIL) -> (process,
    a function that runs one edit there and returns (seconds, steps))."""
    work = [
        sys.executable,
        "-m",
        "editmgt_core.bench",
        "edit-worker",
        str(args.model),
        str(path),
        args.instruction,
        str(args.threads),
    ]
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

    root = ROOT
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "GRADIO_ANALYTICS_ENABLED": "False"}
    port, echo_port, servers = _start(args, root, env)
    try:
        client, floor = connect(Client, port), connect(Client, echo_port)
        http = httpx.Client(timeout=600)
        endpoint, echo_endpoint = (
            http_stream.Endpoint.of(http, f"http://127.0.0.1:{p}", "/edit") for p in (port, echo_port)
        )
        path = Path(args.image or paths.EXAMPLES / "recolor-yellow-circle.png")
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
    result = {
        "model": str(args.model),
        "threads": args.threads,
        "runs": args.runs,
        "steps": steps,
        "previews": args.previews,
        "in_process_ms": local,
    }
    for name in ("lean", "gradio_client"):
        first, frame, total, updates = zip(*rows[name], strict=True)
        # each streamed edit over the in-process edit run just before it: drift on a shared machine cancels
        paired = [round(t / i, 3) for t, i in zip(total, rows["in_process"], strict=True)]
        result[name] = {
            "first_update_ms": med(first),
            "first_frame_ms": med(frame),
            "streamed_ms": med(total),
            "updates": statistics.median(updates),
            "streamed_over_in_process": round(med(total) / local, 3),
            "paired_ratio": statistics.median(paired),
            "paired_ratios": paired,
            "transport_floor_ms": med(rows["floor_" + name]),
        }
    return result


def _echo(floor, image, instruction: str) -> float:
    """The transport floor through gradio_client: seconds to the first update of the echo server's /edit."""
    start = time.perf_counter()
    job = floor.submit(image, instruction, api_name="/edit")
    next(iter(job))
    seconds = time.perf_counter() - start
    job.result()
    return seconds


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

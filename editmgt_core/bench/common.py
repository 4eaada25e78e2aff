"""What the benchmarks share: precisions, peak memory, a random-weight transformer, a timed forward, and the studio
started in a process of its own."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..model.config import PRESETS
from ..model.transformer import EditMGTTransformer

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
ROOT = Path(__file__).resolve().parents[2]  # the checkout: app.py and assets/ beside the package


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


def studio_process(model, root: Path, env: dict) -> tuple[int, subprocess.Popen]:
    """The studio (app.py) on the CPU in a process of its own, on a free port -> (port, process)."""
    port = free_port()
    cmd = [sys.executable, str(root / "app.py"), "--model", str(model), "--port", str(port), "--device", "cpu"]
    return port, subprocess.Popen(cmd, env=env, **QUIET)


def connect(client_class, port: int, seconds: float = 120.0):
    for _ in range(int(seconds / 0.5)):
        try:
            return client_class(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:  # not up yet
            time.sleep(0.5)
    raise RuntimeError(f"the server on port {port} did not start within {seconds:.0f} s")

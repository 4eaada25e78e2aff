"""Whole edits of a random-weights editor at a preset's shapes: `python -m editmgt_core.bench edit --random-weights`.

    python -m editmgt_core.bench edit --config editmgt --random-weights --size 1024 --dtype bf16 --device cuda

Times edits with the map captured and region hold on (λ from --lam, default 0.3; the guidance pair; --steps, default
36): the median per edit after one warm-up and its split (text, VQ encode, sampling, VQ decode), the same edit
streamed as the studio streams it (`streaming.stream`: the first frame after the call and after the text is encoded,
and the streamed edit against the plain one), peak device memory, the top entries of a profile of one edit, and,
unless --no-fp32 or the run is already float32 without compile, the same edits in eager float32 as a ratio. On a CPU
with `--config tiny` it is a smoke test (the test suite runs it; no timing is asserted anywhere).
"""

from __future__ import annotations

import gc
import statistics
import sys
import time

import numpy as np
import torch
from PIL import Image

from ..edit.editing import default_options, edit, sync_device
from ..model.loading import compile_transformer
from .common import DTYPES, peak_rss_gb
from .random_model import SHAPES, random_editor


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def _timed_edits(editor, image, instruction, options, repeats) -> dict:
    """repeats edits after one warm-up: median total and per-stage milliseconds."""
    runs, totals = [], []
    for i in range(repeats + 1):
        sync_device(editor.device)
        start = time.perf_counter()
        result = edit(editor, image, instruction, options)
        sync_device(editor.device)
        if i:
            runs.append(result.timings)
            totals.append(time.perf_counter() - start)
    ms = lambda xs: round(1000 * statistics.median(xs), 1)  # noqa: E731
    return {
        "median_ms": ms(totals),
        "runs_ms": [round(1000 * t, 1) for t in totals],
        "parts_ms": {k: ms([r[k] for r in runs]) for k in runs[0]},
    }


def _streamed(editor, image, instruction, options, repeats) -> dict:
    """The studio's stream: first frame after the call and after text encoding, whole streamed edit."""
    from ..studio.streaming import Final, stream

    first, after_text, totals = [], [], []
    for _ in range(repeats):
        sync_device(editor.device)
        start, frame_at = time.perf_counter(), None
        for item in stream(editor, image, instruction, options):
            if frame_at is None:
                frame_at = time.perf_counter() - start
            if isinstance(item, Final):
                text = item.timings["text"]
        totals.append(time.perf_counter() - start)
        first.append(frame_at)
        after_text.append(frame_at - text)
    ms = lambda xs: round(1000 * statistics.median(xs), 1)  # noqa: E731
    return {"first_frame_ms": ms(first), "first_frame_after_text_ms": ms(after_text), "median_ms": ms(totals)}


def _profile(editor, image, instruction, options, top: int = 12) -> list[dict]:
    """One edit under torch.profiler: the ops with the most self time on the device (CUDA) or the CPU."""
    from torch.profiler import ProfilerActivity, profile

    cuda = editor.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * cuda
    with profile(activities=activities) as prof:
        edit(editor, image, instruction, options)
        sync_device(editor.device)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    rows = sorted(prof.key_averages(), key=lambda e: getattr(e, key, 0), reverse=True)[:top]
    return [{"op": e.key, "self_ms": round(getattr(e, key, 0) / 1000, 2), "calls": e.count} for e in rows]


def _progress(message: str) -> None:
    """A line on stderr, so a run stopped at a time limit still shows how far it got."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _run(args, dtype: torch.dtype, compile_mode: str, repeats: int, full: bool) -> dict:
    device = torch.device(args.device)
    built = time.perf_counter()
    editor = random_editor(args.config, device, dtype, offload=args.offload, side=args.size)
    if compile_mode != "off":
        compile_transformer(editor.transformer, compile_mode)
    built = round(time.perf_counter() - built, 1)
    _progress(f"{dtype} editor built in {built} s (compile {compile_mode}, offload {args.offload})")
    side = int(editor.settings.pixels**0.5)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    lam = 0.3 if args.lam is None else args.lam
    options = default_options(editor, lam=lam, seed=0, steps=args.steps or 36)
    _peak_reset(device)
    out = {
        "dtype": str(dtype).removeprefix("torch."),
        "compile": compile_mode,
        "offload": args.offload,
        "work_side": side,
        "tokens": side // editor.vq.factor,
        "steps": options.steps,
        "lam": lam,
        "map": list(options.layers or editor.settings.attention_layers),
        "edit": _timed_edits(editor, image, args.instruction, options, repeats),
    }
    out["peak_gib"], out["build_s"] = _peak_gib(device), built
    _progress(f"edits: median {out['edit']['median_ms']} ms, peak {out['peak_gib']} GiB")
    if full:
        out["stream"] = _streamed(editor, image, args.instruction, options, repeats)
        out["stream"]["over_plain"] = round(out["stream"]["median_ms"] / out["edit"]["median_ms"], 3)
        out["profile"] = _profile(editor, image, args.instruction, options)
    del editor
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def bench_random_edit(args) -> dict:

    if args.config not in SHAPES:
        raise SystemExit(f"--config {args.config!r}: random editors exist for {', '.join(SHAPES)}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = {"config": args.config, "device": str(device), "threads": args.threads, "instruction": args.instruction}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
    result["torch"] = torch.__version__
    dtype = DTYPES[args.dtype]
    result["run"] = _run(args, dtype, args.compile, args.repeats, full=not args.quick)
    if not args.no_fp32 and (dtype != torch.float32 or args.compile != "off"):
        fp32 = _run(args, torch.float32, "off", max(2, args.repeats // 2), full=False)
        result["eager_fp32"] = fp32
        result["speedup_over_eager_fp32"] = round(fp32["edit"]["median_ms"] / result["run"]["edit"]["median_ms"], 2)
    return result


def bench_edit(args) -> dict:
    if args.random_weights:
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
        result[name] = {
            "lam": lam,
            "steps": options.steps,
            "median_ms": round(1000 * statistics.median(total), 1),
            "parts_ms": parts,
        }
    result["hold_overhead_sampling"] = round(
        result["hold"]["parts_ms"]["sampling"] / result["plain"]["parts_ms"]["sampling"] - 1, 4
    )
    result["peak_rss_gb"] = round(peak_rss_gb(), 3)
    return result

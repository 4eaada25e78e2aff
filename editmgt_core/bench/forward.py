"""`forward`: one transformer forward with random weights, with and without attention capture."""

from __future__ import annotations

import statistics

import torch

from .common import DTYPES, peak_rss_gb, random_transformer, time_forward


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

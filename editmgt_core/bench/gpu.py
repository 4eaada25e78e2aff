"""GPU numbers of the published model's shapes, with random weights: `python -m editmgt_core.bench.gpu` (needs CUDA).

Prints JSON: per precision, the transformer's weight memory and the median time of one decoding step (a guidance
pair at a 64x64 token grid = a 1024x1024 image, text 256 tokens, γ 1.1; with and without capturing blocks 28-36),
then the peak memory of an edit's weights with every model on the GPU and with the text encoders offloaded
(encoders.visiting), and what the offload's trips cost. CLIP's text tower is built at the shape the published pooled
width implies (24 layers of 1024, projection 1024), Gemma-2 at 2B's. docs/published-model.md quotes a run of the
same measurements (as a one-off script, before they became this module; the module itself has not run on a GPU yet).
"""

from __future__ import annotations

import json
import statistics
import time

import torch

from ..model.config import TransformerConfig
from ..model.encoders import visiting
from .common import random_transformer, time_forward
from .random_model import published_text_configs

GiB = 2**30


def step_inputs(dtype: torch.dtype, device: str, grid: int = 64, b: int = 2) -> dict:
    c, g = TransformerConfig(), torch.Generator().manual_seed(1)
    x = dict(
        tokens=torch.randint(0, c.codebook_size, (b, grid, grid), generator=g),
        txt=torch.randn(b, 256, c.joint_attention_dim, generator=g).to(dtype),
        pooled=torch.randn(b, c.pooled_projection_dim, generator=g).to(dtype),
        micro=torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 6.0]]).repeat(b, 1),
        timestep=torch.full((b,), 10),
        cond=torch.randint(0, c.codebook_size, (b, grid, grid), generator=g),
    )
    return {k: v.to(device) for k, v in x.items()}


def text_models(dtype: torch.dtype, device: str):
    from transformers import CLIPTextModelWithProjection, Gemma2Model

    clip_cfg, gemma_cfg = published_text_configs()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return CLIPTextModelWithProjection(clip_cfg).eval(), Gemma2Model(gemma_cfg).eval()
    finally:
        torch.set_default_dtype(torch.float32)


def edit_memory(dtype: torch.dtype, device: str) -> dict:
    """Peak memory of one encode + one step with every model on the GPU, then with the text encoders offloaded."""
    clip, gemma = text_models(dtype, device)
    model, x = random_transformer("editmgt", device, dtype), step_inputs(dtype, device)
    ids_clip = torch.randint(0, 49408, (2, 77), device=device)
    ids_gemma = torch.randint(0, 256000, (2, 256), device=device)

    @torch.inference_mode()
    def encode(offload: bool):
        with visiting([clip], torch.device(device), offload):
            clip(input_ids=ids_clip)
        with visiting([gemma], torch.device(device), offload):
            gemma(input_ids=ids_gemma, output_hidden_states=True).hidden_states[-2]
        torch.cuda.synchronize()

    @torch.inference_mode()
    def step():
        model(**x, gamma=1.1, capture=list(range(28, 37)))
        torch.cuda.synchronize()

    def measured(fn) -> tuple[float, float]:
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() / GiB

    encode(False)  # warm-up
    encode_s, _ = measured(lambda: encode(False))
    step()
    _, resident = measured(step)
    clip.to("cpu"), gemma.to("cpu")
    torch.cuda.empty_cache()
    offload_s, offload_peak = measured(lambda: encode(True))
    _, sampling_peak = measured(step)
    return {
        "resident_peak_gib": round(resident, 2),
        "encode_s": round(encode_s, 3),
        "offload_encode_s": round(offload_s, 3),
        "offload_encode_peak_gib": round(offload_peak, 2),
        "offload_sampling_peak_gib": round(sampling_peak, 2),
    }


def main(device: str = "cuda") -> dict:
    out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        model = random_transformer("editmgt", device, dtype)
        weights = torch.cuda.memory_allocated() / GiB
        x = step_inputs(dtype, device)
        plain = time_forward(model, x, [], 1.1, 6)
        captured = time_forward(model, x, list(range(28, 37)), 1.1, 6)
        rows = time_forward(model, x, [f"rs{i}" for i in range(28, 37)], 1.1, 6)  # image rows, chunked
        out[f"transformer_{name}"] = {
            "weights_gib": round(weights, 2),
            "step_ms": round(1000 * statistics.median(plain), 1),
            "step_capture_ms": round(1000 * statistics.median(captured), 1),
            "step_capture_rows_ms": round(1000 * statistics.median(rows), 1),
        }
        del model, x
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        torch.cuda.empty_cache()
        out[f"edit_{name}"] = edit_memory(dtype, device)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))

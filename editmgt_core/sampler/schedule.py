"""The MaskGIT schedule and the sampler's two random draws, shared by our sampler, the reference step and training.

Conventions (the reference's): timestep t = N-1-step (N-1 first, 0 last); one generator serves every draw, per step
first `multinomial` over all [B*H*W, K] probabilities (draw_tokens), then (except at the last step) `uniform_`
[B, H*W] for the Gumbel noise of the re-masking (gumbel_confidence).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def timesteps(num_steps: int) -> Tensor:
    """The reference schedule of timesteps: int64 [N] = N-1, ..., 0."""
    return torch.arange(num_steps).flip(0)


def cosine_schedule(ratio: Tensor | float) -> Tensor | float:
    """Fraction of tokens still masked after a fraction `ratio` of the steps: cos(ratio * pi / 2)."""
    return torch.cos(ratio * math.pi / 2) if isinstance(ratio, Tensor) else math.cos(ratio * math.pi / 2)


def temperatures(setting: float | tuple[float, float], steps: int) -> Tensor:
    """Gumbel scale per step, float32 [N]: (t0, t1) -> linspace(t0, t1, N); a scalar t -> linspace(t, 0.01, N)."""
    start, end = setting if isinstance(setting, (tuple, list)) else (setting, 0.01)
    return torch.linspace(start, end, steps)


def mask_len(step: int, num_steps: int, num_tokens: int, starting_mask_ratio: float | Tensor = 1.0) -> int:
    """Tokens to leave masked after 0-based `step`, before clamping: floor(n * r0 * cos((step+1)/N * pi/2)).

    Computed with the reference's float32 tensor ops so it agrees to the token.
    """
    ratio = (torch.tensor([[step]]) + 1) / num_steps
    return max(0, int((num_tokens * (starting_mask_ratio * cosine_schedule(ratio))).floor()))


def draw_tokens(logits: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """RNG draw 1: probs [B, HW, K] = softmax of logits [B, K, H, W]; pred [B, HW] ~ multinomial at every position.

    Laid out exactly as the reference (reshape, permute, softmax(-1), float32 on CPU, draw on the generator's device).
    """
    b, k, h, w = logits.shape
    probs = logits.reshape(b, k, h * w).permute(0, 2, 1).softmax(dim=-1)
    flat = probs.to(generator.device) if generator is not None else probs
    if flat.device.type == "cpu" and flat.dtype != torch.float32:
        flat = flat.float()  # CPU multinomial has no half precision
    pred = torch.multinomial(flat.reshape(-1, k), 1, generator=generator).to(probs.device)
    return probs, pred[:, 0].view(b, h * w)


def gumbel_confidence(probs: Tensor, temperature: Tensor | float, generator: torch.Generator | None):
    """RNG draw 2: (gumbel, log(probs) + temperature * gumbel), both shaped like probs [B, HW]."""
    device = generator.device if generator is not None else probs.device
    u = torch.zeros_like(probs, device=device).uniform_(0, 1, generator=generator).to(probs.device)
    gumbel = -torch.log((-torch.log(u.clamp(1e-20))).clamp(1e-20))
    return gumbel, torch.log(probs.clamp(1e-20)) + temperature * gumbel

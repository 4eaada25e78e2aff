"""Pure tensor math of the transformer: sinusoidal embeddings, 2-D RoPE, the γ attention bias and attention itself."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def timestep_embedding(t: Tensor, dim: int = 256, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of a float vector t [N] -> [N, dim], cosine half first (flip_sin_to_cos, no shift)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def grid_ids(h: int, w: int, device: torch.device | None = None) -> Tensor:
    """RoPE ids of an h x w grid, row-major: row k = [0, k // w, k % w]; float32 [h*w, 3]."""
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).float()


def rope(ids: Tensor, axes_dims: tuple[int, ...], theta: float = 10000.0) -> Tensor:
    """Rotation table for ids [n, n_axes]: complex64 [n, head_dim // 2], e^(i angle) for each rotated channel pair.

    Frequencies and angles are computed in float64, cos and sin cast to float32, as the reference does. An id row
    of zeros (the text rows) gives exactly 1 + 0i: its rotation is the identity, bit for bit.
    """
    cos, sin = [], []
    pos = ids.double()
    for axis, dim in enumerate(axes_dims):
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=ids.device) / dim)
        angles = pos[:, axis, None] * freqs[None]  # (n, dim // 2)
        cos.append(angles.cos().float())
        sin.append(angles.sin().float())
    return torch.complex(torch.cat(cos, dim=-1), torch.cat(sin, dim=-1))


def apply_rope(x: Tensor, freqs: Tensor) -> Tensor:
    """Rotate interleaved channel pairs (2j, 2j+1) of x [B, heads, n, D] by freqs [n, D // 2] (one complex product).

    (x0 + i x1) e^(i a) = (x0 cos a - x1 sin a) + i (x1 cos a + x0 sin a), computed in float32.
    """
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * freqs).flatten(-2).to(x.dtype)


def gamma_bias(n_main: int, n_cond: int, gamma: float, dtype: torch.dtype, device: torch.device) -> Tensor | None:
    """Additive attention bias [L, L] over [main (text + target), cond]: log γ between main and cond, else 0.

    Returns None for γ == 1 (the bias-free path). γ == 0 gives -inf, cutting the condition off.
    """
    if gamma == 1.0:
        return None
    log_gamma = torch.log(torch.tensor(gamma, dtype=torch.float32)).item()
    n = n_main + n_cond
    bias = torch.zeros(n, n, dtype=torch.float32, device=device)
    bias[n_main:, :n_main] = log_gamma
    bias[:n_main, n_main:] = log_gamma
    return bias.to(dtype)


def attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
    """Fused scaled-dot-product attention; q, k, v [B, heads, L, D] -> [B, L, heads * D]."""
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    return out.transpose(1, 2).flatten(2)


def text_to_image_probs(q: Tensor, k: Tensor, n_txt: int, n_img: int) -> Tensor:
    """Instruction -> image attention probabilities [B, heads, T, I], as the reference captures them.

    Text queries against [text, target] keys only (condition keys excluded from the softmax), then the target
    columns are kept, so rows do not sum to 1. Only the T text query rows are computed.
    """
    scale = q.shape[-1] ** -0.5
    scores = (q[:, :, :n_txt] @ k[:, :, : n_txt + n_img].transpose(-1, -2)) * scale  # (B, heads, T, T + I)
    return scores.float().softmax(dim=-1)[..., n_txt:]


def text_to_source_probs(q: Tensor, k: Tensor, n_txt: int, n_img: int) -> Tensor:
    """Instruction -> source-image attention probabilities [B, heads, T, R] (not in the reference): the mirror of
    `text_to_image_probs` for the condition rows C_V. Text queries against [text, condition] keys (the target keys
    excluded from the softmax), then the condition columns are kept. k holds the rows [text, target, condition].
    """
    scale = q.shape[-1] ** -0.5
    keys = torch.cat([k[:, :, :n_txt], k[:, :, n_txt + n_img :]], dim=2)
    scores = (q[:, :, :n_txt] @ keys.transpose(-1, -2)) * scale  # (B, heads, T, T + R)
    return scores.float().softmax(dim=-1)[..., n_txt:]


def rows_to_text_probs(q: Tensor, k: Tensor, n_txt: int, rows: slice, bias: Tensor | None, chunk: int) -> Tensor:
    """Image rows -> instruction attention [B, heads, T, R] (not in the reference): for each query row in `rows` (of
    the [text, target, condition] sequence), its softmax attention over all keys (the γ bias included) on each text
    key, laid out text-first like `text_to_image_probs` so the instruction's words pick its rows.

    Computed `chunk` query rows at a time: no more than [B, heads, chunk, L] of the score matrix exists at once.
    """
    scale = q.shape[-1] ** -0.5
    keys = k.transpose(-1, -2)
    b, heads = q.shape[:2]
    out = torch.empty(b, heads, n_txt, rows.stop - rows.start, dtype=torch.float32, device=q.device)
    for start in range(rows.start, rows.stop, chunk):
        stop = min(start + chunk, rows.stop)
        scores = (q[:, :, start:stop] @ keys) * scale  # (B, heads, chunk, L)
        if bias is not None:
            scores = scores + bias[start:stop]
        # copied out of the chunk's softmax, so that its whole [chunk, L] slice is freed before the next chunk
        out[..., start - rows.start : stop - rows.start] = scores.float().softmax(dim=-1)[..., :n_txt].transpose(-1, -2)
    return out

"""Attention consolidation: captured instruction->image attention -> one relevance map in [0, 1] per image.

The chain is the reference's (`tokens_to_attn`, `rescale_scores`, `smooth_local_scores(method='adaptive')`,
`upsample_score_map`) with its two position bugs fixed: the mean runs over the instruction's real text tokens (or the
keyword's tokens) of the padded sequence the model saw, not over padding or CLIP-space indices.

    maps [B, heads, T, I] per layer --attention_scores--> [B, I] --min_max--> --adaptive_filter (on the h x w grid)-->
    --upsample (bicubic)--> clamp [0, 1] --> [B, *out_grid]

The filter reproduces scipy exactly up to float error: `gaussian_filter(S, 1.5, mode='reflect')` (truncate 4.0) and
`generic_filter(S, np.var, size=5)` are computed in float64 and rounded to the input dtype after each pass, as scipy
does, and the 90th percentile is numpy's default linear interpolation. Everything is batched, works on any grid and
device, and makes no host round-trip.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

SIGMA = 1.5  # gaussian sigma of the adaptive filter (reference: strength 1.0 * 1.5)
TRUNCATE = 4.0  # scipy's default gaussian truncation, in sigmas
VAR_SIZE = 5  # side of the local-variance window
VAR_WEIGHT = 0.7  # w = 1 - 0.7 * normalised local variance
PEAK_PERCENTILE = 90.0  # values above this percentile are peaks
PEAK_KEEP = 0.7  # peaks become 0.7 * S + 0.3 * smoothed


def attention_scores(maps: Mapping[int | str, Tensor], text_weights: Tensor) -> Tensor:
    """Weighted mean over layers, heads and text rows: maps {layer: [B, heads, T, I]}, weights [B, T] -> [B, I].

    With 0/1 weights this is the reference's `mean(dim=(layers, heads, selected rows))`; maps with fewer heads (a
    head selector, see entries) are averaged over their own heads first. Weights are not checked here (see
    `consolidate`); float32 accumulation.
    """
    w = text_weights.float()[:, None, :, None]  # (B, 1, T, 1)
    heads = {m.shape[1] for m in maps.values()}
    total = None
    for m in maps.values():  # multiply-sum, not matmul: stays float32 where TF32 matmuls are enabled
        part = (m.float() * w).sum(dim=(1, 2))  # (B, I)
        if len(heads) > 1:
            part = part / m.shape[1]
        total = part if total is None else total + part
    per_map = heads.pop() if len(heads) == 1 else 1
    return total / (len(maps) * per_map * text_weights.float().sum(dim=-1, keepdim=True))


def min_max(s: Tensor) -> Tensor:
    """Per-row `(s - min) / (max - min + 1e-8)` over the last dim, as the reference's `rescale_scores`."""
    lo = s.amin(dim=-1, keepdim=True)
    hi = s.amax(dim=-1, keepdim=True)
    return (s - lo) / (hi - lo + 1e-8)


def _wide(t: Tensor) -> torch.dtype:
    return torch.float32 if t.device.type == "mps" else torch.float64  # MPS has no float64


def _reflect(n: int, offsets: range, device: torch.device) -> Tensor:
    """Indices [n, len(offsets)] of i + offset under scipy's 'reflect' (d c b a | a b c d | d c b a), any offset."""
    i = torch.arange(n, device=device)[:, None] + torch.tensor(list(offsets), device=device)[None]
    j = torch.remainder(i, 2 * n)
    return torch.where(j >= n, 2 * n - 1 - j, j)


def _correlate_symmetric(x: Tensor, weights: list[float], dim: int) -> Tensor:
    """One scipy `correlate1d` pass (mode 'reflect') of a symmetric kernel along dim, in float64, rounded to x's dtype.

    Summed as scipy's symmetric branch: centre tap first, then (x[i-k] + x[i+k]) * w_k from the outermost pair in.
    """
    radius = len(weights) // 2
    idx = _reflect(x.shape[dim], range(-radius, radius + 1), x.device)  # (n, 2r+1)
    wide = x.to(_wide(x))
    acc = wide * weights[radius]
    for k in range(radius, 0, -1):
        pair = wide.index_select(dim, idx[:, radius - k]) + wide.index_select(dim, idx[:, radius + k])
        acc = acc + pair * weights[radius - k]
    return acc.to(x.dtype)


def gaussian_blur(s: Tensor, sigma: float = SIGMA, truncate: float = TRUNCATE) -> Tensor:
    """scipy `gaussian_filter(s, sigma, mode='reflect', truncate)` per image of s [B, h, w] (axis h, then axis w)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    phi = torch.exp(-0.5 / (sigma * sigma) * x**2)
    weights = (phi / phi.sum()).tolist()
    return _correlate_symmetric(_correlate_symmetric(s, weights, 1), weights, 2)  # each pass rounded, as scipy


def local_variance(s: Tensor, size: int = VAR_SIZE) -> Tensor:
    """scipy `generic_filter(s, np.var, size)` (mode 'reflect', population variance) per image of s [B, h, w]."""
    _, h, w = s.shape
    offsets = range(-(size // 2), size - size // 2)
    rows = _reflect(h, offsets, s.device)  # (h, size)
    cols = _reflect(w, offsets, s.device)  # (w, size)
    x = s.to(_wide(s))[:, rows[:, :, None, None], cols[None, None, :, :]]  # (B, h, size, w, size)
    x = x.permute(0, 1, 3, 2, 4).flatten(3)  # (B, h, w, size*size)
    mean = x.mean(dim=-1, keepdim=True)
    return ((x - mean) ** 2).mean(dim=-1).to(s.dtype)


def percentile(s: Tensor, q: float) -> Tensor:
    """numpy `percentile(row, q)` (method 'linear', scalar q) of each row of s [B, N] -> [B], in s's dtype."""
    n = s.shape[-1]
    v = (n - 1) * (q / 100)
    lo = min(math.floor(v), n - 1)
    hi = min(lo + 1, n - 1)
    t = v - lo
    ranked = s.sort(dim=-1).values
    a, b = ranked[:, lo], ranked[:, hi]
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t  # numpy's _lerp, scalar weight rounded to s's dtype


def adaptive_filter_parts(s: Tensor) -> dict[str, Tensor]:
    """The reference's adaptive smoothing of s [B, h, w] with its intermediates, flattened to [B, h*w] ([B] for
    `peak_threshold`); `smoothed` is the result. Names follow the reference fixture (`<variant>.adaptive.*`).

    G = gaussian blur, V = local variance, Vn = (V - min V) / (max V - min V + 1e-8) (0 when V is constant),
    w = 1 - 0.7 Vn, Sm = w G + (1 - w) S; where S > its 90th percentile, Sm = 0.7 S + 0.3 Sm; finally Sm is
    min-max rescaled onto [min S, max S] (left as is when Sm is constant). Per image; no NaN for constant input.
    """
    flat = s.flatten(1)
    p = {"gaussian": gaussian_blur(s).flatten(1), "local_var": local_variance(s).flatten(1)}
    v_lo = p["local_var"].amin(dim=-1, keepdim=True)
    v_hi = p["local_var"].amax(dim=-1, keepdim=True)
    p["local_var_normalized"] = (p["local_var"] - v_lo) / (v_hi - v_lo + 1e-8)
    p["adaptive_weight"] = weight = 1.0 - p["local_var_normalized"] * VAR_WEIGHT
    p["smoothed_before_peaks"] = smooth = weight * p["gaussian"] + (1 - weight) * flat
    p["peak_threshold"] = percentile(flat, PEAK_PERCENTILE)
    p["peak_mask"] = peaks = flat > p["peak_threshold"][:, None]
    p["smoothed_after_peaks"] = smooth = torch.where(peaks, PEAK_KEEP * flat + (1 - PEAK_KEEP) * smooth, smooth)
    lo, hi = smooth.amin(dim=-1, keepdim=True), smooth.amax(dim=-1, keepdim=True)
    s_lo, s_hi = flat.amin(dim=-1, keepdim=True), flat.amax(dim=-1, keepdim=True)
    rescaled = (smooth - lo) / (hi - lo) * (s_hi - s_lo) + s_lo
    p["smoothed"] = torch.where(hi > lo, rescaled, smooth)
    return p


def adaptive_filter(s: Tensor) -> Tensor:
    """The reference's adaptive smoothing (see `adaptive_filter_parts`) of s [B, h, w] -> [B, h, w]."""
    return adaptive_filter_parts(s)["smoothed"].view_as(s)


def upsample(s: Tensor, out_grid: tuple[int, int]) -> Tensor:
    """Bicubic (align_corners=False, may overshoot) resize of s [B, h, w] to [B, *out_grid]; identity if equal."""
    if tuple(s.shape[-2:]) == tuple(out_grid):
        return s
    return F.interpolate(s[:, None], size=tuple(out_grid), mode="bicubic", align_corners=False)[:, 0]


def map_grid(maps: Mapping[int | str, Tensor], h: int, w: int) -> tuple[int, int]:
    """The attention grid of captured maps [.., I] for an h x w token grid: (h/2, w/2) after the model's 2x2
    downsample (the published configuration), (h, w) for a model without it."""
    i = next(iter(maps.values())).shape[-1]
    for grid in ((h // 2, w // 2), (h, w)):
        if i == grid[0] * grid[1]:
            return grid
    raise ValueError(f"maps have {i} image keys; expected {(h // 2) * (w // 2)} or {h * w} for a {h}x{w} token grid")


def check_text_weights(text_weights: Tensor) -> None:
    """ValueError unless text_weights is [B, T], finite, >= 0, with a positive sum in every row (one host sync)."""
    if text_weights.ndim != 2:
        raise ValueError(f"text_weights must be [B, T]; got shape {tuple(text_weights.shape)}")
    w = text_weights.float()
    bad = ~torch.isfinite(w).all(dim=-1) | (w < 0).any(dim=-1) | (w.sum(dim=-1) <= 0)
    if bad.any():
        rows = bad.nonzero().flatten().tolist()
        raise ValueError(f"text_weights rows {rows} select no text token (need finite weights >= 0, sum > 0)")


def consolidate_unchecked(
    maps: Mapping[int | str, Tensor],
    text_weights: Tensor,
    grid: tuple[int, int],
    out_grid: tuple[int, int],
    smooth: bool = True,
) -> Tensor:
    """`consolidate` without the data checks (no host sync), for callers that validated text_weights once."""
    s = min_max(attention_scores(maps, text_weights)).view(-1, *grid)
    if smooth:
        s = adaptive_filter(s)
    return upsample(s, out_grid).clamp(0.0, 1.0)


def consolidate(
    maps: Mapping[int | str, Tensor],
    text_weights: Tensor,
    grid: tuple[int, int],
    out_grid: tuple[int, int],
    smooth: bool = True,
) -> Tensor:
    """Relevance map [B, *out_grid] in [0, 1] from captured attention.

    maps: {global block index: [B, heads, T, I]} instruction->image attention (the conditional rows only), with
    I = gh * gw row-major over `grid`; text_weights [B, T]: 1 on the instruction tokens to average (0 elsewhere);
    out_grid: the token grid to upsample to (bicubic; skipped when equal to grid). smooth=False skips the filter.
    """
    if not maps:
        raise ValueError("maps is empty; capture at least one layer")
    shapes = {tuple(m.shape) for m in maps.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 4:
        raise ValueError(f"maps must all be [B, heads, T, I] of one shape; got {sorted(shapes)}")
    b, _, t, i = next(iter(shapes))
    if i != grid[0] * grid[1]:
        raise ValueError(f"maps have I={i} image keys but grid {tuple(grid)} has {grid[0] * grid[1]}")
    if tuple(text_weights.shape) != (b, t):
        raise ValueError(f"text_weights must be [B, T] = {[b, t]}; got {list(text_weights.shape)}")
    check_text_weights(text_weights)
    return consolidate_unchecked(maps, text_weights.to(next(iter(maps.values())).device), grid, out_grid, smooth)


def text_weights_for(
    offsets: Sequence[Sequence[tuple[int, int]]] | Tensor,
    attention_mask: Sequence[Sequence[int]] | Tensor,
    instructions: str | Sequence[str],
    keywords: Sequence[str] = (),
) -> Tensor:
    """Weights [B, T] (float32, CPU) selecting the text rows to average, for any tokenizer and padding side.

    offsets: per row, the (start, end) character span of each of the T tokens of the padded sequence the model saw
    (a fast tokenizer's `offset_mapping`); attention_mask [B, T]: 1 on real tokens; instructions: the text per row
    (one string for all rows). No keywords: every real token (special tokens such as <bos> included). Otherwise the
    real tokens whose span overlaps any case-insensitive whole-word occurrence of a keyword (all occurrences).
    ValueError names keywords that are empty or not found.
    """
    spans = torch.as_tensor(offsets, dtype=torch.long)
    real = torch.as_tensor(attention_mask).bool()
    if spans.ndim != 3 or spans.shape[-1] != 2 or tuple(real.shape) != tuple(spans.shape[:2]):
        raise ValueError(f"offsets must be [B, T, 2] and attention_mask [B, T]; got {spans.shape} and {real.shape}")
    rows = [instructions] * spans.shape[0] if isinstance(instructions, str) else list(instructions)
    if len(rows) != spans.shape[0]:
        raise ValueError(f"got {len(rows)} instructions for {spans.shape[0]} rows")
    if not real.any(dim=-1).all():
        raise ValueError("attention_mask has a row without real tokens")
    if not keywords:
        return real.float()
    empty = [k for k in keywords if not k.strip()]
    if empty:
        raise ValueError(f"keywords must be non-empty words; got {empty!r}")
    start, end = spans[..., 0], spans[..., 1]
    weights = torch.zeros(real.shape)
    for row, text in enumerate(rows):
        missing = []
        for word in keywords:
            hits = [m.span() for m in re.finditer(rf"(?<!\w){re.escape(word.strip())}(?!\w)", text, re.IGNORECASE)]
            picked = torch.zeros(real.shape[1], dtype=torch.bool)
            for lo, hi in hits:
                picked |= (start[row] < hi) & (end[row] > lo) & (end[row] > start[row])
            picked &= real[row]
            if not picked.any():
                missing.append(word)
            weights[row] += picked.float()
        if missing:
            raise ValueError(f"keywords {missing!r} not found in instruction {text!r} (row {row})")
    return weights.clamp(max=1.0)


LOGIT_SIGMA = 1.0  # Gaussian blur of logit maps, in tokens: a token's neighbours share its evidence (as an edit does)


def change_map(logits: Tensor, src: Tensor) -> Tensor:
    """Predicted change [B, H, W] in [0, 1]: 1 - p(source token) under logits [B, K, H, W] (the instruction's row
    of the first step, every target token masked): where the model is about to replace the source's token."""
    probs = logits.float().softmax(dim=1)
    return 1.0 - probs.gather(1, src[:, None])[:, 0]


def kl_map(cond: Tensor, uncond: Tensor) -> Tensor:
    """1 - exp(-KL(p_cond || p_uncond)) [B, H, W] in [0, 1) from two logits [B, K, H, W]: where the instruction
    moves the token distribution away from the negative prompt's (a DiffEdit-style mask for masked models)."""
    lc, lu = cond.float().log_softmax(dim=1), uncond.float().log_softmax(dim=1)
    return 1.0 - torch.exp(-(lc.exp() * (lc - lu)).sum(dim=1).clamp(min=0))


def logit_maps(kinds: Sequence[str], cond: Tensor, uncond: Tensor | None, src: Tensor) -> Tensor:
    """The mean of the logit maps named in kinds ('change', 'kl'; see entries.LOGIT_ENTRIES), each blurred by
    LOGIT_SIGMA tokens: [B, H, W] in [0, 1], absolute (not rescaled per image, so an edit of the whole image stays
    high everywhere). uncond: the negative prompt's logits, needed by 'kl'."""
    parts = []
    for kind in kinds:
        if kind == "change":
            parts.append(change_map(cond, src))
        elif kind == "kl":
            if uncond is None:
                raise ValueError("the 'kl' map needs guidance (a negative prompt's logits); use 'change'")
            parts.append(kl_map(cond, uncond))
        else:
            raise ValueError(f"unknown logit map {kind!r}; expected 'change' or 'kl'")
    return gaussian_blur(torch.stack(parts).mean(dim=0), LOGIT_SIGMA).clamp(0.0, 1.0)

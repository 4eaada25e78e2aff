"""The reference scheduler step, bit for bit, and the reference-compatible sampler step built on it.

`reference_step` is one call of the reference `Scheduler.step` (RNG order included; see schedule for the draws);
`reference_step_details` returns its intermediates too, for the fixture tests. `sample` with
`SamplerOptions(reference_compatible=True)` runs `reference_update` at every step: the reference pipeline's map and
then exactly that step. Bit-exactness holds for the same torch build on the same kernel path (see docs/method.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..model import entries
from .consolidate import adaptive_filter, attention_scores, map_grid, min_max, upsample
from .options import SamplerOptions
from .schedule import cosine_schedule, draw_tokens, gumbel_confidence

# Knobs of ours the reference sampler lacks, at the values that leave its behaviour unchanged.
REFERENCE_VALUES = {"grow": 0, "focus_gate": 0.0, "token_temperature": 1.0}


def check_reference_options(options: SamplerOptions, user_mask: Tensor | None) -> None:
    """ValueError naming what a reference_compatible run cannot take: knobs of ours at other than REFERENCE_VALUES,
    map entries other than instruction -> target blocks, a brush. Nothing to check without reference_compatible."""
    if not options.reference_compatible:
        return
    extra = [k for k, v in REFERENCE_VALUES.items() if getattr(options, k) != v]
    if extra:
        use = ", ".join(f"{k}={REFERENCE_VALUES[k]:g}" for k in extra)
        raise ValueError(
            f"{', '.join(extra)} not supported with reference_compatible=True (the reference sampler "
            f"has no such knob); use {use}"
        )
    parsed = [entries.parse(e) for e in options.layers or ()]
    if any(p.needs_source for p in parsed):
        raise ValueError(
            "source-image maps ('s<i>', 'rs<i>' layers) are not supported with reference_compatible=True "
            "(the reference reads instruction -> target attention only)"
        )
    if any(p.kind != "" or p.heads is not None for p in parsed):
        raise ValueError(
            "row, head-selected and logit maps ('r<i>', ':h..', 'change', 'kl') are not supported with "
            "reference_compatible=True (the reference reads instruction -> target attention only)"
        )
    if user_mask is not None:
        raise ValueError("user_mask is not supported with reference_compatible=True (the reference has no brush)")


@dataclass(frozen=True)
class ReferenceStep:
    """Everything one reference `Scheduler.step` computes; flat tensors are [B, H*W] (row-major positions)."""

    prev_sample: Tensor  # int64 [B, H, W] state after the step (mask_id where re-masked)
    pred_original_sample: Tensor  # int64 [B, H, W] sampled tokens after keep-known and hold
    unknown: Tensor  # bool [B, HW] masked on entry
    token_probs: Tensor  # float [B, HW] probability of the token in pred at every position
    scores: Tensor | None  # float [B, HW] map compared with lam (after the 32x32 -> 64x64 bicubic); None: hold off
    hold: Tensor | None  # bool [B, HW] unknown & (scores < lam); None: hold off
    mask_len: Tensor | None  # int64 [B, 1] re-masked count after the clamps; None at the last step (also below)
    gumbel: Tensor | None  # float [B, HW] draw 2
    confidence: Tensor | None  # float [B, HW] log(selected_probs) + temperature * gumbel
    masking: Tensor | None  # bool [B, HW] re-masked positions


def _reference_scores(scores: Tensor, b: int, h: int, w: int) -> Tensor:
    s = scores.reshape(b, -1)
    if h * w == 4096 and s.shape[1] == 1024:  # the reference's upsample_score_map, hard-coded 32 -> 64
        s = upsample(s.view(b, 32, 32), (64, 64)).reshape(b, -1)
    if s.shape[1] != h * w:
        raise ValueError(f"scores have {s.shape[1]} values per row; expected {h * w} (or 1024 for a 64x64 grid)")
    return s


def reference_step_details(
    logits: Tensor,
    step_index: int,
    num_steps: int,
    sample: Tensor,
    generator: torch.Generator | None,
    *,
    mask_id: int,
    temperatures: Tensor,
    lam: float = 0.0,
    scores: Tensor | None = None,
    src: Tensor | None = None,
    starting_mask_ratio: float | Tensor = 1.0,
) -> ReferenceStep:
    """The reference `Scheduler.step(logits, timesteps[step_index], sample, ...)` with its intermediates.

    logits [B, K, H, W] (CFG-combined), sample int64 [B, H, W], temperatures [N] (see `temperatures`), scores
    [B, H*W] or [B, 1024] for a 64x64 grid (the reference upsamples it), src int64 [B, H, W] (needed when lam > 0).
    """
    b, _, h, w = logits.shape
    flat = sample.reshape(b, h * w)
    unknown = flat == mask_id
    probs, pred = draw_tokens(logits, generator)
    pred = torch.where(unknown, pred, flat)
    hold = None
    if lam > 0 and scores is not None:
        if src is None:
            raise ValueError("region-hold (lam > 0 with scores) needs src, the source tokens")
        scores = _reference_scores(scores, b, h, w)
        hold = unknown & (scores < lam).to(unknown.device)
        pred = torch.where(hold, src.reshape(b, -1), pred)
    else:
        scores = None
    token_probs = torch.gather(probs, -1, pred[:, :, None])[:, :, 0]
    if step_index == num_steps - 1:  # timestep 0: commit everything, no second draw
        out = pred.view(b, h, w)
        return ReferenceStep(out, out, unknown, token_probs, scores, hold, None, None, None, None)
    ratio = (torch.tensor([[step_index]], device=sample.device) + 1) / num_steps
    length = (h * w * (starting_mask_ratio * cosine_schedule(ratio))).floor()
    length = torch.min(unknown.sum(dim=-1, keepdim=True) - 1, length)  # do not re-mask more than was masked
    length = torch.max(torch.tensor([1], device=logits.device), length)  # re-mask at least one
    selected = torch.where(unknown, token_probs, torch.finfo(token_probs.dtype).max)
    gumbel, confidence = gumbel_confidence(selected, temperatures[step_index], generator)
    cut_off = torch.gather(torch.sort(confidence, dim=-1).values, 1, length.long())
    masking = confidence < cut_off
    prev = torch.where(masking, mask_id, pred)
    grid = (prev.view(b, h, w), pred.view(b, h, w))
    return ReferenceStep(*grid, unknown, token_probs, scores, hold, length.long(), gumbel, confidence, masking)


def reference_step(logits: Tensor, step_index: int, num_steps: int, sample: Tensor, generator, **kwargs):
    """One reference scheduler step -> (prev_sample, pred_original_sample), int64 [B, H, W] each.

    Keywords of `reference_step_details`: mask_id, temperatures, lam=0, scores=None, src=None, starting_mask_ratio=1.
    """
    out = reference_step_details(logits, step_index, num_steps, sample, generator, **kwargs)
    return out.prev_sample, out.pred_original_sample


def reference_update(
    logits: Tensor,
    maps: dict[int | str, Tensor] | None,
    tokens: Tensor,
    src: Tensor,
    generator: torch.Generator,
    *,
    text_weights: Tensor | None,
    temperatures: Tensor,
    step: int,
    num_steps: int,
    lam: float,
    mask_id: int,
):
    """One step of `sample` with reference_compatible: the reference pipeline's map, then `reference_step`.

    logits [B, K, H, W] (CFG-combined), maps {block: [B, heads, T, I]} (the cond rows; None: no map), tokens and src
    int64 [B, H, W], text_weights [B, T] (needed with maps). The map is the reference's tokens_to_attn ->
    rescale_scores -> smooth_local_scores('adaptive'), upsampled to the token grid. Returns (tokens, token_probs,
    hold, scores) on the grid [B, H, W]; hold and scores None without a hold.
    """
    b, h, w = tokens.shape
    scores = None
    if maps is not None:
        scores = adaptive_filter(min_max(attention_scores(maps, text_weights)).view(b, *map_grid(maps, h, w)))
        scores = scores.flatten(1) if (h, w) == (64, 64) else upsample(scores, (h, w)).flatten(1)
    kwargs = dict(mask_id=mask_id, temperatures=temperatures, lam=lam, scores=scores, src=src)
    out = reference_step_details(logits, step, num_steps, tokens, generator, **kwargs)
    grid = lambda t: None if t is None else t.view(b, h, w)
    return out.prev_sample, grid(out.token_probs), grid(out.hold), grid(out.scores)

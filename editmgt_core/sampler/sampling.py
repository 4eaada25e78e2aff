"""MaskGIT sampling for EditMGT: the sampler's options and the step generator.

`sample(logits_fn, src, options, mask_id=...)` is a generator over a `logits_fn` closure that yields a `StepRecord`
after every step; `sample_to_end` runs it through. The schedule and the two random draws per step are in schedule,
the region hold's pure functions in hold, and the reference scheduler step, bit for bit, in reference_sampler: with
`SamplerOptions(reference_compatible=True)` every step is exactly that.

Conventions (the reference's): timestep t = N-1-step (N-1 first, 0 last); tokens [B, H, W] hold `mask_id` where still
masked; one generator serves every draw (see schedule).

logits_fn(tokens, timestep, capture) -> (logits [n, K, H, W], {block: maps [n, heads, T, I]}): with guidance
(guidance_scale != 1; the reference's rule > 1 when reference_compatible) n = 2B, the sampler passes [tokens,
tokens] and the closure lays rows out as [uncond (B), cond (B)]; the sampler combines u + g (c - u) and keeps the
cond maps. Without guidance n = B. capture is True when the step needs maps (lam > 0 or show_map, and not a
'replace' brush; show_map makes the map at lam = 0 too, for display, and changes no token); the map (on the
model's attention grid, see map_grid, upsampled to (H, W)) of step k's forward decides the hold of step k,
recomputed every step as the reference does. text_weights [B, T] (see consolidate.text_weights_for)
picks the text rows of the map. Logit entries in options.layers ('change', 'kl'; see entries) are made from the
first step's logits (the instruction's row, and the negative prompt's for 'kl') and kept for every step; with
attention entries too the map is the mean of the two (mix_maps); with logit entries alone logits_fn is asked
for no maps.
options.grow widens the map's edit region (grow_map) before it meets the brush and λ; a row whose focus at the
first step is below options.focus_gate holds nothing by the map (see focus, gated_rows). The yielded scores are
the map as made, before both. user_mask bool [B, H, W] (True = editable) combines with the map per
options.mask_mode (see combine_hold). hold.hold_scores chains the three.

Normal mode: held tokens are committed to src and never re-masked (so they never change), and exactly the
scheduled number of open tokens is re-masked, the schedule running over the tokens not held (edit_step).
reference_compatible: every step is exactly `reference_step` (reference_sampler.reference_update; holds may be
re-masked, as in the reference); it takes no brush. One generator, seeded from options.seed, on src's device
serves all steps, as the reference pipeline's.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from editmgt_core.model import entries
from editmgt_core.sampler.consolidate import check_text_weights, consolidate_unchecked, logit_maps, map_grid
from editmgt_core.sampler.hold import combine_hold, focus, gated_rows, hold_scores, hold_tokens
from editmgt_core.sampler.options import DEMO_NEGATIVE_PROMPT, SamplerOptions
from editmgt_core.sampler.reference_sampler import check_reference_options, reference_update
from editmgt_core.sampler.schedule import cosine_schedule, draw_tokens, gumbel_confidence, temperatures

__all__ = ["DEMO_NEGATIVE_PROMPT", "LogitsFn", "SamplerOptions", "StepRecord", "edit_step", "sample", "sample_to_end"]

# logits_fn(tokens [n, H, W], timestep, capture) -> (logits [n, K, H, W], {block: attention [n, heads, T, I]})
LogitsFn = Callable[[Tensor, int, bool], tuple[Tensor, dict[int | str, Tensor]]]


@dataclass(frozen=True)
class StepRecord:
    """The state after one sampler step. Tensors stay on the compute device; consumers move them."""

    step: int  # 0-based step index (timestep N-1-step)
    num_steps: int  # N
    tokens: Tensor  # int64 [B, H, W] current state, mask_id where still masked (none after the last step)
    revealed: Tensor  # bool [B, H, W] positions decided at this step (held ones included)
    confidence: Tensor  # float [B, H, W] model probability of the token predicted (or kept / held) this step
    scores: Tensor | None  # float [B, H, W] the consolidated map, brush applied (held by after grow and gate);
    # None: no map
    hold: Tensor | None  # bool [B, H, W] positions committed to the source token so far; None: hold off
    focus: Tensor | None = None  # float [B] instruction focus at the first step (see focus); None: no map
    gated: Tensor | None = None  # bool [B] rows not held because focus < options.focus_gate; None: no gate

    def gate_of(self, row: int = 0) -> tuple[float | None, bool]:
        """(focus, gated) of one row as plain values (a host sync); (None, False) without a map or gate."""
        focus = None if self.focus is None else float(self.focus[row])
        return focus, self.gated is not None and bool(self.gated[row])

    @property
    def held_fraction(self) -> float:
        """Fraction of all tokens currently held to the source (a host sync; 0 when hold is off)."""
        return 0.0 if self.hold is None else self.hold.float().mean().item()


def edit_step(
    logits: Tensor,
    tokens: Tensor,
    src: Tensor,
    generator: torch.Generator,
    *,
    temperature: Tensor,
    schedule: Tensor | None,
    scores: Tensor | None,
    lam: float,
    mask_id: int,
    token_temperature: float = 1.0,
    held: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """One step of the normal mode; schedule None = last step. Returns (tokens, token_probs, hold) on the grid.

    logits [B, K, H, W] (guidance applied), tokens and src int64 [B, H, W], temperature this step's Gumbel scale,
    scores [B, H, W] the map the hold compares with `lam` (None: no hold by the map), held bool [B, H, W] the tokens
    committed to src by earlier steps.
    As the reference, except: held tokens are committed (never re-masked), the cosine schedule (`schedule`, the
    float32 share still masked after this step) runs over the tokens the edit may change (all but the held ones,
    `held` from earlier steps and this step's), so a hold that keeps most of the image still gives the edit every
    step; exactly that many open tokens are re-masked, ties broken by position instead of re-masking fewer; and the
    logits are divided by `token_temperature` before the draw (the confidences then come from the sharpened
    distribution too). Without a hold the count is the reference's (mask_len).
    """
    b, _, h, w = logits.shape
    flat = tokens.reshape(b, -1)
    unknown = flat == mask_id
    logits = logits.float() if token_temperature == 1 else logits.float() / token_temperature
    probs, pred = draw_tokens(logits, generator)
    pred = torch.where(unknown, pred, flat)
    hold = None
    if scores is not None:
        pred, hold = hold_tokens(pred, unknown, scores.reshape(b, -1), lam, src.reshape(b, -1))
    token_probs = torch.gather(probs, -1, pred[:, :, None])[:, :, 0]
    if schedule is not None:
        open_ = unknown if hold is None else unknown & ~hold
        count = open_.sum(dim=-1, keepdim=True)
        editable = torch.full_like(count, h * w)
        if hold is not None:
            editable = editable - hold.sum(dim=-1, keepdim=True)
        if held is not None:
            editable = editable - held.reshape(b, -1).sum(dim=-1, keepdim=True)
        length = (editable * schedule.to(logits.device)).floor().long()  # as mask_len, on the editable tokens
        count_masked = (count - 1).clamp(min=1).minimum(length.clamp(min=1)).minimum(count)  # the reference's clamps
        _, confidence = gumbel_confidence(token_probs, temperature, generator)
        order = confidence.masked_fill(~open_, math.inf).argsort(dim=-1, stable=True)
        rank = torch.empty_like(order).scatter_(-1, order, torch.arange(h * w, device=order.device).expand_as(order))
        pred = torch.where(rank < count_masked, mask_id, pred)
    return pred.view(b, h, w), token_probs.view(b, h, w), None if hold is None else hold.view(b, h, w)


def mix_maps(maps: dict[int | str, Tensor], weights: Tensor, out_grid: tuple[int, int], logit_map: Tensor | None):
    """The map [B, *out_grid] in [0, 1]: the attention entries consolidated (consolidate.consolidate: min-max,
    adaptive filter, upsampled), the logit entries' map (consolidate.logit_maps), or the mean of the two."""
    att = consolidate_unchecked(maps, weights, map_grid(maps, *out_grid), out_grid) if maps else None
    if logit_map is None:
        return att
    return logit_map if att is None else 0.5 * (att + logit_map)


def _guided(logits_fn: LogitsFn, tokens: Tensor, timestep: int, attend: bool, scale: float, guided: bool):
    """One forward -> (logits with guidance applied, uncond logits or None, cond logits, the cond rows' maps)."""
    logits, maps = logits_fn(torch.cat([tokens, tokens]) if guided else tokens, timestep, attend)
    if attend and not maps:
        raise ValueError("logits_fn returned no attention maps although capture=True")
    if not guided:
        return logits, None, logits, maps
    uncond, cond = logits.chunk(2)
    return uncond + scale * (cond - uncond), uncond, cond, {layer: m.chunk(2)[1] for layer, m in maps.items()}


def _map_and_hold(maps, weights, grid, logit_map, gated, options: SamplerOptions, user_mask, capture: bool):
    """One normal step's (scores the hold compares with λ or None, the map as shown or None): the map as made, the
    hold's scores after grow, gate and brush (none without λ or a brush), the shown map with the brush applied."""
    scores = mix_maps(maps, weights, grid, logit_map) if capture else None  # the map as made
    held_by = None  # show_map at λ = 0 without a brush holds nothing
    if options.lam > 0 or user_mask is not None:
        held_by = hold_scores(scores, grow=options.grow, gated=gated, user_mask=user_mask, mode=options.mask_mode)
    if user_mask is not None:  # shown and scored: the map with the brush, before grow and gate
        scores = combine_hold(scores, user_mask, options.mask_mode)
    return held_by, scores


def _check_inputs(src, mask_id, text_weights, user_mask, options, capture):
    if src.ndim != 3 or src.dtype != torch.long:
        raise ValueError(f"src must be int64 [B, H, W]; got {src.dtype} {tuple(src.shape)}")
    if not isinstance(mask_id, int) or mask_id < 0:
        raise ValueError(f"mask_id={mask_id!r}; expected an integer >= 0")
    check_reference_options(options, user_mask)
    guided = options.guidance_scale > 1.0 if options.reference_compatible else options.guidance_scale != 1.0
    if any(entries.parse(e).kind == "kl" for e in options.layers or ()) and not guided:
        raise ValueError(
            "the 'kl' map compares the instruction's logits with the negative prompt's: it needs "
            "guidance (guidance_scale != 1); use 'change'"
        )
    if user_mask is not None and (user_mask.dtype != torch.bool or user_mask.shape != src.shape):
        raise ValueError(f"user_mask must be bool {tuple(src.shape)}; got {user_mask.dtype} {tuple(user_mask.shape)}")
    if capture:  # (a downsampling model checks the grid's even sides itself)
        if text_weights is None or text_weights.ndim != 2 or text_weights.shape[0] != src.shape[0]:
            got = None if text_weights is None else tuple(text_weights.shape)
            raise ValueError(f"the map (lam > 0 or show_map) needs text_weights [B={src.shape[0]}, T]; got {got}")
        check_text_weights(text_weights)


def _generator(seed: int | None, device: torch.device) -> torch.Generator:
    """The one generator of a run, on src's device as the reference pipeline's; seed None = fresh entropy."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()  # fresh entropy, as the demo's unseeded run
    else:
        generator.manual_seed(seed)
    return generator


@torch.inference_mode()
def sample(
    logits_fn: LogitsFn,
    src: Tensor,
    options: SamplerOptions,
    *,
    mask_id: int,
    text_weights: Tensor | None = None,
    user_mask: Tensor | None = None,
    show_map: bool = False,
) -> Iterator[StepRecord]:
    """Edit src (int64 [B, H, W] source tokens) in options.steps steps, yielding a StepRecord after each.

    logits_fn(tokens, timestep, capture) -> (logits [n, K, H, W], {block: maps [n, heads, T, I]}): with guidance
    n = 2B, rows laid out [uncond (B), cond (B)]; without, n = B. text_weights [B, T] (consolidate.text_weights_for)
    picks the map's text rows; user_mask bool [B, H, W] (True = editable) is the brush; show_map makes the map at
    λ = 0 too, for display (it changes no token). The module's docstring says how a step runs.
    """
    ref = options.reference_compatible
    guided = options.guidance_scale > 1.0 if ref else options.guidance_scale != 1.0
    holding = options.lam > 0 or user_mask is not None
    capture = (options.lam > 0 or show_map) and not (user_mask is not None and options.mask_mode == "replace")
    _check_inputs(src, mask_id, text_weights, user_mask, options, capture)
    logit_kinds = [e.kind for e in map(entries.parse, options.layers or ()) if e.is_logit]
    attend = capture and (options.layers is None or len(logit_kinds) < len(options.layers))  # attention entries
    logit_map = None  # the logit entries' map, made from the first step's logits and kept
    b, h, w = src.shape
    n = options.steps
    weights = text_weights.to(src.device) if capture else None
    temps = temperatures(options.temperature, n).to(src.device)
    generator = _generator(options.seed, src.device)
    tokens = torch.full_like(src, mask_id)
    held = torch.zeros_like(src, dtype=torch.bool) if holding else None
    first_focus = gated = None
    for step in range(n):
        logits, uncond, cond, maps = _guided(logits_fn, tokens, n - 1 - step, attend, options.guidance_scale, guided)
        if capture and logit_kinds and step == 0:
            logit_map = logit_maps(logit_kinds, cond, uncond, src)
        if ref:
            new, probs, hold, scores = reference_update(
                logits, maps if capture else None, tokens, src, generator, text_weights=weights, temperatures=temps,
                step=step, num_steps=n, lam=options.lam, mask_id=mask_id,
            )  # fmt: skip
        else:
            if capture and step == 0 and maps:
                first_focus = focus(maps, weights)
                gated = gated_rows(first_focus, options.focus_gate)
            held_by, scores = _map_and_hold(maps, weights, (h, w), logit_map, gated, options, user_mask, capture)
            share = cosine_schedule((torch.tensor([[step]]) + 1) / n) if step < n - 1 else None  # as mask_len
            new, probs, hold = edit_step(
                logits, tokens, src, generator, temperature=temps[step], schedule=share, scores=held_by,
                lam=options.lam, mask_id=mask_id, token_temperature=options.token_temperature, held=held,
            )  # fmt: skip
        decided = new != mask_id
        revealed = (tokens == mask_id) & decided
        if hold is not None:
            held = held | (hold & decided)
        tokens = new
        yield StepRecord(step, n, tokens, revealed, probs, scores, held, first_focus, gated)


def sample_to_end(logits_fn: LogitsFn, src: Tensor, options: SamplerOptions, **kwargs) -> Tensor:
    """Run `sample` through and return the final tokens int64 [B, H, W]."""
    return deque(sample(logits_fn, src, options, **kwargs), maxlen=1)[0].tokens

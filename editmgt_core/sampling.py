"""MaskGIT sampling for EditMGT: schedules, the reference scheduler step, region-hold and the step generator.

`sample(logits_fn, src, options, mask_id=...)` is a generator over a `logits_fn` closure that yields a `StepRecord`
after every step; `sample_to_end` runs it through. `reference_step` is one call of the reference `Scheduler.step`,
bit for bit (RNG order included); with `SamplerOptions(reference_compatible=True)` every step is exactly that.

Conventions (the reference's): timestep t = N-1-step (N-1 first, 0 last); tokens [B, H, W] hold `mask_id` where still
masked; one generator serves every draw, per step first `multinomial` over all [B*H*W, K] probabilities, then (except
at the last step) `uniform_` [B, H*W] for the Gumbel noise of the re-masking.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from editmgt_core import entries
from editmgt_core.consolidate import (
    adaptive_filter,
    attention_scores,
    check_text_weights,
    logit_maps,
    min_max,
    upsample,
)
from editmgt_core.consolidate import consolidate_unchecked as consolidate_maps
from editmgt_core.entries import from_text as layers_from_text  # noqa: F401  (the text form's parser, re-exported)

# src/v2_model.py `negative_prompt`, which the published demo (infer.py) passes.
DEMO_NEGATIVE_PROMPT = (
    "worst quality, low quality, low res, blurry, distortion, watermark, logo, signature, text, jpeg artifacts, "
    "signature, sketch, duplicate, ugly, identifying mark"
)
MASK_MODES = ("union", "intersection", "replace")
EDITABLE, PROTECTED = 2.0, -1.0  # brush scores outside [0, 1]: no lam in [0, 1] holds / frees them

# logits_fn(tokens [n, H, W], timestep, capture) -> (logits [n, K, H, W], {block: attention [n, heads, T, I]})
LogitsFn = Callable[[Tensor, int, bool], tuple[Tensor, dict[int | str, Tensor]]]


@dataclass(frozen=True)
class SamplerOptions:
    """Sampler knobs; defaults are the published demo's (infer.py) and, where it is silent, the reference pipeline's.

    `sample` reads steps, guidance_scale, lam, grow, focus_gate, temperature, token_temperature, seed, mask_mode and
    reference_compatible; gamma, keywords, layers and negative_prompt are for whoever builds logits_fn and
    text_weights, keep_pixels for whoever decodes the result (the editing engine).
    """

    steps: int = 36  # decoding steps N; infer.py num_inference_steps=36 (Pipeline.__call__ default: 12)
    guidance_scale: float = 6.0  # CFG scale g, logits u + g(c - u); infer.py guidance_scale=6 (Pipeline default: 10)
    gamma: float = 1.1  # source-attention strength γ, for logits_fn; infer.py reference_strength=1.1; 1 = no bias
    lam: float = 0.0  # region-hold threshold λ in [0, 1]; Pipeline.local_guidance=0 (off), infer.py suggests 0.01
    keywords: tuple[str, ...] = ()  # words whose text rows form the map; Pipeline.local_query_text=None (all rows)
    temperature: float | tuple[float, float] = (2.0, 0.0)  # Gumbel scale of re-masking; Pipeline/set_timesteps (2, 0)
    token_temperature: float = 1.0  # tokens are drawn from softmax(logits / this); 1 = the reference's draw
    seed: int | None = None  # generator seed; None = fresh entropy (infer.py passes no generator)
    layers: tuple[int | str, ...] | None = None  # map entries (see entries); None = the model's (infer.py: 28..36)
    negative_prompt: str = DEMO_NEGATIVE_PROMPT  # unconditional text of the CFG pair; infer.py v2_model.negative_prompt
    mask_mode: str = "replace"  # brush mask with the map: 'union' | 'intersection' | 'replace' (not in the reference)
    grow: int = 0  # grow the map's edit region by this many tokens before holding (see grow_map; not in the reference)
    focus_gate: float = 0.0  # hold only rows whose instruction focus (see focus) reaches this; 0 = always (not in ref.)
    keep_pixels: bool = True  # unchanged tokens show the input's own pixels in the output (editing; not in the ref.)
    reference_compatible: bool = False  # every step exactly the reference's Scheduler.step (see sample)

    def __post_init__(self):
        def bad(name, allowed):
            raise ValueError(f"{name}={getattr(self, name)!r}; allowed: {allowed}")

        integer = lambda x: isinstance(x, int) and not isinstance(x, bool)
        number = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
        if not integer(self.steps) or self.steps < 1:
            bad("steps", "an integer >= 1")
        if not number(self.guidance_scale) or self.guidance_scale < 0:
            bad("guidance_scale", "a finite number >= 0 (1 = no guidance)")
        if not number(self.gamma) or self.gamma < 0:
            bad("gamma", "a finite number >= 0 (1 = no bias)")
        if not number(self.lam) or not 0 <= self.lam <= 1:
            bad("lam", "[0, 1]")
        if not isinstance(self.keywords, tuple) or not all(isinstance(k, str) and k.strip() for k in self.keywords):
            bad("keywords", "a tuple of non-empty strings")
        t = self.temperature
        if not (number(t) and t >= 0 or isinstance(t, tuple) and len(t) == 2 and all(number(x) and x >= 0 for x in t)):
            bad("temperature", "a number >= 0 or a pair (start, end) of numbers >= 0")
        if not number(self.token_temperature) or self.token_temperature <= 0:
            bad("token_temperature", "a finite number > 0 (1 = the reference's draw; lower = more confident tokens)")
        if self.seed is not None and (not integer(self.seed) or not 0 <= self.seed < 2**64):
            bad("seed", "None or an integer in [0, 2**64)")
        if self.layers is not None and not entries.valid(self.layers):
            bad("layers", "None or a tuple of distinct map entries (block indices >= 0, 's<i>', 'r<i>', 'rs<i>', "
                "'change', 'kl'; see entries), at least one not read from the source stream alone")  # fmt: skip
        if not isinstance(self.negative_prompt, str):
            bad("negative_prompt", "a string")
        if self.mask_mode not in MASK_MODES:
            bad("mask_mode", MASK_MODES)
        if not integer(self.grow) or self.grow < 0:
            bad("grow", "an integer >= 0 (tokens)")
        if not number(self.focus_gate) or not 0 <= self.focus_gate <= 1:
            bad("focus_gate", "[0, 1] (0 = always hold)")
        if not isinstance(self.keep_pixels, bool):
            bad("keep_pixels", "True or False")
        if not isinstance(self.reference_compatible, bool):
            bad("reference_compatible", "True or False")


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


def hold_tokens(pred: Tensor, unknown: Tensor, scores: Tensor, lam: float, src: Tensor) -> tuple[Tensor, Tensor]:
    """Region-hold: undecided tokens whose score is below lam take the source token. Returns (pred, hold).

    hold = unknown & (scores < lam); lam = 1 is inclusive (scores <= 1) so that it holds every token of a [0, 1] map,
    including bicubic overshoot clamped to 1. All tensors share one shape.
    """
    below = scores <= lam if lam >= 1.0 else scores < lam
    hold = unknown & below
    return torch.where(hold, src, pred), hold


def focus(maps: dict[int | str, Tensor], text_weights: Tensor) -> Tensor | None:
    """Instruction focus [B]: the share of the instruction's attention that lands on the image being edited rather
    than on the text (the captured maps' softmax runs over the text and target keys, see math.text_to_image_probs;
    mean over the captured blocks, heads and the weighted text rows). Only instruction -> target entries count (see
    entries): an instruction about the whole image attends to the source at least as much as one about an object,
    and the other directions do not share this softmax. None when no such entry was captured.

    An instruction that names something in the image ("the red circle") attends to it; one that changes the whole
    image ("make it sepia", "a blue background") attends less to the image, and holding by its map would clip the
    edit. With options.focus_gate, a row whose focus at the first step is below the gate is not held.
    """
    target = {k: m for k, m in maps.items() if entries.parse(k).kind == ""}
    return attention_scores(target, text_weights).sum(dim=-1) if target else None


def grow_map(scores: Tensor, tokens: int) -> Tensor:
    """Every token takes the highest score within `tokens` tokens of it (a square max filter): the region above any
    λ grows by that many tokens on each side, so an edit that reaches past the object the map found (a larger shape,
    an object's rim) is not held. scores [B, H, W]; tokens 0 returns scores unchanged."""
    if tokens == 0:
        return scores
    k = 2 * tokens + 1
    return F.max_pool2d(scores[:, None], k, stride=1, padding=tokens)[:, 0]  # padding counts as -inf


def combine_hold(scores: Tensor | None, user_mask: Tensor, mode: str) -> Tensor:
    """Score map [B, H, W] from the attention map and a brush mask (bool [B, H, W], True = editable).

    'replace': the brush alone; 'union': editable if painted or relevant; 'intersection': editable only if painted
    and relevant. Painted-editable scores become 2 and protected ones -1, so every lam in [0, 1] frees respectively
    holds them. scores None (no map, lam = 0) counts as relevant everywhere: union holds nothing, intersection is
    the brush alone.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mask_mode={mode!r}; allowed: {MASK_MODES}")
    if mode == "replace" or (scores is None and mode == "intersection"):
        return torch.where(user_mask, EDITABLE, PROTECTED)
    if scores is None:
        return torch.full(user_mask.shape, EDITABLE, device=user_mask.device)
    if mode == "union":
        return torch.where(user_mask, EDITABLE, scores)
    return torch.where(user_mask, scores, PROTECTED)


def pixel_mask_to_tokens(mask: Tensor, grid: tuple[int, int], rule: str = "area") -> Tensor:
    """Brush mask [B, Hp, Wp] (bool, or float coverage in [0, 1]) -> bool token mask [B, *grid].

    Each token gets the mean coverage of its pixel cell (adaptive average pooling, so any size maps to any grid);
    rule 'area': editable when more than half covered; 'any': when touched at all.
    """
    if mask.ndim != 3:
        raise ValueError(f"mask must be [B, Hp, Wp]; got shape {tuple(mask.shape)}")
    if rule not in ("area", "any"):
        raise ValueError(f"rule={rule!r}; allowed: ('area', 'any')")
    cover = mask.float()
    if ((cover < 0) | (cover > 1)).any():
        raise ValueError("mask values must lie in [0, 1]")
    cover = F.adaptive_avg_pool2d(cover[:, None], tuple(grid))[:, 0]
    return cover > 0.5 if rule == "area" else cover > 0


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


def _edit_step(logits, tokens, src, generator, temperature, schedule, scores, lam, mask_id, token_temperature=1.0,
               held=None):  # fmt: skip
    """One step of the normal mode; schedule None = last step. Returns (tokens, token_probs, hold) on the grid.

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


def _reference_update(logits, maps, tokens, src, generator, weights, temps, step, options, mask_id):
    b, h, w = tokens.shape
    scores = None
    if maps is not None:  # the reference's tokens_to_attn -> rescale_scores -> smooth_local_scores('adaptive')
        scores = adaptive_filter(min_max(attention_scores(maps, weights)).view(b, *map_grid(maps, h, w)))
        scores = scores.flatten(1) if (h, w) == (64, 64) else upsample(scores, (h, w)).flatten(1)
    kwargs = dict(mask_id=mask_id, temperatures=temps, lam=options.lam, scores=scores, src=src)
    out = reference_step_details(logits, step, options.steps, tokens, generator, **kwargs)
    grid = lambda t: None if t is None else t.view(b, h, w)
    return out.prev_sample, grid(out.token_probs), grid(out.hold), grid(out.scores)


def mix_maps(maps: dict[int | str, Tensor], weights: Tensor, out_grid: tuple[int, int], logit_map: Tensor | None):
    """The map [B, *out_grid] in [0, 1]: the attention entries consolidated (consolidate.consolidate: min-max,
    adaptive filter, upsampled), the logit entries' map (consolidate.logit_maps), or the mean of the two."""
    att = consolidate_maps(maps, weights, map_grid(maps, *out_grid), out_grid) if maps else None
    if logit_map is None:
        return att
    return logit_map if att is None else 0.5 * (att + logit_map)


def map_grid(maps: dict[int | str, Tensor], h: int, w: int) -> tuple[int, int]:
    """The attention grid of captured maps [.., I] for an h x w token grid: (h/2, w/2) after the model's 2x2
    downsample (the published configuration), (h, w) for a model without it."""
    i = next(iter(maps.values())).shape[-1]
    for grid in ((h // 2, w // 2), (h, w)):
        if i == grid[0] * grid[1]:
            return grid
    raise ValueError(f"maps have {i} image keys; expected {(h // 2) * (w // 2)} or {h * w} for a {h}x{w} token grid")


# Knobs of ours the reference sampler lacks, at the values that leave its behaviour unchanged.
REFERENCE_VALUES = {"grow": 0, "focus_gate": 0.0, "token_temperature": 1.0}


def _check_inputs(src, mask_id, text_weights, user_mask, options, capture):
    if src.ndim != 3 or src.dtype != torch.long:
        raise ValueError(f"src must be int64 [B, H, W]; got {src.dtype} {tuple(src.shape)}")
    if not isinstance(mask_id, int) or mask_id < 0:
        raise ValueError(f"mask_id={mask_id!r}; expected an integer >= 0")
    extra = [k for k, v in REFERENCE_VALUES.items() if getattr(options, k) != v] if options.reference_compatible else []
    if extra:
        use = ", ".join(f"{k}={REFERENCE_VALUES[k]:g}" for k in extra)
        raise ValueError(f"{', '.join(extra)} not supported with reference_compatible=True (the reference sampler "
                         f"has no such knob); use {use}")  # fmt: skip
    parsed = [entries.parse(e) for e in options.layers or ()]
    if options.reference_compatible and any(p.needs_source for p in parsed):
        raise ValueError("source-image maps ('s<i>', 'rs<i>' layers) are not supported with reference_compatible=True "
                         "(the reference reads instruction -> target attention only)")  # fmt: skip
    if options.reference_compatible and any(p.kind != "" or p.heads is not None for p in parsed):
        raise ValueError(
            "row, head-selected and logit maps ('r<i>', ':h..', 'change', 'kl') are not supported with "
            "reference_compatible=True (the reference reads instruction -> target attention only)"
        )
    guided = options.guidance_scale > 1.0 if options.reference_compatible else options.guidance_scale != 1.0
    if any(p.kind == "kl" for p in parsed) and not guided:
        raise ValueError(
            "the 'kl' map compares the instruction's logits with the negative prompt's: it needs "
            "guidance (guidance_scale != 1); use 'change'"
        )
    if user_mask is not None:
        if options.reference_compatible:
            raise ValueError("user_mask is not supported with reference_compatible=True (the reference has no brush)")
        if user_mask.dtype != torch.bool or user_mask.shape != src.shape:
            raise ValueError(
                f"user_mask must be bool {tuple(src.shape)}; got {user_mask.dtype} {tuple(user_mask.shape)}"
            )
    if capture:  # (a downsampling model checks the grid's even sides itself)
        if text_weights is None or text_weights.ndim != 2 or text_weights.shape[0] != src.shape[0]:
            got = None if text_weights is None else tuple(text_weights.shape)
            raise ValueError(f"the map (lam > 0 or show_map) needs text_weights [B={src.shape[0]}, T]; got {got}")
        check_text_weights(text_weights)


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
    first step is below options.focus_gate holds nothing by the map (see focus). The yielded scores are the map as
    made, before both. user_mask bool [B, H, W] (True = editable) combines with the map per options.mask_mode (see
    combine_hold).

    Normal mode: held tokens are committed to src and never re-masked (so they never change), and exactly the
    scheduled number of open tokens is re-masked, the schedule running over the tokens not held (_edit_step).
    reference_compatible: every step is exactly `reference_step` (holds may be re-masked, as in the reference); it
    takes no brush. One generator, seeded from options.seed, on
    src's device serves all steps, as the reference pipeline's.
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
    generator = torch.Generator(device=src.device)
    if options.seed is None:
        generator.seed()  # fresh entropy, as the demo's unseeded run
    else:
        generator.manual_seed(options.seed)
    tokens = torch.full_like(src, mask_id)
    held = torch.zeros_like(src, dtype=torch.bool) if holding else None
    first_focus = gated = None
    for step in range(n):
        logits, maps = logits_fn(torch.cat([tokens, tokens]) if guided else tokens, n - 1 - step, attend)
        uncond, cond = logits.chunk(2) if guided else (None, logits)
        if guided:
            logits = uncond + options.guidance_scale * (cond - uncond)
            maps = {layer: m.chunk(2)[1] for layer, m in maps.items()}
        if attend and not maps:
            raise ValueError("logits_fn returned no attention maps although capture=True")
        if capture and logit_kinds and step == 0:
            logit_map = logit_maps(logit_kinds, cond, uncond, src)
        if ref:
            new, probs, hold, scores = _reference_update(
                logits, maps if capture else None, tokens, src, generator, weights, temps, step, options, mask_id
            )
        else:
            scores = held_by = None  # the map as made (shown, scored) and as held by (grown, gated)
            if capture:
                scores = mix_maps(maps, weights, (h, w), logit_map)
                if step == 0 and maps:
                    first_focus = focus(maps, weights)
                    if options.focus_gate > 0 and first_focus is not None:
                        gated = first_focus < options.focus_gate
                if holding:  # (show_map at λ = 0 without a brush: a map, no hold)
                    held_by = grow_map(scores, options.grow)
                    if gated is not None:  # a gated row holds nothing by the map (its brush still applies)
                        held_by = torch.where(gated[:, None, None], EDITABLE, held_by)
            if user_mask is not None:
                scores = combine_hold(scores, user_mask, options.mask_mode)
                held_by = scores if held_by is None else combine_hold(held_by, user_mask, options.mask_mode)
            share = cosine_schedule((torch.tensor([[step]]) + 1) / n) if step < n - 1 else None  # as mask_len
            step_args = (temps[step], share, held_by, options.lam, mask_id, options.token_temperature, held)
            new, probs, hold = _edit_step(logits, tokens, src, generator, *step_args)
        decided = new != mask_id
        revealed = (tokens == mask_id) & decided
        if hold is not None:
            held = held | (hold & decided)
        tokens = new
        yield StepRecord(step, n, tokens, revealed, probs, scores, held, first_focus, gated)


def sample_to_end(logits_fn: LogitsFn, src: Tensor, options: SamplerOptions, **kwargs) -> Tensor:
    """Run `sample` through and return the final tokens int64 [B, H, W]."""
    return deque(sample(logits_fn, src, options, **kwargs), maxlen=1)[0].tokens

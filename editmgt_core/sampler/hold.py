"""Region hold: which undecided tokens take the source's token instead of the model's, as pure functions.

The sampler makes a map in [0, 1] per image (high = the instruction is about this token). The hold compares a score
map with λ: a score below λ holds the token. The scores are the map grown (grow_map), with the rows whose
instruction focus is below the focus gate freed (gated_rows, free_rows), met with the brush (combine_hold);
hold_scores chains the three. Brush scores lie outside [0, 1] (EDITABLE 2, PROTECTED -1) so that no λ in [0, 1]
holds respectively frees them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model import entries
from .consolidate import attention_scores

MASK_MODES = ("union", "intersection", "replace")
EDITABLE, PROTECTED = 2.0, -1.0  # brush scores outside [0, 1]: no lam in [0, 1] holds / frees them


def focus(maps: dict[int | str, Tensor], text_weights: Tensor) -> Tensor | None:
    """Instruction focus [B] in [0, 1]: the share of the instruction's attention that lands on the image being
    edited rather than on the text (the captured maps' softmax runs over the text and target keys, see
    math.text_to_image_probs; mean over the captured blocks, heads and the weighted text rows). Only instruction ->
    target entries count (see entries): an instruction about the whole image attends to the source at least as much
    as one about an object, and the other directions do not share this softmax. None when no such entry was captured.

    An instruction that names something in the image ("the red circle") attends to it; one that changes the whole
    image ("make it sepia", "a blue background") attends less to the image, and holding by its map would clip the
    edit. With options.focus_gate, a row whose focus at the first step is below the gate is not held.
    """
    target = {k: m for k, m in maps.items() if entries.parse(k).kind == ""}
    return attention_scores(target, text_weights).sum(dim=-1) if target else None


def gated_rows(first_focus: Tensor | None, focus_gate: float) -> Tensor | None:
    """Rows that hold nothing by the map: bool [B], True where the first step's focus [B] is below focus_gate in
    [0, 1]. None (no row gated) when the gate is 0 or there is no focus."""
    if focus_gate > 0 and first_focus is not None:
        return first_focus < focus_gate
    return None


def grow_map(scores: Tensor, tokens: int) -> Tensor:
    """Every token takes the highest score within `tokens` tokens of it (a square max filter): the region above any
    λ grows by that many tokens on each side, so an edit that reaches past the object the map found (a larger shape,
    an object's rim) is not held. scores [B, H, W]; tokens 0 returns scores unchanged."""
    if tokens == 0:
        return scores
    k = 2 * tokens + 1
    return F.max_pool2d(scores[:, None], k, stride=1, padding=tokens)[:, 0]  # padding counts as -inf


def free_rows(scores: Tensor, gated: Tensor | None) -> Tensor:
    """scores [B, H, W] with every token of a gated row (gated bool [B], see gated_rows) set to EDITABLE, so that no
    λ in [0, 1] holds it; gated None returns scores unchanged."""
    if gated is None:
        return scores
    return torch.where(gated[:, None, None], EDITABLE, scores)


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


def hold_scores(
    scores: Tensor | None, *, grow: int, gated: Tensor | None, user_mask: Tensor | None, mode: str
) -> Tensor | None:
    """The scores the hold compares with λ: the map grown by `grow` tokens (grow_map), gated rows freed (free_rows),
    then met with the brush per `mode` (combine_hold).

    scores float [B, H, W] in [0, 1] (the map as made) or None (no map); gated bool [B] or None; user_mask bool
    [B, H, W] (True = editable) or None. Returns float [B, H, W], values in [0, 1] or EDITABLE / PROTECTED; None
    when there is neither a map nor a brush.
    """
    if scores is not None:
        scores = free_rows(grow_map(scores, grow), gated)
    return scores if user_mask is None else combine_hold(scores, user_mask, mode)


def hold_tokens(pred: Tensor, unknown: Tensor, scores: Tensor, lam: float, src: Tensor) -> tuple[Tensor, Tensor]:
    """Region-hold: undecided tokens whose score is below lam take the source token. Returns (pred, hold).

    hold = unknown & (scores < lam); lam = 1 is inclusive (scores <= 1) so that it holds every token of a [0, 1] map,
    including bicubic overshoot clamped to 1. All tensors share one shape.
    """
    below = scores <= lam if lam >= 1.0 else scores < lam
    hold = unknown & below
    return torch.where(hold, src, pred), hold


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

"""Pick a model's attention band: how well each block's instruction -> image attention points at the edit.

    python -m editmgt_core calibrate-layers --model assets/default-model --seed 555 --records 64

The published model uses global blocks 28-36; a model trained here needs its own band. On edit-world records of a
validation seed (use neither the training seed nor the evaluation seed), every block is captured at the first decoding
step (all target tokens masked, as the sampler's localization starts), the map is the mean over heads and the
instruction's tokens (`consolidate.attention_scores` with the edit's text weights), and it is compared with the edit
mask on the attention grid (a cell counts as inside when at least a quarter of it is):
- AUC: the chance that a cell inside the edit scores higher than one outside (0.5 = no information);
- top-k IoU: IoU of the k best cells with the edit's cells, k = the edit's size in cells.
Local categories only (global edits have no region). The band reported is the contiguous run of up to `--width`
blocks with the highest mean AUC; write it to the model's editmgt_studio.json as `attention_layers` if it helps.

Each block's instruction -> source-image attention ('s<i>', see math.text_to_source_probs; not in the reference) is
scored the same way. In a small model the instruction can find the object it names in the source image far better
than in the all-masked target (the bundled model: block 0's source map AUC 0.76 against 0.59 for the best target
block). The suggested layers add source entries to the band, best first, while each raises the AUC of the
consolidated map (the mean of the entries' maps, as the sampler forms it) by at least 0.005.

It also suggests a `focus_gate` (see sampling.focus): the instruction focus of local and of whole-image (background,
style) records at the first step, with the model's band and defaults, and the gate that best tells them apart
(Youden's J: the share of whole-image records it gates minus the share of local ones). Holding a whole-image edit by
its map clips the edit; gating a local one only gives up its hold.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import world
from .consolidate import attention_scores
from .editing import logits_fn_for, prepare, resolve_options
from .loading import Editor
from .sampling import focus, map_grid


@dataclass(frozen=True)
class LayerScore:
    layer: int | str  # a capture entry: block i (instruction -> target) or 's<i>' (instruction -> source image)
    auc: float
    topk_iou: float


def auc(scores: np.ndarray, inside: np.ndarray) -> float | None:
    """P(score inside > score outside) with ties counted half; None when either side is empty."""
    pos, neg = scores[inside], scores[~inside]
    if not len(pos) or not len(neg):
        return None
    diff = pos[:, None] - neg[None]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def topk_iou(scores: np.ndarray, inside: np.ndarray) -> float | None:
    k = int(inside.sum())
    if not k or k == inside.size:
        return None
    top = np.zeros(inside.size, dtype=bool)
    top[np.argsort(-scores, kind="stable")[:k]] = True
    return float((top & inside).sum() / (top | inside).sum())


def first_step_maps(editor: Editor, record: world.Record, options, layers: tuple[int | str, ...]):
    """(prepared edit, {entry: maps}) of the record's first decoding step (all target tokens masked)."""
    p = prepare(editor, Image.fromarray(record.src), record.instruction, options)
    network = logits_fn_for(editor, p, options.gamma, layers)
    return p, network(torch.full_like(p.src_tokens, editor.mask_id), options.steps - 1, True)[1]


@dataclass(frozen=True)
class RecordMaps:
    """Every capture entry's first-step map of the records, on the attention grid, with the edits' cells."""

    scores: dict[int | str, list[np.ndarray]]  # entry -> per record [I] (mean over heads and the instruction)
    inside: list[np.ndarray]  # per record bool [I]: cells at least a quarter inside the edit mask
    focus: list[float] = dataclasses.field(default_factory=list)  # per record, with the model's band (record_focus)


@torch.inference_mode()
def record_maps(editor: Editor, records: list[world.Record]) -> RecordMaps:
    """Capture every block, instruction -> target and (with a source stream) instruction -> source image."""
    options = resolve_options(editor, None)
    depth = editor.transformer.config.depth
    entries = (*range(depth), *(f"s{i}" for i in range(depth) if options.gamma > 0))
    scores, inside, focus_of = {e: [] for e in entries}, [], []
    for r in records:
        p, maps = first_step_maps(editor, r, options, entries)
        grid = map_grid(maps, *p.src_tokens.shape[1:])
        mask = torch.from_numpy(np.asarray(Image.fromarray(r.mask).resize(p.work_size), dtype=np.float32))
        inside.append((F.adaptive_avg_pool2d(mask[None, None], grid).flatten() >= 0.25).numpy())
        for e in entries:
            scores[e].append(attention_scores({e: maps[e]}, p.weights.to(maps[e].device))[0].cpu().numpy())
        band = {e: maps[e] for e in options.layers}  # (resolve_options kept only entries this capture has)
        focus_of.append(float(focus(band, p.weights.to(editor.device))[0]))
    return RecordMaps(scores, inside, focus_of)


def _mean_over_records(metric, maps: RecordMaps, entries) -> float:
    """Mean over the records of metric(map of `entries` averaged as consolidation does, the edit's cells)."""
    values = [metric(np.mean([maps.scores[e][n] for e in entries], axis=0), inside)
              for n, inside in enumerate(maps.inside)]  # fmt: skip
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def layer_scores(maps: RecordMaps) -> list[LayerScore]:
    """AUC and top-k IoU of every entry's map against the edit masks, averaged over the records."""
    return [LayerScore(e, _mean_over_records(auc, maps, [e]), _mean_over_records(topk_iou, maps, [e]))
            for e in maps.scores]  # fmt: skip


def best_band(scores: list[LayerScore], width: int) -> tuple[int, ...]:
    """The contiguous run of up to `width` blocks with the highest mean AUC (ties: the wider, then the later);
    instruction -> target entries only."""
    scores = [s for s in scores if isinstance(s.layer, int)]
    best, best_value = (), -1.0
    for w in range(1, width + 1):
        for start in range(len(scores) - w + 1):
            value = float(np.mean([s.auc for s in scores[start : start + w]]))
            if value > best_value + 1e-9 or (abs(value - best_value) <= 1e-9 and w >= len(best)):
                best, best_value = tuple(s.layer for s in scores[start : start + w]), value
    return best


def map_auc(maps: RecordMaps, entries) -> float:
    """AUC of the consolidated map of `entries` (their mean, as `consolidate.attention_scores`), over the records."""
    return _mean_over_records(auc, maps, list(entries))


def add_source_maps(maps: RecordMaps, band: tuple[int, ...], most: int, min_gain: float = 0.005):
    """Greedily add source-image entries ('s<i>', best AUC first) to the band while each raises the consolidated
    map's AUC by at least min_gain; at most `most`. Returns (entries, their map AUC)."""
    chosen, value = tuple(band), map_auc(maps, band)
    candidates = sorted((e for e in maps.scores if isinstance(e, str)), key=lambda e: -map_auc(maps, [e]))
    for e in candidates:
        if sum(isinstance(c, str) for c in chosen) >= most:
            break
        trial = map_auc(maps, (*chosen, e))
        if trial >= value + min_gain:
            chosen, value = (*chosen, e), trial
    return chosen, value


def local_records(seed: int, n: int, size: int, *, whole_image: bool = False) -> list[world.Record]:
    """The first n local-category records (recolour, remove, replace, resize, add) of a world seed; whole_image:
    the first n whole-image ones (background, style) instead."""
    out, i = [], 0
    while len(out) < n:
        r = world.record(seed, i, size)
        if (r.category in world.GLOBAL_CATEGORIES) == whole_image:
            out.append(r)
        i += 1
    return out


@torch.inference_mode()
def record_focus(editor: Editor, records: list[world.Record]) -> list[float]:
    """Each record's instruction focus at the first decoding step, with the model's defaults and band."""
    options = resolve_options(editor, None)
    out = []
    for r in records:
        p, maps = first_step_maps(editor, r, options, options.layers)
        out.append(float(focus(maps, p.weights.to(editor.device))[0]))
    return out


@dataclass(frozen=True)
class Gate:
    value: float  # focus_gate: hold only when focus >= value
    whole_image_gated: float  # share of whole-image records below it
    local_gated: float  # share of local records below it


def suggest_gate(local: list[float], whole_image: list[float]) -> Gate:
    """The gate with the highest Youden's J; ties: the lower gate (fewer local edits lose their hold). Candidates:
    each observed focus rounded up to the next multiple of 0.005 (that record and all below it gated)."""
    lo, wi = np.asarray(local), np.asarray(whole_image)
    best = Gate(0.0, 0.0, 0.0)
    for value in sorted({math.floor(v / 0.005) * 0.005 + 0.005 for v in (*local, *whole_image)}):
        gate = Gate(round(value, 3), float((wi < value).mean()), float((lo < value).mean()))
        if gate.whole_image_gated - gate.local_gated > best.whole_image_gated - best.local_gated + 1e-12:
            best = gate
    return best

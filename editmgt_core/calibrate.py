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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import world
from .consolidate import attention_scores
from .editing import logits_fn_for, prepare, resolve_options
from .loading import Editor
from .sampling import map_grid


@dataclass(frozen=True)
class LayerScore:
    layer: int
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


@torch.inference_mode()
def layer_scores(editor: Editor, records: list[world.Record]) -> list[LayerScore]:
    """AUC and top-k IoU of every block's map against the edit masks, averaged over the records."""
    model = editor.transformer
    options = resolve_options(editor, None)
    layers = tuple(range(model.config.depth))
    per_layer = {i: ([], []) for i in layers}
    for r in records:
        p = prepare(editor, Image.fromarray(r.src), r.instruction, options)
        network = logits_fn_for(editor, p, options.gamma, layers)
        _, maps = network(torch.full_like(p.src_tokens, editor.mask_id), options.steps - 1, True)  # first step
        grid = map_grid(maps, *p.src_tokens.shape[1:])
        mask = torch.from_numpy(np.asarray(Image.fromarray(r.mask).resize(p.work_size), dtype=np.float32))
        inside = (F.adaptive_avg_pool2d(mask[None, None], grid).flatten() >= 0.25).numpy()
        for i in layers:
            s = attention_scores({i: maps[i]}, p.weights.to(maps[i].device))[0].cpu().numpy()
            for bucket, value in zip(per_layer[i], (auc(s, inside), topk_iou(s, inside)), strict=True):
                if value is not None:
                    bucket.append(value)
    return [LayerScore(i, float(np.mean(a)) if a else float("nan"), float(np.mean(o)) if o else float("nan"))
            for i, (a, o) in per_layer.items()]  # fmt: skip


def best_band(scores: list[LayerScore], width: int) -> tuple[int, ...]:
    """The contiguous run of up to `width` blocks with the highest mean AUC (ties: the wider, then the later)."""
    best, best_value = (), -1.0
    for w in range(1, width + 1):
        for start in range(len(scores) - w + 1):
            value = float(np.mean([s.auc for s in scores[start : start + w]]))
            if value > best_value + 1e-9 or (abs(value - best_value) <= 1e-9 and w >= len(best)):
                best, best_value = tuple(s.layer for s in scores[start : start + w]), value
    return best


def local_records(seed: int, n: int, size: int) -> list[world.Record]:
    """The first n local-category records (recolour, remove, replace, resize, add) of a world seed."""
    out, i = [], 0
    while len(out) < n:
        r = world.record(seed, i, size)
        if r.category not in world.GLOBAL_CATEGORIES:
            out.append(r)
        i += 1
    return out

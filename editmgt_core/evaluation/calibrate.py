"""Pick a model's attention band: how well each block's instruction -> image attention points at the edit.

    python -m editmgt_core calibrate-layers --model editmgt_core/assets/default-model --seed 555 --records 64

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
scored the same way (a small model can find the object it names in the source far better than in the all-masked
target). The suggested layers add source entries to the band, best first, while each raises the AUC of the mean map
by at least 0.005. It also suggests a `focus_gate` (see hold.focus): the first-step instruction focus that best tells
local from whole-image (background, style) records apart (Youden's J); holding a whole-image edit by its map clips
the edit, gating a local one only gives up its hold.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from editmgt_core.edit.editing import default_options, logits_fn_for, prepare, resolve_options
from editmgt_core.evaluation import metrics
from editmgt_core.model import entries
from editmgt_core.model.loading import Editor
from editmgt_core.sampler.consolidate import attention_scores, logit_maps, map_grid
from editmgt_core.sampler.hold import focus
from editmgt_core.sampler.sampling import mix_maps
from editmgt_core.world import samples


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


def first_step_maps(editor: Editor, record: samples.Record, options, layers: tuple[int | str, ...]):
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
def record_maps(editor: Editor, records: list[samples.Record]) -> RecordMaps:
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


def local_records(seed: int, n: int, size: int, *, whole_image: bool = False) -> list[samples.Record]:
    """The first n local-category records (recolour, remove, replace, resize, add) of a world seed; whole_image:
    the first n whole-image ones (background, style) instead."""
    out, i = [], 0
    while len(out) < n:
        r = samples.record(seed, i, size)
        if (r.category in samples.GLOBAL_CATEGORIES) == whole_image:
            out.append(r)
        i += 1
    return out


@torch.inference_mode()
def record_focus(editor: Editor, records: list[samples.Record]) -> list[float]:
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


# ---------------------------------------------------------------------------------------------------- map recipes
# Which entries make the map (attention directions, heads, logit maps), their mix and the hold threshold: each
# candidate family picks its entries and threshold on one half of the records and is scored on the other half
# (both ways, averaged), so the table reports what a recipe does on records it was not chosen on.

THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # candidate map thresholds


@dataclass(frozen=True)
class RecipeRecords:
    """First-step signals of local records, everything a recipe's map is made of."""

    heads: dict[tuple[str, int], list[np.ndarray]]  # (kind, block) -> per record [heads, I], instruction-weighted
    logits: dict[str, list[torch.Tensor]]  # 'change' / 'kl' -> per record [1, H, W] (consolidate.logit_maps)
    masks: list[np.ndarray]  # per record bool edit mask at the image's size
    tokens: tuple[int, int]  # token grid (H, W)
    categories: list[str]


@torch.inference_mode()
def recipe_records(editor: Editor, records: list[samples.Record]) -> RecipeRecords:
    """Capture every block in every direction (per head) and the logit maps at the first decoding step."""
    options = resolve_options(editor, None)
    depth = editor.transformer.config.depth
    kinds = ("", "r") + (("s", "rs") if options.gamma > 0 else ())
    layers = tuple(i if k == "" else f"{k}{i}" for k in kinds for i in range(depth))
    heads, logits, masks, tokens = {}, {"change": [], "kl": []}, [], None
    for r in records:
        p = prepare(editor, Image.fromarray(r.src), r.instruction, options)
        network = logits_fn_for(editor, p, options.gamma, layers)
        masked = torch.full_like(p.src_tokens, editor.mask_id)
        out, maps = network(torch.cat([masked, masked]), options.steps - 1, True)
        uncond, cond = out.chunk(2)
        w = p.weights.to(editor.device).float()[:, None, :, None]
        for e in layers:
            parsed = entries.parse(e)
            per_head = (maps[e][1:].float() * w).sum(dim=2) / w.sum()  # (1, heads, I)
            heads.setdefault((parsed.kind, parsed.block), []).append(per_head[0].cpu().numpy())
        for kind in logits:
            logits[kind].append(logit_maps([kind], cond, uncond, p.src_tokens).cpu())
        masks.append(np.asarray(r.mask, dtype=bool))
        tokens = tuple(p.src_tokens.shape[1:])
    return RecipeRecords(heads, logits, masks, tokens, [r.category for r in records])


def entry_vector(data: RecipeRecords, entry, n: int) -> np.ndarray:
    """Record n's instruction-weighted map [I] of one attention entry (mean over its heads)."""
    e = entries.parse(entry)
    per_head = data.heads[(e.kind, e.block)][n]
    return per_head[list(e.heads)].mean(axis=0) if e.heads is not None else per_head.mean(axis=0)


def recipe_map(data: RecipeRecords, recipe: tuple, n: int) -> np.ndarray:
    """Record n's map [H, W] as the sampler makes it from `recipe` (sampling.mix_maps)."""
    attention = [e for e in recipe if not entries.parse(e).is_logit]
    maps = {e: torch.from_numpy(entry_vector(data, e, n))[None, None, None].float() for e in attention}
    kinds = [e for e in recipe if entries.parse(e).is_logit]
    logit = torch.stack([data.logits[k][n] for k in kinds]).mean(dim=0) if kinds else None  # blur is linear
    return mix_maps(maps, torch.ones(1, 1), data.tokens, logit)[0].numpy()


def recipe_iou(data: RecipeRecords, recipe: tuple, records) -> np.ndarray:
    """[records, thresholds] IoU (metrics.map_iou, as world-eval scores the map) of the recipe's map."""
    return np.array([[metrics.map_iou(recipe_map(data, recipe, n), data.masks[n], t) or 0.0 for t in THRESHOLDS]
                     for n in records])  # fmt: skip


def recipe_auc(data: RecipeRecords, recipe: tuple, records) -> float:
    """Mean AUC of the recipe's map on the token grid (a token is inside when at least a quarter of it is)."""
    values = []
    for n in records:
        m = torch.from_numpy(data.masks[n].astype(np.float32))[None, None]
        inside = (F.adaptive_avg_pool2d(m, data.tokens).flatten() >= 0.25).numpy()
        v = auc(recipe_map(data, recipe, n).ravel(), inside)
        if v is not None:
            values.append(v)
    return float(np.mean(values)) if values else float("nan")


def _rank(data: RecipeRecords, candidates, records) -> list:
    return sorted(candidates, key=lambda e: -recipe_auc(data, (e,), records))


def recipe_candidates(data: RecipeRecords, records, current: tuple, guided: bool, most: int = 3) -> dict[str, tuple]:
    """Candidate recipes chosen on `records` only: {family: entries}."""
    heads = next(iter(data.heads.values()))[0].shape[0]
    text_heads = [f"{k}{b}:h{h}" if k else f"{b}:h{h}" for (k, b) in data.heads if k in ("", "s") for h in range(heads)]
    rows = [f"{k}{b}" for (k, b) in data.heads if k in ("r", "rs")]
    best_rows, value = (), -1.0
    for e in _rank(data, rows, records)[: 2 * most]:
        trial = (*best_rows, e)
        score = recipe_auc(data, trial, records)
        if score >= value + 0.005 and len(best_rows) < most:
            best_rows, value = trial, score
    out = {
        "the model's map now": current,
        "best instruction -> image head": tuple(_rank(data, text_heads, records)[:1]),
        "image rows -> instruction": best_rows,
        "predicted change": ("change",),
    }
    if guided:
        out["instruction vs negative (KL)"] = ("kl",)
    out["predicted change + image rows"] = ("change", *best_rows)
    return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class RecipeScore:
    family: str
    recipe: tuple  # chosen on all records
    threshold: float  # the map threshold with the best IoU, chosen on all records
    auc: float
    iou: float  # cross-fitted: chosen on one half, scored on the other (both ways)
    per_category: dict[str, float]  # cross-fitted IoU per category


def score_recipes(data: RecipeRecords, current: tuple, guided: bool) -> list[RecipeScore]:
    """Every candidate family, cross-fitted over the two halves (even / odd records), best IoU first."""
    n = len(data.masks)
    halves = [list(range(0, n, 2)), list(range(1, n, 2))]
    everything = list(range(n))
    chosen = recipe_candidates(data, everything, current, guided)
    held_out: dict[str, dict[int, float]] = {family: {} for family in chosen}
    for fit, test in ((halves[0], halves[1]), (halves[1], halves[0])):
        for family, recipe in recipe_candidates(data, fit, current, guided).items():
            if family not in held_out:
                continue
            t = int(recipe_iou(data, recipe, fit).mean(axis=0).argmax())
            for k, v in zip(test, recipe_iou(data, recipe, test)[:, t], strict=True):
                held_out[family][k] = float(v)
    out = []
    for family, recipe in chosen.items():
        scores = held_out[family]
        if len(scores) < n:
            continue
        threshold = THRESHOLDS[int(recipe_iou(data, recipe, everything).mean(axis=0).argmax())]
        per = {c: float(np.mean([scores[k] for k in everything if data.categories[k] == c]))
               for c in sorted(set(data.categories))}  # fmt: skip
        iou = float(np.mean(list(scores.values())))
        out.append(RecipeScore(family, recipe, threshold, recipe_auc(data, recipe, everything), iou, per))
    return sorted(out, key=lambda s: -s.iou)


def write_recipe(root, best: RecipeScore, gate: float):
    """Write a recipe to a model folder's settings: attention_layers and defaults.focus_gate. The
    block indices the model read before stay its reference band (reference_layers) when the recipe has none."""
    from pathlib import Path

    from editmgt_core.edit.files import write_json_atomic
    from editmgt_core.model.loading import SETTINGS_NAME

    path = Path(root) / SETTINGS_NAME
    d = json.loads(path.read_text()) if path.is_file() else {}
    before = [e for e in d.get("attention_layers", []) if isinstance(e, int)]
    if not any(isinstance(e, int) for e in best.recipe) and before and "reference_layers" not in d:
        d["reference_layers"] = before
    d["attention_layers"] = list(best.recipe)
    d.setdefault("defaults", {})["focus_gate"] = gate
    write_json_atomic(path, d)
    return path


# ---------------------------------------------------------------------------------------------------- report


def report(editor: Editor, seed: int, n: int, size: int, width: int, write: bool = False) -> None:
    """`editmgt calibrate-layers`: print each entry's scores, the map recipes, the best band and the suggested gate
    for `n` local records of world seed `seed`; write: store the suggested recipe and gate in the model folder."""
    maps = record_maps(editor, local_records(seed, n, size))
    scores = layer_scores(maps)
    print("entry  AUC    top-k IoU   (i: instruction -> target, s<i>: instruction -> source image)")
    for s in scores:
        print(f"{s.layer:>5}  {s.auc:.3f}  {s.topk_iou:.3f}")
    best = _report_recipes(editor, local_records(seed, n, size))
    band = best_band(scores, width)
    print(f"best band (mean AUC): {list(band)}, map AUC {map_auc(maps, band):.3f}")
    print(f'suggested layers: "attention_layers": {json.dumps(list(best.recipe))} in editmgt_studio.json '
          f"(cross-fitted IoU {best.iou:.3f} at threshold {best.threshold:g}, {best.family})")  # fmt: skip
    current = editor.settings.attention_layers
    print(f"the model's layers now: {json.dumps(list(current))}, "
          f"map AUC {map_auc(maps, [e for e in current if e in maps.scores]):.3f}")  # fmt: skip
    local = maps.focus  # the first-step forward of the local records ran once, in record_maps
    whole = record_focus(editor, local_records(seed, n, size, whole_image=True))
    gate = suggest_gate(local, whole)
    print(f"instruction focus with the model's band {json.dumps(list(current))}: local edits median "
          f"{np.median(local):.3f}, whole-image edits median {np.median(whole):.3f}")  # fmt: skip
    print(f'suggested gate: "focus_gate": {gate.value:g} in the defaults of editmgt_studio.json (gates '
          f"{gate.whole_image_gated:.0%} of whole-image edits and {gate.local_gated:.0%} of local ones)")  # fmt: skip
    if write:
        gated = any(entries.parse(e).kind == "" for e in best.recipe)  # the focus reads instruction -> target maps
        path = write_recipe(editor.root, best, gate.value if gated else 0.0)
        print(f"wrote the suggested layers and gate to {path} (choose λ and grow with tune-hold)", file=sys.stderr)


def _report_recipes(editor: Editor, records: list[samples.Record]) -> RecipeScore:
    """Print the map recipes, best first, and return the best."""
    guided = default_options(editor).guidance_scale != 1.0
    recipes = score_recipes(recipe_records(editor, records), editor.settings.attention_layers, guided)
    print("map recipes at the first step (entries and map threshold chosen on one half of the records, IoU scored on "
          "the other):")  # fmt: skip
    print(f"{'recipe':<34} {'AUC':>6} {'IoU':>6} {'thr':>5}  entries / IoU per category")
    for r in recipes:
        per = ", ".join(f"{c} {v:.2f}" for c, v in r.per_category.items())
        print(f"{r.family:<34} {r.auc:6.3f} {r.iou:6.3f} {r.threshold:5.2f}  {json.dumps(list(r.recipe))} / {per}")
    return recipes[0]

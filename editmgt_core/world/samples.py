"""Procedural edit world: (source image, instruction, target image, edit mask) records for training EditMGT offline.

A scene is a background (flat, stripes, checks or gradient) plus 1-4 coloured shapes drawn in order (later ones occlude
earlier ones); `drawing.py` draws it, anti-aliased. An edit maps a source scene to a target scene; both are drawn
with the same code, so pixels away from the edit are identical.

Edit mask: for local edits (recolor, remove, add, replace, resize) it is the set of pixels where source and target
differ, dilated by max(1, size // 64) pixels; for global edits (background, style) it is the whole image.

Records are deterministic given (seed, index): `record(seed, i)` uses `np.random.default_rng([seed, i])`, so any record
can be regenerated on the fly. `dataset.py` writes them as files.
"""

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from editmgt_core.world import paraphrase, sentences
from editmgt_core.world.drawing import (
    BG_COLORS,
    BG_KINDS,
    COLORS,
    SHAPES,
    STYLES,
    Background,
    Obj,
    Scene,
    render,
    visible_fractions,
)

CATEGORIES = ("recolor", "remove", "add", "replace", "background", "resize", "style")
GLOBAL_CATEGORIES = ("background", "style")
EVALUATION_SEED = 2027  # picked once for reported numbers: only read, never trained on or used to make a choice
DEVELOPMENT_SEEDS = (555, 777)  # seeds choices are measured on (layers, gate, temperature, phrasings)
MIN_VISIBLE = 0.6  # fraction of each object's area left uncovered when a scene is built
MIN_VISIBLE_AFTER_EDIT = 0.45


@dataclass(frozen=True)
class Record:
    src: np.ndarray  # (H, W, 3) uint8 source image
    tgt: np.ndarray  # (H, W, 3) uint8 target image
    mask: np.ndarray  # (H, W) bool edit mask (see module docstring)
    instruction: str
    category: str  # one of CATEGORIES
    edit: dict  # JSON-able structured edit: category, target, ref, new, old, template
    src_scene: Scene
    tgt_scene: Scene
    # ambiguous slice records (hard_cases): (target, mask) of every object the instruction fits, the first being
    # (tgt, mask); empty for every other record
    candidates: tuple[tuple[np.ndarray, np.ndarray], ...] = ()


# ---------------------------------------------------------------------------------------------------- scenes


def _pick(rng: np.random.Generator, options, exclude=()) -> str:
    options = [o for o in options if o not in exclude]
    return options[int(rng.integers(len(options)))]


BG_PERIOD_EIGHTHS = [1, 1.5, 2, 3]  # stripe and check periods, eighths of the image side
BG_PHASES = 4  # pattern offsets: 0, 1/4, 1/2, 3/4 of a period


def random_background(rng: np.random.Generator, exclude: Background | None = None) -> Background:
    """A random background different from `exclude` (in kind or colours)."""
    while True:
        kind = _pick(rng, BG_KINDS)
        c0 = _pick(rng, BG_COLORS)
        c1 = _pick(rng, BG_COLORS, exclude=(c0,))
        vertical, period, phase = bool(rng.integers(2)), float(rng.choice(BG_PERIOD_EIGHTHS) / 8), rng.integers(4) / 4
        bg = Background(kind, (c0, c1 if kind != "flat" else c0), vertical, period, float(phase))
        if exclude is None or (bg.kind, bg.colors) != (exclude.kind, exclude.colors):
            return bg


def random_object(rng: np.random.Generator, others: tuple[Obj, ...] = (), r_range=(0.08, 0.17)) -> Obj:
    """A random object inside the image; with probability 0.35 it copies the colour or shape of an existing one."""
    r = float(rng.uniform(*r_range))
    shape, color = _pick(rng, SHAPES), _pick(rng, COLORS)
    if others and rng.random() < 0.35:
        twin = others[int(rng.integers(len(others)))]
        shape, color = (twin.shape, color) if rng.random() < 0.5 else (shape, twin.color)
    x, y = rng.uniform(r + 0.01, 0.99 - r, size=2)
    return Obj(shape, color, float(x), float(y), r)


def random_scene(rng: np.random.Generator, n_objects: int | None = None) -> Scene:
    """A background plus `n_objects` (default 1-4) objects, each at least MIN_VISIBLE visible."""
    n = int(rng.integers(1, 5)) if n_objects is None else n_objects
    objects: tuple[Obj, ...] = ()
    for _ in range(50 * n):
        if len(objects) == n:
            break
        cand = (*objects, random_object(rng, objects))
        if min(visible_fractions(cand)) >= MIN_VISIBLE:
            objects = cand
    return Scene(random_background(rng), objects)


def obj_dict(obj: Obj) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in dataclasses.asdict(obj).items()}


def bg_dict(bg: Background) -> dict:
    return {"kind": bg.kind, "colors": list(bg.colors), "vertical": bg.vertical, "period": bg.period, "phase": bg.phase}


def scene_dict(scene: Scene) -> dict:
    """JSON-able, exact (scene_from_dict rebuilds the same scene)."""
    return {
        "background": bg_dict(scene.background),
        "objects": [dataclasses.asdict(o) for o in scene.objects],
        "style": scene.style,
    }


def scene_from_dict(d: dict) -> Scene:
    bg = d["background"]
    return Scene(
        Background(bg["kind"], tuple(bg["colors"]), bg["vertical"], bg["period"], bg["phase"]),
        tuple(Obj(**o) for o in d["objects"]),
        d.get("style"),
    )


def equivalent_backgrounds(bg: Background) -> list[Background]:
    """Every background that a background edit's instruction fits as well as `bg` (itself first). The instruction
    names the kind and the colours (sentences.background_phrase: 'pink and gray stripes', 'a beige to teal
    gradient'), not the orientation, period or phase the generator drew, so any of those is an equally right edit."""
    if bg.kind == "flat":
        return [bg]
    if bg.kind == "gradient":
        return [bg, dataclasses.replace(bg, vertical=not bg.vertical)]
    verticals = (True, False) if bg.kind == "stripes" else (bg.vertical,)  # checks look the same either way
    others = [
        Background(bg.kind, bg.colors, v, p / 8, k / BG_PHASES)
        for v in verticals
        for p in BG_PERIOD_EIGHTHS
        for k in range(BG_PHASES)
    ]
    return [bg, *[o for o in others if o != bg]]


def equivalent_targets(scene: Scene, size: int) -> list[np.ndarray]:
    """The target of a background edit under every equivalent background but its own (uint8 RGB renders)."""
    others = equivalent_backgrounds(scene.background)[1:]
    return [render(dataclasses.replace(scene, background=b), size) for b in others]


# ---------------------------------------------------------------------------------------------------- edits
# Each edit maps (rng, scene) to (target scene, edit dict, template key, template slots), or to None when the scene
# does not admit it (the caller then draws a new scene).


def _target(rng: np.random.Generator, scene: Scene):
    """A random object index with an unambiguous description, or None."""
    if not scene.objects:
        return None
    i = int(rng.integers(len(scene.objects)))
    ref = sentences.refer(rng, scene.objects, i)
    return None if ref is None else (i, ref)


def _swap(scene: Scene, i: int, obj: Obj | None) -> Scene:
    objs = list(scene.objects)
    objs[i : i + 1] = [] if obj is None else [obj]
    return dataclasses.replace(scene, objects=tuple(objs))


def _edit(category: str, new: dict | None, obj: Obj | None = None, ref=None, **extra) -> dict:
    """Structured edit: category, target object attributes (None for add/global), its description, the new value."""
    target = None if obj is None else obj_dict(obj)
    ref_text, ref_kind = (None, None) if ref is None else ref
    return {"category": category, "target": target, "ref": ref_text, "ref_kind": ref_kind, "new": new, **extra}


def edit_recolor(rng, scene):
    if (t := _target(rng, scene)) is None:
        return None
    i, ref = t
    color = _pick(rng, COLORS, exclude=(scene.objects[i].color,))
    tgt = _swap(scene, i, dataclasses.replace(scene.objects[i], color=color))
    return tgt, _edit("recolor", {"color": color}, scene.objects[i], ref), "recolor", {"ref": ref[0], "color": color}


def edit_remove(rng, scene):
    if (t := _target(rng, scene)) is None:
        return None
    i, ref = t
    return _swap(scene, i, None), _edit("remove", None, scene.objects[i], ref), "remove", {"ref": ref[0]}


# An added object has one size and sits at the centre of its position's cell: the instruction names its colour, shape
# and cell, so nothing it leaves unsaid decides the target (a size and spot drawn at random would, and the success
# test compares pixels with the target).
ADD_RADIUS = 0.11


def edit_add(rng, scene):
    if len(scene.objects) >= 4:
        return None
    pos = _pick(rng, sentences.POSITIONS)
    col, row, phrases = sentences.POSITIONS[pos]
    obj = random_object(rng, scene.objects, r_range=(ADD_RADIUS, ADD_RADIUS))
    obj = dataclasses.replace(obj, x=(col + 0.5) / 3, y=(row + 0.5) / 3)
    tgt = dataclasses.replace(scene, objects=(*scene.objects, obj))
    if min(visible_fractions(tgt.objects)) < MIN_VISIBLE_AFTER_EDIT:
        return None
    phrase = phrases[int(rng.integers(len(phrases)))]
    slots = {"a": sentences.article(obj.color), "color": obj.color, "shape": obj.shape, "pos": phrase}
    return tgt, _edit("add", {**obj_dict(obj), "position": pos}), "add", slots


def edit_replace(rng, scene):
    if (t := _target(rng, scene)) is None:
        return None
    i, ref = t
    shape = _pick(rng, SHAPES, exclude=(scene.objects[i].shape,))
    tgt = _swap(scene, i, dataclasses.replace(scene.objects[i], shape=shape))
    if visible_fractions(tgt.objects)[i] < MIN_VISIBLE_AFTER_EDIT:
        return None
    slots = {"ref": ref[0], "a": sentences.article(shape), "shape": shape}
    return tgt, _edit("replace", {"shape": shape}, scene.objects[i], ref), "replace", slots


def edit_resize(rng, scene):
    if (t := _target(rng, scene)) is None:
        return None
    i, ref = t
    obj = scene.objects[i]
    direction = "bigger" if rng.random() < 0.5 else "smaller"
    r = obj.r * (rng.uniform(1.35, 1.6) if direction == "bigger" else rng.uniform(0.55, 0.7))
    if r > min(obj.x, obj.y, 1 - obj.x, 1 - obj.y) - 0.01 or r < 0.045:
        return None  # would leave the image or vanish
    tgt = _swap(scene, i, dataclasses.replace(obj, r=float(r)))
    if min(visible_fractions(tgt.objects)) < MIN_VISIBLE_AFTER_EDIT:
        return None
    edit = _edit("resize", {"r": round(float(r), 4), "direction": direction}, obj, ref)
    return tgt, edit, f"resize:{direction}", {"ref": ref[0]}


def edit_background(rng, scene):
    bg = random_background(rng, exclude=scene.background)
    edit = _edit("background", {"background": bg_dict(bg)}, old={"background": bg_dict(scene.background)})
    phrase = sentences.background_phrase(bg.kind, bg.colors)
    return dataclasses.replace(scene, background=bg), edit, "background", {"bg": phrase}


def edit_style(rng, scene):
    style = _pick(rng, STYLES)
    return dataclasses.replace(scene, style=style), _edit("style", {"style": style}), f"style:{style}", {}


EDITS = {
    "recolor": edit_recolor,
    "remove": edit_remove,
    "add": edit_add,
    "replace": edit_replace,
    "background": edit_background,
    "resize": edit_resize,
    "style": edit_style,
}


def edit_mask(src: np.ndarray, tgt: np.ndarray, category: str) -> np.ndarray:
    """(H, W) bool: whole image for global categories, else changed pixels dilated by max(1, H // 64) pixels."""
    if category in GLOBAL_CATEGORIES:
        return np.ones(src.shape[:2], bool)
    diff = (np.abs(src.astype(np.int16) - tgt.astype(np.int16)).max(-1) > 0).astype(np.uint8)
    k = 2 * max(1, src.shape[0] // 64) + 1
    return cv2.dilate(diff, np.ones((k, k), np.uint8)).astype(bool)


def make_record(rng: np.random.Generator, size: int = 64, category: str | None = None) -> Record:
    """One random edit record; `category` defaults to a uniform draw from CATEGORIES."""
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    category = _pick(rng, CATEGORIES) if category is None else category
    if category not in EDITS:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")
    min_changed = max(4, int(0.004 * size * size))
    while True:
        scene = random_scene(rng)
        out = EDITS[category](rng, scene)
        if out is None:
            continue
        tgt_scene, edit, key, slots = out
        src, tgt = render(scene, size), render(tgt_scene, size)
        changed = int((src != tgt).any(-1).sum())
        if changed < min_changed:
            continue  # e.g. an edit hidden behind another object
        instruction, template = sentences.fill(rng, key, **slots)
        edit = {**edit, "template": template}
        return Record(src, tgt, edit_mask(src, tgt, category), instruction, category, edit, scene, tgt_scene)


def record(seed: int, index: int, size: int = 64, category: str | None = None, phrasing: str | None = None) -> Record:
    """Record number `index` of the stream for `seed` (random access, deterministic).

    `phrasing` (opt-in; see paraphrase.MODES and FAMILIES) rewords the instruction of the same record: images,
    edit and reference stay as they are, the wording is drawn from default_rng([seed, index, 2]). None: the world's
    own templates, exactly as records have always been."""
    rec = make_record(np.random.default_rng([seed, index]), size, category)
    if phrasing is None:
        return rec
    return paraphrase.rephrase(rec, phrasing, np.random.default_rng([seed, index, 2]))


def records(seed: int, n: int, size: int = 64, phrasing: str | None = None) -> Iterator[Record]:
    """The first `n` records of the stream for `seed`."""
    return (record(seed, i, size, phrasing=phrasing) for i in range(n))

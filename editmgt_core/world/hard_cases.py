"""Robustness slices of the edit world, generated on demand: small targets, targets touching or overlapping another
object, crowded scenes, and ambiguous instructions whose words fit 2-3 objects.

Slice records are local edits (SLICE_CATEGORIES) drawn from their own stream, `default_rng([seed, index, 3])`, so
they never change the world's default records. Small: every object's radius is 0.05-0.075 of the side (the world's
usual range is 0.08-0.17). Overlap: the edited object's outline touches or crosses another object's. Crowded: 5-6
objects. Ambiguous: the reference ("it", "the circle", "the red one") fits every one of 2-3 candidates; the record's
target edits the first candidate, and `Record.candidates` holds (target, mask) for each candidate, so an evaluation
can tell whether an edit changed exactly one candidate, several, or something else.

    rec = slice_record(seed=2027, index=0, name="overlap")
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from editmgt_core.world import drawing, paraphrase, samples, sentences
from editmgt_core.world.drawing import CHECK_SIZE, Obj, Scene
from editmgt_core.world.samples import EDITS, MIN_VISIBLE, MIN_VISIBLE_AFTER_EDIT, Record

SLICES = ("small", "overlap", "crowded", "ambiguous")
SLICE_CATEGORIES = ("recolor", "remove", "replace", "resize")
SMALL_RADIUS = (0.05, 0.075)
CROWDED_RADIUS = (0.07, 0.13)
MAX_TRIES = 2000  # scenes tried per record before giving up (a clear error rather than a hang)


def _scene(rng: np.random.Generator, n: int, r_range, first: tuple[Obj, ...] = (), min_visible=MIN_VISIBLE):
    """A random background plus `first` and objects up to `n`, each at least `min_visible` visible; None if the
    objects did not fit."""
    objects = first
    for _ in range(50 * n):
        if len(objects) == n:
            break
        cand = (*objects, samples.random_object(rng, objects, r_range=r_range))
        if min(drawing.visible_fractions(cand)) >= min_visible:
            objects = cand
    if len(objects) < n or min(drawing.visible_fractions(objects)) < min_visible:
        return None
    return Scene(samples.random_background(rng), objects)


def _touching_pair(rng: np.random.Generator) -> tuple[Obj, Obj] | None:
    a = samples.random_object(rng)
    r = float(rng.uniform(0.08, 0.17))
    angle, d = rng.uniform(0, 2 * np.pi), (a.r + r) * rng.uniform(0.7, 1.0)
    x, y = a.x + d * np.cos(angle), a.y + d * np.sin(angle)
    if not (r + 0.01 <= x <= 0.99 - r and r + 0.01 <= y <= 0.99 - r):
        return None
    b = samples.random_object(rng, (a,), r_range=(r, r))
    return a, dataclasses.replace(b, x=float(x), y=float(y))


def touches(objects: tuple[Obj, ...], i: int) -> bool:
    """Whether object i's outline, grown by one pixel at CHECK_SIZE, meets another object."""
    cover = lambda obj: drawing.coverage(obj, CHECK_SIZE) > 0
    own = cv2.dilate(cover(objects[i]).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return any((own & cover(o)).any() for j, o in enumerate(objects) if j != i)


def slice_scene(rng: np.random.Generator, name: str) -> Scene | None:
    if name == "small":
        return _scene(rng, int(rng.integers(1, 5)), SMALL_RADIUS)
    if name == "crowded":
        return _scene(rng, int(rng.integers(5, 7)), CROWDED_RADIUS)
    if name == "overlap":
        pair = _touching_pair(rng)
        if pair is None:
            return None
        return _scene(rng, int(rng.integers(2, 5)), (0.08, 0.17), pair, MIN_VISIBLE_AFTER_EDIT)
    raise ValueError(f"unknown slice {name!r}; expected one of {SLICES}")


def _index(scene: Scene, edit: dict) -> int:
    return [samples.obj_dict(o) for o in scene.objects].index(edit["target"])


def _changed_enough(src: np.ndarray, tgt: np.ndarray) -> bool:
    size = src.shape[0]
    return int((src != tgt).any(-1).sum()) >= max(4, int(0.004 * size * size))


def constrained_record(rng: np.random.Generator, size: int, category: str, name: str) -> Record:
    """A record of `category` whose scene comes from slice `name` (small, overlap or crowded)."""
    for _ in range(MAX_TRIES):
        scene = slice_scene(rng, name)
        if scene is None or (out := EDITS[category](rng, scene)) is None:
            continue
        tgt_scene, edit, key, slots = out
        if name == "overlap" and not touches(scene.objects, _index(scene, edit)):
            continue
        src, tgt = drawing.render(scene, size), drawing.render(tgt_scene, size)
        if not _changed_enough(src, tgt):
            continue
        instruction, template = sentences.fill(rng, key, **slots)
        edit = {**edit, "template": template, "slice": name}
        return Record(src, tgt, samples.edit_mask(src, tgt, category), instruction, category, edit, scene, tgt_scene)
    raise RuntimeError(f"no {name} {category} record after {MAX_TRIES} scenes")


# ---------------------------------------------------------------------------------------------------- ambiguous


def _ambiguous_scene(rng: np.random.Generator, k: int, word: str) -> tuple[Scene, tuple[int, ...]] | None:
    """A scene with k candidates sharing `word` ("it": every object; "shape"/"color": a shared shape/colour) and,
    for a shared word, maybe one distractor that shares neither; returns (scene, candidate indices)."""
    shared = samples._pick(rng, drawing.SHAPES if word == "shape" else drawing.COLORS)
    objects: tuple[Obj, ...] = ()
    for _ in range(50 * k):
        obj = samples.random_object(rng)
        if word == "shape":
            obj = dataclasses.replace(obj, shape=shared)
        elif word == "color":
            obj = dataclasses.replace(obj, color=shared)
        if min(drawing.visible_fractions((*objects, obj))) >= MIN_VISIBLE:
            objects = (*objects, obj)
        if len(objects) == k:
            break
    if len(objects) < k:
        return None
    if word != "it" and rng.random() < 0.5:
        other = samples.random_object(rng)
        distinct = other.shape != shared and other.color != shared
        if distinct and min(drawing.visible_fractions((*objects, other))) >= MIN_VISIBLE:
            objects = (*objects, other)
    order = rng.permutation(len(objects))
    objects = tuple(objects[j] for j in order)
    cands = tuple(sorted(int(np.flatnonzero(order == j)[0]) for j in range(k)))
    return Scene(samples.random_background(rng), objects), cands


def _ambiguous_edit(rng: np.random.Generator, category: str, scene: Scene, cands):
    """(new value dict, template key, slots, function obj -> edited obj or None) applied to any candidate."""
    objs = [scene.objects[i] for i in cands]
    if category == "recolor":
        color = samples._pick(rng, drawing.COLORS, exclude={o.color for o in objs})
        return {"color": color}, "recolor", {"color": color}, lambda o: dataclasses.replace(o, color=color)
    if category == "remove":
        return None, "remove", {}, lambda o: None
    if category == "replace":
        shape = samples._pick(rng, drawing.SHAPES, exclude={o.shape for o in objs})
        slots = {"a": sentences.article(shape), "shape": shape}
        return {"shape": shape}, "replace", slots, lambda o: dataclasses.replace(o, shape=shape)
    direction = "bigger" if rng.random() < 0.5 else "smaller"
    factor = float(rng.uniform(1.35, 1.6) if direction == "bigger" else rng.uniform(0.55, 0.7))

    def resize(o):
        r = o.r * factor
        inside = r <= min(o.x, o.y, 1 - o.x, 1 - o.y) - 0.01 and r >= 0.045
        return dataclasses.replace(o, r=r) if inside else False

    return {"direction": direction, "factor": round(factor, 4)}, f"resize:{direction}", {}, resize


def ambiguous_record(rng: np.random.Generator, size: int, category: str) -> Record:
    """A record whose instruction fits 2-3 objects equally; `candidates` holds each candidate's (target, mask)."""
    for _ in range(MAX_TRIES):
        word = samples._pick(rng, ("it", "shape", "color"))
        built = _ambiguous_scene(rng, int(rng.integers(2, 4)), word)
        if built is None:
            continue
        scene, cands = built
        new, key, slots, apply = _ambiguous_edit(rng, category, scene, cands)
        src, outs = drawing.render(scene, size), []
        for i in cands:
            edited = apply(scene.objects[i])
            if edited is False:
                break
            tgt_scene = samples._swap(scene, i, edited)
            visible = drawing.visible_fractions(tgt_scene.objects) if tgt_scene.objects else [1.0]
            if min(visible) < MIN_VISIBLE_AFTER_EDIT:
                break
            tgt = drawing.render(tgt_scene, size)
            if not _changed_enough(src, tgt):
                break
            outs.append((tgt_scene, tgt, samples.edit_mask(src, tgt, category)))
        if len(outs) < len(cands):
            continue
        first = scene.objects[cands[0]]
        ref = {"it": "it", "shape": f"the {first.shape}", "color": f"the {first.color} one"}[word]
        instruction, template = sentences.fill(rng, key, ref=ref, **slots)
        candidates = [samples.obj_dict(scene.objects[i]) for i in cands]
        edit = samples._edit(
            category,
            new,
            first,
            (ref, "ambiguous"),
            template=template,
            slice="ambiguous",
            candidates=candidates,
            ambiguity=word,
        )
        tgt_scene, tgt, mask = outs[0]
        return Record(
            src, tgt, mask, instruction, category, edit, scene, tgt_scene, candidates=tuple((t, m) for _, t, m in outs)
        )
    raise RuntimeError(f"no ambiguous {category} record after {MAX_TRIES} scenes")


def slice_record(seed: int, index: int, name: str, size: int = 64, phrasing: str | None = None) -> Record:
    """Record `index` of slice `name` for `seed`; `phrasing` rewords it as samples.record does (own stream)."""
    if name not in SLICES:
        raise ValueError(f"unknown slice {name!r}; expected one of {SLICES}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    rng = np.random.default_rng([seed, index, 3])
    category = samples._pick(rng, SLICE_CATEGORIES)
    if name == "ambiguous":
        rec = ambiguous_record(rng, size, category)
    else:
        rec = constrained_record(rng, size, category, name)
    if phrasing is None:
        return rec
    return paraphrase.rephrase(rec, phrasing, np.random.default_rng([seed, index, 4]))

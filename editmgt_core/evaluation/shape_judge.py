"""A shape-aware judge of world edits: does the edited object come out with the asked shape, and do the others stay?

World-eval's pixel judge (metrics.edit_success) passes an edit whose output is close to the target on average over
the edit mask, so a round blob where a triangle belongs passes. This judge looks at silhouettes, at the output's own
resolution (both scenes are rendered at that size):

- silhouette: the pixels within `COLOR_TOL` (Euclidean, RGB in [0, 1]) of an object's colour;
- local edits but removal: the edited object's colour silhouette in the output, inside the edit mask dilated by one
  token cell, against the same silhouette of the target render: IoU >= `MIN_IOU`, and the asked shape fits the
  output's silhouette better than every other world shape and a plain ellipse (for a circle, the ellipse is its own
  family and no rival). A candidate's fit is its best IoU with the silhouette over a few centres (the asked one and
  the silhouette's centroid) and radii (around the asked one and the one matching the silhouette's area), with the
  pixels covered by objects drawn in front of the edited one left out;
- removal: at most `MAX_LEFT` of the removed object's visible pixels (those that should not keep its colour) still
  carry its colour;
- global edits (background, style): no verdict here; world-eval uses its pixel judge;
- other objects: an object not edited whose colour silhouette outside the edit mask (near its outline) has IoU below
  `OTHER_IOU` with the target's has changed.

Images are float [H, W, 3] arrays in [0, 1]; scenes are drawing.Scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

from editmgt_core.world import drawing
from editmgt_core.world.samples import GLOBAL_CATEGORIES, edit_mask

COLOR_TOL = 0.15  # half the smallest distance between an object colour and any other object or background colour
MIN_IOU = 0.7  # silhouette IoU with the target's for a local edit to pass
MAX_LEFT = 0.1  # share of a removed object's pixels that may keep its colour
OTHER_IOU = 0.8  # below this IoU with the target's, another object's silhouette has changed
RADII = (0.8, 0.9, 1.0, 1.1, 1.25)  # radius multipliers of the fit's search
RIVAL_ELLIPSE = "ellipse"


@dataclass(frozen=True)
class Verdict:
    success: bool | None  # None for global categories (world-eval's pixel judge decides those)
    iou: float | None  # silhouette IoU with the target's (local edits but removal)
    fit: str | None  # the best-fitting candidate: a world shape or "ellipse" (local edits but removal)
    left: float | None  # removal: share of the removed object's pixels that kept its colour
    others_changed: bool | None  # local edits: another object's silhouette changed; None for global ones


def silhouette(img: np.ndarray, color: str) -> np.ndarray:
    """(H, W) bool: pixels within COLOR_TOL of the world colour `color`."""
    rgb = np.array(drawing.COLORS[color], np.float32) / 255
    return np.linalg.norm(img - rgb, axis=-1) <= COLOR_TOL


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius < 1:
        return mask
    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)).astype(bool)


def shape_mask(shape: str, x: float, y: float, r: float, size: int) -> np.ndarray:
    """(size, size) bool: a world shape centred at pixel (x, y) with radius r pixels (2x supersampled)."""
    pts = drawing.UNIT_POLYGONS[shape] * r + np.array([x, y])
    canvas = Image.new("L", (2 * size, 2 * size), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts * 2], fill=255)
    return np.asarray(canvas.resize((size, size), Image.BOX)) >= 128


def ellipse_mask(sil: np.ndarray, scale: float) -> np.ndarray:
    """(H, W) bool: the ellipse with the second moments of `sil` (a uniform ellipse's), its axes times `scale`."""
    ys, xs = np.nonzero(sil)
    if len(xs) < 3:
        return np.zeros_like(sil)
    d = np.stack([xs - xs.mean(), ys - ys.mean()])
    cov = np.cov(d) * scale**2 + np.eye(2) * 1e-3
    gy, gx = np.mgrid[: sil.shape[0], : sil.shape[1]]
    g = np.stack([gx - xs.mean(), gy - ys.mean()]).reshape(2, -1)
    return (np.einsum("ij,ik,kj->j", g, np.linalg.inv(cov), g) <= 4).reshape(sil.shape)


def top_object(objects: tuple, size: int) -> np.ndarray:
    """(size, size) int: index of the last object covering at least half of each pixel (-1: background)."""
    top = np.full((size, size), -1)
    for j, obj in enumerate(objects):
        top[drawing.coverage(obj, size) >= 0.5] = j
    return top


def shape_fits(sil: np.ndarray, obj: drawing.Obj, hidden: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """Each world shape's and the ellipse's best IoU with `sil` inside `region`, the pixels in `hidden` (where
    another object shows in the target) left out."""
    size = sil.shape[0]
    domain = region & ~hidden
    target = sil & domain
    centres = [(obj.x * size, obj.y * size)]
    if target.any():
        ys, xs = np.nonzero(target)
        centres.append((xs.mean() + 0.5, ys.mean() + 0.5))
    fits = {}
    for shape in drawing.SHAPES:
        unit = shape_mask(shape, size / 2, size / 2, size / 4, size).sum() / (size / 4) ** 2  # area at radius 1
        by_area = np.sqrt(target.sum() / max(unit, 1e-9)) / (obj.r * size) if target.any() else 1.0
        radii = {obj.r * size * k for k in RADII} | {obj.r * size * by_area * k for k in (0.9, 1.0, 1.1)}
        fits[shape] = max(iou(shape_mask(shape, cx, cy, r, size) & domain, target) for cx, cy in centres for r in radii)
    fits[RIVAL_ELLIPSE] = max(iou(ellipse_mask(target, k) & domain, target) for k in (0.9, 1.0, 1.1))
    return fits


def _find(objects: tuple, x: float, y: float, color: str) -> int | None:
    """Index of the last object at (x, y) with `color` (the edited one), or None."""
    hits = [i for i, o in enumerate(objects) if abs(o.x - x) < 1e-3 and abs(o.y - y) < 1e-3 and o.color == color]
    return hits[-1] if hits else None


def edited_index(scene: drawing.Scene, edit: dict, category: str) -> int | None:
    """Index of the edited object in `scene` (the source's for a removal, else the target's)."""
    where = edit["new"] if category == "add" else edit["target"]
    color = edit["new"]["color"] if category == "recolor" else where["color"]
    return _find(scene.objects, where["x"], where["y"], color)


def others_changed(out, tgt, scene: drawing.Scene, skip: int | None, mask: np.ndarray) -> bool:
    """Whether an object of the target scene but `skip` has a colour silhouette in `out` (near its outline, outside
    `mask`) with IoU below OTHER_IOU against the target's."""
    size = out.shape[0]
    min_area = 8 * (size / 64) ** 2  # smaller remains are too few pixels to call a shape
    top = top_object(scene.objects, size)
    for j, obj in enumerate(scene.objects):
        if j == skip:
            continue
        domain = dilate(top == j, max(1, size // 32)) & ~mask
        want = silhouette(tgt, obj.color) & domain
        if want.sum() >= min_area and iou(silhouette(out, obj.color) & domain, want) < OTHER_IOU:
            return True
    return False


def judge(out: np.ndarray, src_scene, tgt_scene, edit: dict, category: str) -> Verdict:
    """The shape-aware verdict on an output `out` (H, H, 3) in [0, 1] of a world edit (its scenes and edit dict)."""
    if out.ndim != 3 or out.shape[0] != out.shape[1]:
        raise ValueError(f"expected a square (H, H, 3) image, got shape {out.shape}")
    if category in GLOBAL_CATEGORIES:
        return Verdict(None, None, None, None, None)
    size = out.shape[0]
    src_px, tgt_px = drawing.render(src_scene, size), drawing.render(tgt_scene, size)
    mask = edit_mask(src_px, tgt_px, category)
    tgt = tgt_px.astype(np.float32) / 255
    region = dilate(mask, max(1, size // 16))
    if category == "remove":
        k = edited_index(src_scene, edit, category)
        color = src_scene.objects[k].color
        gone = (top_object(src_scene.objects, size) == k) & ~silhouette(tgt, color)
        left = float((silhouette(out, color) & gone).sum() / max(gone.sum(), 1))
        changed = others_changed(out, tgt, tgt_scene, None, mask)
        return Verdict(left <= MAX_LEFT, None, None, left, changed)
    k = edited_index(tgt_scene, edit, category)
    obj = tgt_scene.objects[k]
    sil, want = silhouette(out, obj.color) & region, silhouette(tgt, obj.color) & region
    score = iou(sil, want)
    top = top_object(tgt_scene.objects, size)
    fits = shape_fits(sil, obj, (top >= 0) & (top != k), region)
    rivals = [v for s, v in fits.items() if s != obj.shape and not (obj.shape == "circle" and s == RIVAL_ELLIPSE)]
    best = max(fits, key=fits.get)
    ok = score >= MIN_IOU and fits[obj.shape] > max(rivals)
    return Verdict(ok, score, best, None, others_changed(out, tgt, tgt_scene, k, mask))

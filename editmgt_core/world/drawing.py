"""The edit world's scenes and how they are drawn: the palettes and shapes, the Obj / Background / Scene records, and
the rasteriser. Shapes are rasterised at `SUPERSAMPLE`x with PIL and box-downsampled, so edges are anti-aliased; a
source and a target scene are drawn by the same code, so pixels away from an edit are identical. `samples.py` makes
scenes and edits of them.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (245, 220, 30),
    "orange": (245, 135, 20),
    "purple": (135, 50, 175),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
# Muted background colours, chosen to contrast with every object colour.
BG_COLORS: dict[str, tuple[int, int, int]] = {
    "gray": (125, 125, 125),
    "teal": (40, 125, 125),
    "pink": (240, 170, 195),
    "sky blue": (150, 200, 240),
    "beige": (215, 195, 155),
    "brown": (115, 75, 45),
}
SHAPES = ("circle", "square", "triangle", "star", "heart", "diamond", "cross")
BG_KINDS = ("flat", "stripes", "checks", "gradient")
STYLES = ("invert", "grayscale", "sepia", "outline")
SUPERSAMPLE = 4  # shapes are drawn at this multiple of the output size, then box-filtered
CHECK_SIZE = 64  # resolution used for visibility checks, so a seed gives the same scene at every output size


def _unit_polygons() -> dict[str, np.ndarray]:
    """Outline of each shape as (K, 2) points in a unit-radius frame centred on 0 (y points down)."""
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    star_angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    star_radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    heart_x = 16 * np.sin(t) ** 3
    heart_y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    tri_angles = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
    tri = np.stack([np.cos(tri_angles), -np.sin(tri_angles)], 1)
    a, b = 0.9, 0.32  # cross half-length and half-width
    return {
        "circle": np.stack([np.cos(t), np.sin(t)], 1),
        "square": np.array([[-0.82, -0.82], [0.82, -0.82], [0.82, 0.82], [-0.82, 0.82]]),
        "triangle": tri * 1.1 + np.array([0.0, 0.2]),
        "star": np.stack([star_radii * np.cos(star_angles), star_radii * np.sin(star_angles) + 0.08], 1),
        "heart": np.stack([heart_x, heart_y + 2.5], 1) / 16.5,
        "diamond": np.array([[0.0, -1.0], [0.72, 0.0], [0.0, 1.0], [-0.72, 0.0]]),
        "cross": np.array(
            [[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]]
        ),
    }


UNIT_POLYGONS = _unit_polygons()


@dataclass(frozen=True)
class Obj:
    shape: str  # one of SHAPES
    color: str  # key of COLORS
    x: float  # centre, fraction of the image width (0 = left)
    y: float  # centre, fraction of the image height (0 = top)
    r: float  # radius, fraction of the image side


@dataclass(frozen=True)
class Background:
    kind: str  # one of BG_KINDS
    colors: tuple[str, str]  # keys of BG_COLORS; the second is unused for "flat"
    vertical: bool  # stripes run vertically / gradient goes left-to-right
    period: float  # stripe or check period, fraction of the image side
    phase: float  # pattern offset in [0, 1) periods


@dataclass(frozen=True)
class Scene:
    background: Background
    objects: tuple[Obj, ...]  # drawn in order; later objects occlude earlier ones
    style: str | None = None  # global filter from STYLES applied after drawing, or None


# ---------------------------------------------------------------------------------------------------- rendering


def render_background(bg: Background, size: int) -> np.ndarray:
    """(size, size, 3) float32 background in [0, 255], supersampled so diagonal-free patterns stay crisp."""
    c0, c1 = (np.array(BG_COLORS[c], np.float32) for c in bg.colors)
    u = (np.arange(size, dtype=np.float32) + 0.5) / size  # pixel centres as fractions
    if bg.kind == "flat":
        return np.broadcast_to(c0, (size, size, 3)).copy()
    if bg.kind == "gradient":
        w = u[None, :, None] if bg.vertical else u[:, None, None]
        return (c0 * (1 - w) + c1 * w) * np.ones((size, size, 1), np.float32)
    ss = (np.arange(size * SUPERSAMPLE, dtype=np.float32) + 0.5) / (size * SUPERSAMPLE)
    band = np.floor(ss / (bg.period / 2) + 2 * bg.phase).astype(np.int64) % 2
    if bg.kind == "stripes":
        w = np.broadcast_to(band[None, :] if bg.vertical else band[:, None], (band.size, band.size))
    elif bg.kind == "checks":
        w = (band[None, :] + band[:, None]) % 2
    else:
        raise ValueError(f"unknown background kind {bg.kind!r}; expected one of {BG_KINDS}")
    w = w.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean((1, 3), dtype=np.float32)[..., None]
    return c0 * (1 - w) + c1 * w


def _polygon(obj: Obj, size: int) -> list[tuple[float, float]]:
    pts = UNIT_POLYGONS[obj.shape] * (obj.r * size) + np.array([obj.x * size, obj.y * size])
    return [tuple(p) for p in pts * SUPERSAMPLE]


def coverage(obj: Obj, size: int) -> np.ndarray:
    """(size, size) float32 anti-aliased coverage of `obj` in [0, 1]."""
    canvas = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    ImageDraw.Draw(canvas).polygon(_polygon(obj, size), fill=255)
    return np.asarray(canvas.resize((size, size), Image.BOX), np.float32) / 255.0


def visible_fractions(objects: tuple[Obj, ...], size: int = CHECK_SIZE) -> list[float]:
    """Fraction of each object's area not covered by the objects drawn after it."""
    alphas = np.stack([coverage(o, size) for o in objects])  # (N, size, size)
    through = np.cumprod((1 - alphas)[::-1], 0)[::-1]  # through[i] = prod_{j >= i} (1 - alpha_j)
    uncovered = np.concatenate([through[1:], np.ones_like(alphas[:1])])  # by the objects drawn after each one
    return ((alphas * uncovered).sum((1, 2)) / np.maximum(alphas.sum((1, 2)), 1e-6)).tolist()


def _outline_drawing(objects: tuple[Obj, ...], size: int) -> np.ndarray:
    canvas = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 250)
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(SUPERSAMPLE * size / 48))
    for obj in objects:  # filling white first erases the outlines of occluded objects
        draw.polygon(_polygon(obj, size), fill=250, outline=15, width=width)
    gray = np.asarray(canvas.resize((size, size), Image.BOX), np.float32)
    return np.repeat(gray[..., None], 3, axis=2)


def apply_style(img: np.ndarray, style: str) -> np.ndarray:
    """Global colour filter on a float image in [0, 255] (outline is handled in `render`)."""
    if style == "invert":
        return 255.0 - img
    if style == "grayscale":
        return np.repeat((img @ np.array([0.299, 0.587, 0.114], np.float32))[..., None], 3, axis=2)
    if style == "sepia":
        m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
        return np.clip(img @ m.T, 0, 255)
    raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")


def render(scene: Scene, size: int = 64) -> np.ndarray:
    """(size, size, 3) uint8 RGB image of `scene`."""
    if scene.style == "outline":
        img = _outline_drawing(scene.objects, size)
    else:
        img = render_background(scene.background, size)
        for obj in scene.objects:
            a = coverage(obj, size)[..., None]
            img = img * (1 - a) + np.array(COLORS[obj.color], np.float32) * a
        if scene.style is not None:
            img = apply_style(img, scene.style)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)

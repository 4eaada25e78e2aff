"""Report figures drawn with PIL (matplotlib is not a dependency): grouped bar charts and example grids.

Text is ASCII only ("lam" for λ): PIL's built-in font has no Greek letters.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

PALETTE = ((150, 150, 150), (40, 110, 220), (230, 140, 40), (60, 170, 90))
GROUP_W, BAR_H, MARGIN_L, MARGIN_B, MARGIN_T = 78, 170, 56, 34, 40


def font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _label(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.0f}%" if kind == "pct" else f"{value:.3f}" if kind == "leak" else f"{value:.2f}"


def _panel(groups: list[str], title: str, series: list[tuple[str, list]], ymax: float | None, kind: str):
    values = [v for _, vs in series for v in vs if v is not None]
    top = ymax or (max(values, default=0) * 1.15 or 1e-3)
    width = MARGIN_L + GROUP_W * len(groups) + 16
    img = Image.new("RGB", (width, MARGIN_T + BAR_H + MARGIN_B), "white")
    d, f = ImageDraw.Draw(img), font(12)
    d.text((8, 6), title, fill="black", font=font(14))
    x_leg = width - 8
    for i, (name, _) in reversed(list(enumerate(series))):  # legend, right-aligned
        x_leg -= d.textlength(name, font=f) + 22
        d.rectangle((x_leg, 10, x_leg + 10, 20), fill=PALETTE[i % len(PALETTE)])
        d.text((x_leg + 14, 8), name, fill="black", font=f)
    y0 = MARGIN_T + BAR_H  # baseline
    for t in np.linspace(0, top, 5):
        y = y0 - BAR_H * t / top
        d.line((MARGIN_L - 4, y, width - 8, y), fill=(225, 225, 225))
        d.text((4, y - 7), _label(float(t), kind), fill=(90, 90, 90), font=font(10))
    d.line((MARGIN_L, MARGIN_T, MARGIN_L, y0), fill="black")
    d.line((MARGIN_L, y0, width - 8, y0), fill="black")
    bar = (GROUP_W - 14) / max(1, len(series))
    for g, name in enumerate(groups):
        x = MARGIN_L + g * GROUP_W + 7
        for i, (_, vs) in enumerate(series):
            v = vs[g]
            x1 = x + i * bar
            if v is None:
                d.text((x1 + bar / 2 - 3, y0 - 14), "-", fill=(120, 120, 120), font=f)
                continue
            h = BAR_H * min(max(v, 0.0), top) / top
            d.rectangle((x1, y0 - h, x1 + bar - 2, y0), fill=PALETTE[i % len(PALETTE)])
        d.text((x + (GROUP_W - 14) / 2 - d.textlength(name, font=f) / 2, y0 + 6), name, fill="black", font=f)
    return img


def bar_chart(groups: list[str], panels: list[tuple]) -> Image.Image:
    """Panels stacked vertically; each panel = (title, [(series name, [value or None per group])], ymax or None,
    kind) with kind 'pct' | 'leak' | 'iou' for the axis labels."""
    images = [_panel(groups, *p) for p in panels]
    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    y = 0
    for i in images:
        out.paste(i, (0, y))
        y += i.height
    return out


def heatmap(scores: np.ndarray, base: Image.Image, alpha: float = 0.55) -> Image.Image:
    """A localization map (float [h, w] in [0, 1]) as a JET heat map blended over `base`."""
    w, h = base.size
    grey = (np.clip(cv2.resize(np.asarray(scores, np.float32), (w, h)), 0, 1) * 255).astype(np.uint8)
    color = cv2.applyColorMap(grey, cv2.COLORMAP_JET)[..., ::-1]
    mixed = alpha * color + (1 - alpha) * np.asarray(base.convert("RGB"), np.float32)
    return Image.fromarray(mixed.astype(np.uint8))


def _fit(text: str, d: ImageDraw.ImageDraw, f, width: float) -> str:
    if d.textlength(text, font=f) <= width:
        return text
    while text and d.textlength(text + "…", font=f) > width:
        text = text[:-1]
    return text + "…"


def examples_figure(examples: list[dict], lam: float, cell: int = 128) -> Image.Image:
    """Rows of source | target | output λ=0 | output λ | map; each example a dict with PIL images source, target,
    off, on, the map `scores` (tensor / array [h, w] or None), instruction and category."""
    heads = ["source", "target", "output lam=0", f"output lam={lam:g}", f"map (lam={lam:g})"]
    pad, text_h = 4, 18
    width = len(heads) * (cell + pad) + pad
    out = Image.new("RGB", (width, text_h + len(examples) * (cell + text_h + pad) + pad), "white")
    d, f = ImageDraw.Draw(out), font(12)
    for j, head in enumerate(heads):
        d.text((pad + j * (cell + pad) + 4, 3), head, fill="black", font=f)
    for i, ex in enumerate(examples):
        y = text_h + i * (cell + text_h + pad)
        d.text(
            (pad, y + 2), _fit(f"[{ex['category']}] {ex['instruction']}", d, f, width - 2 * pad), fill="black", font=f
        )
        src = ex["source"].convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
        if ex["scores"] is None:
            scores = Image.new("RGB", (cell, cell), (200, 200, 200))
            ImageDraw.Draw(scores).text((8, cell // 2 - 6), "no map", fill="black", font=f)
        else:
            scores = heatmap(np.asarray(ex["scores"]), src)
        cells = [src, ex["target"], ex["off"], ex["on"], scores]
        for j, image in enumerate(cells):
            out.paste(
                image.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST),
                (pad + j * (cell + pad), y + text_h),
            )
    return out

"""The studio's pictures and files: previews fitted for the browser, the token-reveal canvas, the attention overlay,
the change heatmap, JPEG data URLs for streamed frames, and saved results (PNG with its parameters plus a JSON
sidecar). Plain PIL and numpy in and out; no gradio here.
"""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

PREVIEW_SIDE = 384  # streamed frames: longer side in pixels


def fit(image: Image.Image, side: int = PREVIEW_SIDE, enlarge: bool = True) -> Image.Image:
    """Scale so the longer side is `side` (never up when not enlarge): nearest when enlarging (token edges stay
    crisp), area when shrinking."""
    scale = side / max(image.size) if enlarge else min(1.0, side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    method = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BOX
    return image if size == image.size else image.resize(size, method)


def _grid_to(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[h, w] token-grid array -> [H, W] at image size (nearest)."""
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_NEAREST)


def _outline(rgb: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], thickness: int = 1) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    return cv2.drawContours(rgb.copy(), contours, -1, color, thickness)


def dim(image: Image.Image, factor: float = 0.4) -> Image.Image:
    """The source as undecided tokens show it (the core's preview dims them the same way)."""
    return Image.fromarray((np.asarray(image.convert("RGB"), dtype=np.float32) * factor).astype(np.uint8))


def reveal_canvas(preview: Image.Image, revealed: np.ndarray, side: int = PREVIEW_SIDE) -> Image.Image:
    """A (partially) decoded image fitted to side, with the tokens revealed (bool [h, w]) outlined in yellow."""
    img = fit(preview.convert("RGB"), side)
    return Image.fromarray(_outline(np.asarray(img), _grid_to(revealed, img.size) > 0.5, (255, 220, 0)))


def attention_overlay(
    base: Image.Image, scores: np.ndarray | None, hold: np.ndarray | None, side: int = PREVIEW_SIDE
) -> Image.Image:
    """The localization map over the (fitted) image as a heatmap, the hold region outlined (cyan)."""
    img = fit(base.convert("RGB"), side)
    rgb = np.asarray(img).astype(np.float32)
    if scores is not None:
        s = cv2.resize(np.clip(scores, 0, 1).astype(np.float32), img.size, interpolation=cv2.INTER_LINEAR)
        heat = cv2.cvtColor(cv2.applyColorMap((s * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        rgb = 0.5 * rgb + 0.5 * heat
    rgb = rgb.astype(np.uint8)
    if hold is not None and hold.any():
        rgb = _outline(rgb, _grid_to(hold, img.size) > 0.5, (0, 255, 255), max(1, side // 192))
    return Image.fromarray(rgb)


def change_map(before: Image.Image, after: Image.Image) -> np.ndarray:
    """float [H, W]: mean absolute RGB change (0..255) per pixel, at after's size."""
    a = np.asarray(before.convert("RGB").resize(after.size), dtype=np.float32)
    return np.abs(np.asarray(after.convert("RGB"), dtype=np.float32) - a).mean(axis=-1)


def change_heatmap(before: Image.Image, after: Image.Image, full_scale: float = 96.0) -> Image.Image:
    """'What changed': the per-pixel change (INFERNO, saturating at full_scale) over a faded grey input."""
    diff = np.clip(change_map(before, after) / full_scale, 0, 1)
    heat = cv2.cvtColor(cv2.applyColorMap((diff * 255).astype(np.uint8), cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    grey = np.asarray(after.convert("L"), dtype=np.float32)[..., None]
    alpha = 0.25 + 0.75 * diff[..., None]  # unchanged pixels show the faded image
    return Image.fromarray((alpha * heat + (1 - alpha) * 0.5 * grey).astype(np.uint8))


def mean_change_outside(before: Image.Image, after: Image.Image, hold: np.ndarray | None) -> float:
    """Mean |after - before| (0..255) over pixels outside the hold region (everywhere when nothing is held)."""
    diff = change_map(before, after)
    free = np.ones(diff.shape, bool) if hold is None else _grid_to(hold, after.size) < 0.5
    return float(diff[free].mean()) if free.any() else 0.0


# ---------------------------------------------------------------------------------------------------- files


def jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def data_url(image: Image.Image) -> str:
    """A small image as a JPEG data URL (streamed previews travel inline, not as files)."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg(image)).decode()


def from_jpeg(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def png_data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def sweep_table(cells: list, lams: tuple[float, ...], gammas: tuple[float, ...], side: int = 176) -> str:
    """A sweep's cells as an HTML table: one row per γ, one column per λ (a cell not finished yet is empty), each
    image captioned with its numbers in full, and a legend for them."""
    done = {(c.gamma, c.lam): c for c in cells}
    head = "".join(f"<th>λ = {lam:g}</th>" for lam in lams)
    rows = []
    for gamma in gammas:
        tds = []
        for lam in lams:
            c = done.get((gamma, lam))
            if c is None:
                tds.append("<td class='pending'>…</td>")
                continue
            img = data_url(fit(c.result.image, side, enlarge=False))
            tds.append(
                f"<td><img src='{img}' alt='{c.label}' title='{c.label}'><div>{c.result.held_fraction:.0%} "
                f"held · Δ outside hold {c.change_outside:.1f}</div></td>"
            )
        rows.append(f"<tr><th>γ = {gamma:g}</th>{''.join(tds)}</tr>")
    legend = (
        "Rows: γ, condition strength (how closely the edit follows the source). Columns: λ, hold threshold "
        "(0 = nothing held). <b>% held</b>: share of the image's tokens restored to the source at every step "
        "(the hold region). <b>Δ outside hold</b>: mean change of the pixels outside the hold region, the part "
        "left free to edit (with nothing held, the whole image), 0 to 255 per colour channel (0 = unchanged)."
    )
    return (
        f"<table class='sweep-grid'><tr><th></th>{head}</tr>{''.join(rows)}</table><p class='sweep-legend'>{legend}</p>"
    )


def prune(folder: Path, max_age_s: float = 3600.0) -> None:
    """Delete saved results older than max_age_s (the app's download folder is a cache, not an archive)."""
    cutoff = time.time() - max_age_s
    for path in folder.glob("editmgt-*"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)

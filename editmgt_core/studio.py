"""EditMGT Studio's UI-independent parts: input limits, the streamed edit and the λ/γ sweep as CPU data, rendering.

Everything here takes and returns PIL images, numpy arrays and plain Python values: a GPU worker (ZeroGPU) runs
`stream` / `sweep` and only CPU objects cross back to the web process. No gradio here; `app.py` is the UI.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import dataclasses
import io
import math
import os
import queue
import re
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from . import entries, files, knobs
from .editing import EditResult, Progress, default_options, edit_stream, prepare, resolve_options, run, to_rgb
from .entries import from_text as layers_from_text
from .knobs import number
from .loading import Editor
from .sampling import SamplerOptions

SOFT_PIXELS = 2048 * 2048  # larger inputs are downscaled to about this many pixels (with a notice)
HARD_PIXELS = 40_000_000  # larger inputs are refused before a pixel is decoded (also PIL's bomb limit in the app)
MIN_SIDE = 8  # smaller images are refused: there is nothing to edit
MAX_INSTRUCTION_CHARS = knobs.TEXT_CHARS  # the text encoders read ~256 tokens at most
MAX_CELLS = 16  # threshold-exploration grid
PREVIEW_SIDE = 384  # streamed frames: longer side in pixels
PREVIEW_BUDGET = 0.1  # share of an edit's time that decoding previews may take (on CPU a VQ decode can cost a step)
LIMITS = knobs.LIMITS  # (lo, hi) of the numeric knobs the app and the API accept


# ---------------------------------------------------------------------------------------------------- inputs


def open_image(path: str | Path) -> Image.Image:
    """An uploaded file as a loaded PIL image; ValueError for non-images, truncated files and decompression bombs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            _check_pixels(*image.size)  # from the header, before decoding anything
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"refused: the image is too large to decode safely ({err})") from None
    except UnidentifiedImageError:
        raise ValueError("the file is not an image that can be read (use PNG, JPEG, WebP, BMP, GIF or TIFF)") from None
    except OSError as err:  # truncated or corrupt data
        raise ValueError(f"the image file is damaged or truncated ({err})") from None
    return image


def _check_pixels(width: int, height: int) -> None:
    if width * height > HARD_PIXELS:
        raise ValueError(
            f"refused: the image is {width}x{height} ({width * height / 1e6:.0f} megapixels); "
            f"the limit is {HARD_PIXELS / 1e6:.0f} megapixels"
        )
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"the image is {width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")


def check_image(image: Image.Image | None) -> tuple[Image.Image, str | None]:
    """Upright RGB within the limits -> (image, notice); over SOFT_PIXELS it is downscaled and notice says so."""
    if image is None:
        raise ValueError("no image: upload, paste or capture an image first")
    _check_pixels(*image.size)
    rgb = to_rgb(image)
    width, height = rgb.size
    if width * height <= SOFT_PIXELS:
        return rgb, None
    scale = math.sqrt(SOFT_PIXELS / (width * height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    notice = f"The image is {width}x{height} ({width * height / 1e6:.1f} MP); it was downscaled to {size[0]}x{size[1]}."
    return rgb.resize(size, Image.Resampling.LANCZOS), notice


def check_instruction(instruction: str | None) -> str:
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("the instruction is empty; describe the edit, e.g. 'make the red circle blue'")
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise ValueError(
            f"the instruction has {len(instruction):,} characters; at most {MAX_INSTRUCTION_CHARS:,} are allowed"
        )
    return instruction


def words(instruction: str | None, limit: int = 40) -> list[str]:
    """The instruction's distinct words in order (case-insensitive), the candidates for keywords."""
    seen, out = set(), []
    for word in re.findall(r"\w+", instruction or ""):
        if word.lower() not in seen:
            seen.add(word.lower())
            out.append(word)
    return out[:limit]


def parse_layers(value: str | None, depth: int) -> tuple[int | str, ...] | None:
    """'28-36', '5, s0' or 'change' -> map entries (entries.from_text); empty -> None (the model's)."""
    text = (value or "").strip()
    if not text:
        return None
    layers = layers_from_text(text)
    bad = [e for e in layers if (entries.parse(e).block or 0) >= depth]  # logit entries have no block
    if bad:
        raise ValueError(f"attention layers {bad} out of range; this model has blocks 0..{depth - 1}")
    if not entries.valid(layers):
        raise ValueError(f"attention layers {value!r}: name at least one block without 's' (the target map), or "
                         "'change'")  # fmt: skip
    return layers


def parse_values(value: str | Sequence[float], name: str, lo: float, hi: float) -> tuple[float, ...]:
    """'0, 0.1, 0.3' (or a list) -> distinct numbers in [lo, hi], at most MAX_CELLS of them."""
    items = [v for v in value.replace(";", ",").split(",") if v.strip()] if isinstance(value, str) else list(value)
    try:
        values = [float(v) for v in items]
    except (TypeError, ValueError):
        raise ValueError(f"{name} {value!r}: write numbers separated by commas, e.g. '0, 0.1, 0.3'") from None
    if not values or len(values) > MAX_CELLS:
        raise ValueError(f"{name}: give 1 to {MAX_CELLS} values; got {len(values)}")
    return tuple(dict.fromkeys(number(name, v, lo, hi) for v in values))


def make_options(editor: Editor, **values) -> SamplerOptions:
    """SamplerOptions from UI / API values, named as its fields (temperature a pair), each checked by its knob
    (knobs.KNOBS: kind and range); a value left out is the model's default; seed None or < 0 draws a fresh one."""
    unknown = sorted(set(values) - set(knobs.SAMPLER))
    if unknown:
        raise TypeError(f"unknown sampler knobs {unknown}")
    for name, value in values.items():
        if name == "seed" and (value is None or knobs.is_number(value) and value < 0):
            values[name] = None  # draw a fresh seed
        elif name == "layers":
            values[name] = parse_layers(value, editor.transformer.config.depth)
        else:
            values[name] = knobs.KNOBS[name].check(value)
    return default_options(editor, **values)


def request(editor: Editor, *, resolution=0, randomize=False, **values) -> tuple[SamplerOptions, int | None]:
    """UI / API knob values -> (options, working pixels). values: make_options', the temperature as
    temperature_start and temperature_end (one left out is the model's); randomize drops the seed."""
    if randomize:
        values["seed"] = None
    if "temperature_start" in values or "temperature_end" in values:
        start, end = knobs.temperature_pair(default_options(editor).temperature)
        values["temperature"] = (values.pop("temperature_start", start), values.pop("temperature_end", end))
    return make_options(editor, **values), work_pixels(editor, resolution)


def resolution_range(editor: Editor) -> tuple[int, int, int]:
    """(min, default, max) working side in pixels: the default is the model's; at most twice it (4x the pixels)."""
    default = math.isqrt(editor.settings.pixels)
    return 8 * editor.vq.factor, default, min(2048, 2 * default)


def browser_side(editor: Editor) -> int:
    """Longest side an upload is downscaled to in the browser: twice the working side, 1024 to 2048 pixels (more
    than the model uses; the result keeps the upload's size at that side)."""
    return min(2048, max(1024, 2 * math.isqrt(editor.settings.pixels)))


def work_pixels(editor: Editor, side) -> int | None:
    """Working pixel count for a side length (a square's worth, aspect kept by the core); 0 / None = default."""
    if side in (None, 0):
        return None
    lo, _, hi = resolution_range(editor)
    side = number("resolution", side, lo, hi, integer=True)
    return side * side


def brush_mask(layers: Sequence[Image.Image] | None, size: tuple[int, int]) -> np.ndarray | None:
    """Brush layers (painted where alpha > 0) -> bool [H, W] at size (width, height); None when nothing is painted."""
    painted = np.zeros(size[::-1], dtype=bool)
    for layer in layers or ():
        if "A" in layer.getbands():
            painted |= np.asarray(layer.getchannel("A").resize(size, Image.Resampling.NEAREST)) > 0
    return painted if painted.any() else None


def mask_image(mask: Image.Image, size: tuple[int, int], image_size: tuple[int, int] | None = None):
    """A mask image (white = may edit, black = keep; transparency counts as white) -> (bool [H, W] at size, notice).

    image_size: the uploaded image's own size (before any downscale; default size). A mask of that size is used as
    is; one with the same aspect ratio is scaled and the notice says so; another shape is a ValueError (stretching
    it would move the region)."""
    image_size = image_size or size
    notice = None
    if mask.size != image_size:
        (mw, mh), (iw, ih) = mask.size, image_size
        if abs(mw / mh - iw / ih) > 0.02 * iw / ih:
            raise ValueError(f"the mask is {mw}x{mh} but the image is {iw}x{ih}; give a mask of the image's size "
                             "(white = may edit, black = keep)")  # fmt: skip
        notice = f"The mask is {mw}x{mh} and the image {iw}x{ih}: the mask was scaled to the image."
    return np.asarray(to_rgb(mask).convert("L").resize(size, Image.Resampling.BILINEAR)) > 127, notice


def keep_keywords(previous: str | None, instruction: str | None, chosen: Sequence[str] | None) -> list[str]:
    """The ticked keywords that still apply. Kept (those still in the text) while the instruction is typed: the new
    text is the old with one span inserted or deleted; dropped when the text is replaced as a whole (an example, a
    paste over it, a restore), even by an instruction that shares the word. Typing over a selection of up to two
    characters (a capital letter, a typo) counts as typing."""
    old, new = previous or "", instruction or ""
    start = len(os.path.commonprefix([old, new]))
    end = len(os.path.commonprefix([old[start:][::-1], new[start:][::-1]]))
    typed = bool(old) and start + end >= min(len(old), len(new)) - 2
    present = {w.lower(): w for w in words(new)}
    return [present[w.lower()] for w in chosen or () if typed and w.lower() in present]


def stopped_status(status: str | None) -> str | None:
    """The status after Stop: 'stopped at step k/N' when a run was streaming (None: nothing was running)."""
    found = re.search(r"[Ss]tep (\d+)/(\d+)", status or "")
    if not found or status.startswith(("**Done**", "**Stopped**")):
        return None
    k, n = found.groups()
    return f"**Stopped** at step {k}/{n}: the panels show that step; results and history are unchanged. Press " \
        "**Edit** to run again."  # fmt: skip


def brush_note(mask: np.ndarray | None, options: SamplerOptions) -> str | None:
    """Why a sweep's λ cells can be alike: with a painted brush in 'replace' mode the brush alone is the hold region."""
    if mask is None or options.mask_mode != "replace":
        return None
    return "A brush is painted and the brush mask mode is 'replace': the brush, not the map, decides what is held, " \
        "so λ changes nothing and cells differing only in λ are identical. Choose 'union' or 'intersection' " \
        "(Advanced) to compare λ, or clear the brush."  # fmt: skip


# ---------------------------------------------------------------------------------------------------- edits as CPU data


@dataclass(frozen=True)
class Frame:
    """One decoding step, CPU only."""

    step: int  # 0-based
    num_steps: int
    preview: Image.Image | None  # decided tokens decoded, undecided as dimmed source (working size, capped); None:
    # not decoded at this step (preview budget spent), the last decoded one still stands
    revealed: np.ndarray  # bool [h, w] tokens decided at this step
    scores: np.ndarray | None  # float [h, w] map compared with λ (brush applied), None when not computed
    hold: np.ndarray | None  # bool [h, w] tokens held to the source so far, None when hold is off
    held_fraction: float
    focus: float | None = None  # instruction focus at the first step (hold.focus), None without a map
    gated: bool = False  # the map holds nothing: focus below the focus gate (a whole-image edit)


@dataclass(frozen=True)
class Final:
    """A finished edit, CPU only."""

    image: Image.Image  # at the input's size
    source: Image.Image  # the RGB input it was made from
    parameters: dict  # EditResult.parameters(): everything needed to reproduce it (seed included)
    scores: np.ndarray | None  # float [h, w]
    hold: np.ndarray | None  # bool [h, w]
    held_fraction: float
    timings: dict[str, float]
    focus: float | None = None
    gated: bool = False


def fit(image: Image.Image, side: int = PREVIEW_SIDE, enlarge: bool = True) -> Image.Image:
    """Scale so the longer side is `side` (never up when not enlarge): nearest when enlarging (token edges stay
    crisp), area when shrinking."""
    scale = side / max(image.size) if enlarge else min(1.0, side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    method = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BOX
    return image if size == image.size else image.resize(size, method)


def _np(t) -> np.ndarray | None:
    return None if t is None else t[0].float().cpu().numpy() if t.dtype.is_floating_point else t[0].cpu().numpy()


def _frame(p: Progress, preview: Image.Image | None) -> Frame:
    r = p.record
    return Frame(r.step, r.num_steps, preview, _np(r.revealed), _np(r.scores), _np(r.hold), r.held_fraction,
                 *r.gate_of(0))  # fmt: skip


def _final(result: EditResult, source: Image.Image) -> Final:
    t = lambda x: None if x is None else x.numpy()
    return Final(result.image, source, result.parameters(), t(result.scores), t(result.hold), result.held_fraction,
                 dict(result.timings), result.focus, result.gated)  # fmt: skip


def stream(
    editor: Editor,
    image: Image.Image,
    instruction: str,
    options: SamplerOptions,
    *,
    user_mask: np.ndarray | None = None,
    pixels: int | None = None,
    preview_side: int = PREVIEW_SIDE,
    preview_budget: float = PREVIEW_BUDGET,
    show_map: bool = True,
) -> Iterator[Frame | Final]:
    """`edit_stream` as CPU data: a Frame per decoding step, then the Final. The map is made at λ = 0 too (show_map),
    so the app always shows where the model attends.

    A preview costs a full VQ decode (on CPU up to a sampling step's time), so one is decoded only while decoding
    stays within preview_budget of the time spent so far (1 = every step; the first estimate of its cost is the VQ
    encode's time). The last step has none: the Final's image is that step decoded.
    """
    clock, spent, cost = time.perf_counter(), 0.0, None
    for item in edit_stream(editor, image, instruction, options, user_mask=user_mask, pixels=pixels, show_map=show_map):
        if not isinstance(item, Progress):
            yield _final(item, to_rgb(image))
            continue
        cost = item.prepared.timings["encode"] if cost is None else cost
        elapsed, preview = time.perf_counter() - clock, None
        if item.record.step < item.record.num_steps - 1 and spent + cost <= preview_budget * (elapsed + cost):
            start = time.perf_counter()
            preview = fit(item.preview(editor), preview_side, enlarge=False)
            cost = time.perf_counter() - start
            spent += cost
        yield _frame(item, preview)


@dataclass(frozen=True)
class Cell:
    """One finished cell of a threshold sweep."""

    index: int
    lam: float
    gamma: float
    result: Final
    change_outside: float  # mean |after - before| (0..255) over pixels outside the hold region

    @property
    def label(self) -> str:
        return (f"λ={self.lam:g} γ={self.gamma:g} · {self.result.held_fraction:.0%} held · "
                f"Δ outside hold {self.change_outside:.1f}")  # fmt: skip

    def summary(self) -> dict:
        keys = ("index", "lam", "gamma", "change_outside")
        return {**{k: getattr(self, k) for k in keys}, "held_fraction": self.result.held_fraction}


@dataclass(frozen=True)
class CellStep:
    """Sweep progress: cell `index` of `cells` is at decoding step `step` of `num_steps`."""

    index: int
    cells: int
    step: int
    num_steps: int
    lam: float
    gamma: float


def sweep(
    editor: Editor,
    image: Image.Image,
    instruction: str,
    options: SamplerOptions,
    lams: Sequence[float],
    gammas: Sequence[float],
    *,
    user_mask: np.ndarray | None = None,
    pixels: int | None = None,
) -> Iterator[CellStep | Cell]:
    """One edit per (γ, λ) cell, all with one seed. The image and text are encoded once; only the sampler re-runs
    (λ and γ enter only the sampler and the transformer's attention bias). Yields CellStep progress and each Cell."""
    options = resolve_options(editor, options)
    prepared = prepare(editor, image, instruction, options, user_mask=user_mask, pixels=pixels)
    grid = [(g, lam) for g in gammas for lam in lams]
    for index, (gamma, lam) in enumerate(grid):
        for item in run(editor, prepared, dataclasses.replace(options, gamma=gamma, lam=lam)):
            if isinstance(item, Progress):
                r = item.record
                yield CellStep(index, len(grid), r.step, r.num_steps, lam, gamma)
            else:
                final = _final(item, prepared.image)
                yield Cell(index, lam, gamma, final, mean_change_outside(final.source, final.image, final.hold))


def _put(buffer: queue.Queue, stop: threading.Event, entry) -> bool:
    while not stop.is_set():
        with contextlib.suppress(queue.Full):
            buffer.put(entry, timeout=0.05)
            return True
    return False


def _prefetch_work(items: Iterable, buffer: queue.Queue, stop: threading.Event, end: object) -> None:
    source = iter(items)
    try:
        for item in source:
            if not _put(buffer, stop, (item, None)):
                return
        _put(buffer, stop, (end, None))
    except BaseException as err:  # handed to the consumer
        _put(buffer, stop, (end, err))
    finally:
        getattr(source, "close", lambda: None)()  # a generator stops between steps


class prefetch:  # noqa: N801 (used as a function: prefetch(items))
    """Iterate `items` in a worker thread up to `depth` ahead, so that the consumer's work per item (rendering,
    sending) overlaps with producing the next step. The worker starts at once, so the caller can send something
    (a "started" update) while the first step is computed. Closing this iterator, or dropping it (the worker holds
    no reference to it), stops the worker between items; the worker's exceptions are raised here."""

    def __init__(self, items: Iterable, depth: int = 2):
        self._buffer, self._stop, self._end = queue.Queue(maxsize=depth), threading.Event(), object()
        context = contextvars.copy_context()  # the caller's context variables (e.g. the web request) go along
        args = (_prefetch_work, items, self._buffer, self._stop, self._end)
        threading.Thread(target=context.run, args=args, daemon=True, name="editmgt-prefetch").start()

    def __iter__(self) -> prefetch:
        return self

    def __next__(self):
        if self._stop.is_set():
            raise StopIteration
        item, err = self._buffer.get()
        if item is self._end:
            self._stop.set()
            if err is not None:
                raise err
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()

    __del__ = close


# ---------------------------------------------------------------------------------------------------- rendering


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


def save_result(final: Final, folder: Path, extra: dict | None = None) -> tuple[Path, Path]:
    """The edit as a PNG with its parameters in an 'editmgt' text chunk, plus the same JSON as a sidecar file."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {**final.parameters, "held_fraction": final.held_fraction, "focus": final.focus, "gated": final.gated,
              "timings": final.timings, **(extra or {})}  # fmt: skip
    stem = f"editmgt-{final.parameters['seed']}-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6:06d}"
    png, sidecar = folder / f"{stem}.png", folder / f"{stem}.json"
    files.save_image(final.image, png, record)
    files.write_json_atomic(sidecar, record)
    return png, sidecar


read_parameters = files.read_parameters  # the parameters a saved PNG carries


def prune(folder: Path, max_age_s: float = 3600.0) -> None:
    """Delete saved results older than max_age_s (the app's download folder is a cache, not an archive)."""
    cutoff = time.time() - max_age_s
    for path in folder.glob("editmgt-*"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)

"""The studio's inputs: the limits on images, instructions and sweeps, and the checks that turn the app's and the
API's values into an edit's arguments (an upload opened within the limits, a brush or mask image as a bool mask,
knob values as SamplerOptions and a working pixel count). No gradio here; errors are ValueErrors the app shows.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..edit import knobs
from ..edit.editing import default_options, to_rgb
from ..edit.knobs import number
from ..model import entries
from ..model.entries import from_text as layers_from_text
from ..model.loading import Editor
from ..sampler.sampling import SamplerOptions

SOFT_PIXELS = 2048 * 2048  # larger inputs are downscaled to about this many pixels (with a notice)
HARD_PIXELS = 40_000_000  # larger inputs are refused before a pixel is decoded (also PIL's bomb limit in the app)
MIN_SIDE = 8  # smaller images are refused: there is nothing to edit
MAX_INSTRUCTION_CHARS = knobs.TEXT_CHARS  # the text encoders read ~256 tokens at most
MAX_CELLS = 16  # threshold-exploration grid
LIMITS = knobs.LIMITS  # (lo, hi) of the numeric knobs the app and the API accept


def open_upload(path: str | Path) -> Image.Image:
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


def check_keywords(keywords, instruction: str) -> None:
    """ValueError naming the keywords that are not words of the instruction (the map reads only its words)."""
    present = {w.lower() for w in words(instruction, limit=10_000)}
    chosen = knobs.parse_keywords("keywords", keywords or ())
    missing = [k for k in chosen if not set(re.findall(r"\w+", k.lower())) <= present]
    if missing:
        raise ValueError(f"keywords {', '.join(map(repr, missing))} are not words of the instruction "
                         f"{instruction!r}; pick words it contains, or none (all words)")  # fmt: skip


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


def sweep_grid(lam_values, gamma_values, gamma: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A sweep's λ and γ values from text (γ values empty: just `gamma`), at most MAX_CELLS cells in all."""
    lams = parse_values(lam_values, "λ values", *LIMITS["lam"])
    gammas = (gamma,)
    if str(gamma_values or "").strip():
        gammas = parse_values(gamma_values, "γ values", *LIMITS["gamma"])
    if len(lams) * len(gammas) > MAX_CELLS:
        raise ValueError(f"{len(lams)} λ x {len(gammas)} γ values = {len(lams) * len(gammas)} cells; "
                         f"at most {MAX_CELLS}")  # fmt: skip
    return lams, gammas


def make_options(editor: Editor, **values) -> SamplerOptions:
    """SamplerOptions from UI / API values, named as its fields (temperature a pair), each checked by its knob
    (knobs.KNOBS: kind and range); a value left out is the model's default; seed None or -1 draws a fresh one
    (other negative seeds are refused, as the command line refuses them)."""
    unknown = sorted(set(values) - set(knobs.SAMPLER))
    if unknown:
        raise TypeError(f"unknown sampler knobs {unknown}")
    for name, value in values.items():
        if name == "seed" and (value is None or value == -1):
            values[name] = None  # draw a fresh seed
        elif name == "seed" and knobs.is_number(value) and value < 0:
            raise ValueError(f"seed={value!r}; expected -1 (random) or an integer in [0, {knobs.SEED_MAX}]")
        elif name == "layers":
            values[name] = parse_layers(value, editor.transformer.config.depth)
        else:
            values[name] = knobs.parse(name, value)
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


def mask_from_image(mask: Image.Image, size: tuple[int, int], image_size: tuple[int, int] | None = None):
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
    """The status after Stop: 'stopped at step k/N' when an edit was streaming, 'stopped at cell i/n, step k/N' when
    a sweep was (None: nothing was running)."""
    found = re.search(r"[Ss]tep (\d+)/(\d+)", status or "")
    finished = re.search(r"(\d+) finished", status or "")  # a sweep between cells
    if (not found and not finished) or status.startswith(("**Done**", "**Stopped**")):
        return None
    if not found:
        return f"**Stopped** · cells finished: {finished[1]}, kept. Press **Explore** to run again."
    k, n = found.groups()
    cell = re.search(r"Cell (\d+)/(\d+)", status)
    if cell:
        return f"**Stopped** at cell {cell[1]}/{cell[2]}, step {k}/{n}: the finished cells stay. Press **Explore** " \
            "to run again."  # fmt: skip
    return f"**Stopped** at step {k}/{n}: the panels show that step; results and history are unchanged. Press " \
        "**Edit** to run again."  # fmt: skip


def brush_note(mask: np.ndarray | None, options: SamplerOptions) -> str | None:
    """Why a sweep's λ cells can be alike: with a painted brush in 'replace' mode the brush alone is the hold region."""
    if mask is None or options.mask_mode != "replace":
        return None
    return "A brush is painted and the brush mask mode is 'replace': the brush, not the map, decides what is held, " \
        "so λ changes nothing and cells differing only in λ are identical. Choose 'union' or 'intersection' " \
        "(Advanced) to compare λ, or clear the brush."  # fmt: skip

"""Reading inputs with clear errors, and writing results safely: atomic writes, PNGs carrying an edit's parameters,
map images and step animations.

Every file is written to a temporary name in its own folder and renamed into place (`os.replace`), so a process killed
mid-write leaves either the old file or the new one, never half of one. The parameters of an edit travel inside its
PNG as an iTXt chunk named `editmgt` holding JSON (`read_parameters` gets them back). Not `parameters`: that key
belongs to AUTOMATIC1111's own text format, which tools parse on sight; PNGs written before this change used it and
are still read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

PARAMETERS_KEY = "editmgt"  # our key; the JSON includes the model the edit was made with
LEGACY_KEY = "parameters"  # what older versions wrote (JSON under AUTOMATIC1111's key)
ANIMATION_FORMATS = {".gif": "GIF", ".webp": "WEBP"}
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: temporary files are created 0600, the renamed result gets the usual mode


def open_image(path: str | Path, what: str = "image") -> Image.Image:
    """Open and fully read an image file; FileNotFoundError / ValueError with a one-line message otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder, not an image file")
    try:
        image = Image.open(path)
        image.load()
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:  # PIL raises all three for bad files
        raise ValueError(f"cannot read {what} {path}: {err}") from None
    return image


def open_mask(path: str | Path, size: tuple[int, int], what: str = "mask") -> np.ndarray:
    """A mask image (white = True) as bool [H, W] at size = (W, H), nearest-neighbour resized when needed."""
    image = open_image(path, what).convert("L")
    if image.size != tuple(size):
        image = image.resize(size, Image.Resampling.NEAREST)
    return np.asarray(image) > 127


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a synced temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=1) + "\n").encode())


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete temporaries left by a killed writer under `folder`; returns how many."""
    stale = list(Path(folder).rglob(".*.tmp")) if Path(folder).is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def encode_image(image: Image.Image, suffix: str, parameters: dict | None = None) -> bytes:
    """Encode in the format of `suffix`; PNGs get `parameters` as JSON in an iTXt chunk named PARAMETERS_KEY."""
    buf = io.BytesIO()
    fmt = Image.registered_extensions().get(suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write images with the extension {suffix!r}; use .png")
    if fmt == "PNG":
        info = PngInfo()
        if parameters is not None:
            info.add_itxt(PARAMETERS_KEY, json.dumps(parameters, ensure_ascii=False))
        image.save(buf, format="PNG", pnginfo=info)
    else:
        image.save(buf, format=fmt)
    return buf.getvalue()


def save_image(image: Image.Image, path: str | Path, parameters: dict | None = None) -> None:
    """Save atomically; a PNG carries `parameters`, any other format gets them in a `<path>.json` sidecar."""
    path = Path(path)
    write_bytes_atomic(path, encode_image(image, path.suffix, parameters))
    if parameters is not None and path.suffix.lower() != ".png":
        write_json_atomic(path.with_name(path.name + ".json"), parameters)


def read_parameters(path: str | Path) -> dict | None:
    """The parameters saved with `save_image` in a PNG, or None when it has none."""
    with Image.open(path) as image:
        text = image.info.get(PARAMETERS_KEY)
        if text is None and str(image.info.get(LEGACY_KEY, "")).startswith("{"):
            text = image.info[LEGACY_KEY]
    return None if text is None else json.loads(text)


def image_sha256(image: Image.Image) -> str:
    """SHA-256 of an image's RGB pixels and size (not of a file's bytes: the same pixels saved twice hash alike)."""
    rgb = image.convert("RGB")
    return hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + rgb.tobytes()).hexdigest()


def mask_sha256(mask: np.ndarray) -> str:
    """SHA-256 of a bool [H, W] mask and its shape."""
    mask = np.asarray(mask, dtype=bool)
    return hashlib.sha256(f"{mask.shape[1]}x{mask.shape[0]}:".encode() + np.packbits(mask).tobytes()).hexdigest()


def public_model(model: str | Path | None) -> str | None:
    """A model as a saved record names it: a hub id ('WeiChow/EditMGT') as it is, a folder by its name only (a
    server's paths stay private)."""
    if model is None:
        return None
    text = str(model)
    path = Path(text).expanduser()
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~")) and "\\" not in text
    if looks_like_hub_id and not path.exists():
        return text
    return path.resolve().name or text


def map_image(scores: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Grey-level picture of a localization map: float [h, w] in [0, 1] (clipped) -> L image of `size` = (W, H),
    bilinearly upsampled, white = edit here."""
    grey = (np.clip(np.asarray(scores, dtype=np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR)


def mask_image(mask: np.ndarray) -> Image.Image:
    """bool [h, w] -> L image, white where True."""
    return Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255)


def save_animation(frames: Sequence[Image.Image], path: str | Path, ms_per_frame: int = 120, hold_last: int = 1200):
    """Write frames as an animated GIF or WebP (by suffix), looping, the last frame shown longer."""
    path = Path(path)
    fmt = ANIMATION_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"--save-steps must end in .gif or .webp; got {path.name!r}")
    if not frames:
        raise ValueError("no frames to animate")
    durations = [ms_per_frame] * (len(frames) - 1) + [hold_last]
    buf = io.BytesIO()
    first, *rest = [f.convert("RGB") for f in frames]
    first.save(buf, format=fmt, save_all=True, append_images=rest, duration=durations, loop=0)
    write_bytes_atomic(path, buf.getvalue())

"""What a model was trained on, and whether an input lies outside it.

A model folder's `editmgt_studio.json` may carry a `domain` entry:

    "domain": {"trained_on": "...", "vq_error": 0.05, "vocabulary": ["add", "blue", ...], "advice": "..."}

`vq_error` is the largest VQ round-trip error (mean |decode(encode(x)) - x|, pixels in [0, 1], at the working size)
that still reads as the training images; an image above it is far from what the tokenizer and the transformer saw
(a photo for a model trained on flat coloured shapes), which is a natural out-of-domain signal that costs one VQ
decode. `vocabulary` is every word of the training instructions; an instruction word outside it was never seen.
A folder without a `domain` entry (the published model) is checked for nothing.

    python -m editmgt_core.studio.domain --model editmgt_core/assets/default-model --seed 555 [--write]

derives both for the bundled world model: the vocabulary from the world's instruction generator, the threshold from
world images against photo-like images made here (gradients with noise, textures, blurred scenes).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import re
import threading
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from editmgt_core.edit.editing import image_to_tensor, to_rgb, work_size
from editmgt_core.model.loading import SETTINGS_NAME, Editor

PUBLISHED_COMMAND = "python app.py --model WeiChow/EditMGT --device cuda"
MIN_KNOWN_SHARE = 0.5  # an instruction with fewer known words than this share reads as outside the domain
STRAY_SHARE = 0.2  # unknown words the model passes over: one, or this share of a longer instruction's words


@dataclass(frozen=True)
class Notice:
    """One way an input lies outside what the model knows."""

    kind: str  # "image" or "instruction"
    text: str  # for people: what is off and the way forward
    value: float  # image: VQ round-trip error; instruction: share of known words


class OutOfDomainError(ValueError):
    """Strict mode refused an input outside the model's domain."""


def domain_of(editor: Editor) -> dict:
    return dict(getattr(editor.settings, "domain", None) or {})


def advice(domain: dict) -> str:
    return domain.get("advice") or f"run the published model on a GPU: `{PUBLISHED_COMMAND}`"


ERRORS_KEPT = 64  # images whose round-trip error each tokenizer remembers
_errors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # editor.vq -> OrderedDict(image digest -> error)
_errors_lock = threading.Lock()


@torch.inference_mode()
def vq_error(editor: Editor, image: Image.Image, pixels: int | None = None) -> float:
    """Mean |decode(encode(x)) - x| over the image at the working size the edit uses (pixels in [0, 1]). Remembered
    per tokenizer for the last ERRORS_KEPT images (by their working-size pixels): people edit one image again and
    again, and the round trip costs an encode and a decode."""
    rgb = to_rgb(image)
    size = work_size(*rgb.size, pixels or editor.settings.pixels, 2 * editor.vq.factor)
    small = rgb.resize(size, Image.Resampling.LANCZOS)
    key = (size, hashlib.blake2b(small.tobytes(), digest_size=16).digest())
    with _errors_lock:
        known = _errors.setdefault(editor.vq, collections.OrderedDict())
        if key in known:
            known.move_to_end(key)
            return known[key]
    x = image_to_tensor(small).to(editor.device)
    back = editor.vq.decode(editor.vq.encode(x))
    if back.shape[-2:] != x.shape[-2:]:  # a super-resolving decoder draws at a multiple of the size: averaged back
        back = torch.nn.functional.interpolate(back, size=x.shape[-2:], mode="area")
    error = float((back - x).abs().mean())
    with _errors_lock:
        known[key] = error
        while len(known) > ERRORS_KEPT:
            known.popitem(last=False)
    return error


def instruction_words(instruction: str) -> list[str]:
    return [w.lower() for w in re.findall(r"\w+", instruction or "") if not w.isdigit()]


def check_instruction(domain: dict, instruction: str) -> Notice | None:
    """A notice when the instruction's words are mostly (or all) ones the model never saw in training."""
    vocabulary = set(domain.get("vocabulary") or ())
    if not vocabulary:
        return None
    found = instruction_words(instruction)
    unknown = list(dict.fromkeys(w for w in found if w not in vocabulary))
    known = sum(w in vocabulary for w in found) / len(found) if found else 0.0
    if not found:
        what = "The instruction has no words the model knows (only symbols or emoji)"
    elif known >= MIN_KNOWN_SHARE and len(unknown) <= max(1, int(STRAY_SHARE * len(found))):
        return None  # a stray word ("kindly") is passed over by the model; not worth a warning
    else:
        shown = ", ".join(f"'{w}'" for w in unknown[:6]) + (", ..." if len(unknown) > 6 else "")
        what = f"The model never saw {len(unknown)} of the instruction's words in training ({shown})"
    text = (
        f"{what}; it was trained on {domain.get('trained_on', 'a narrow domain')}, so the edit is a guess. "
        f"Try words like 'make the red circle blue', or for free-form instructions {advice(domain)}."
    )
    return Notice("instruction", text, known)


def check_image(editor: Editor, image: Image.Image, pixels: int | None = None) -> Notice | None:
    """A notice when the image's VQ round-trip error is above the model's training images' limit."""
    domain = domain_of(editor)
    limit = domain.get("vq_error")
    if not limit:
        return None
    error = vq_error(editor, image, pixels)
    if error <= limit:
        return None
    text = (
        f"This image is unlike anything the model was trained on ({domain.get('trained_on', 'a narrow domain')}): "
        f"its tokenizer reproduces it with error {error:.3f} against at most {limit:.3f} on its training images, so "
        f"expect blocky, wrong colours. To edit photos, {advice(domain)}."
    )
    return Notice("image", text, error)


def check(
    editor: Editor, image: Image.Image, instruction: str, *, pixels: int | None = None, strict: bool = False
) -> list[Notice]:
    """Every out-of-domain notice for an edit's inputs; strict raises OutOfDomainError instead of returning any."""
    notices = [n for n in (check_image(editor, image, pixels), check_instruction(domain_of(editor), instruction)) if n]
    if strict and notices:
        raise OutOfDomainError("strict mode: " + " ".join(n.text for n in notices))
    return notices


# ---------------------------------------------------------------------------------------------------- calibration


def world_vocabulary(seed: int, n: int = 20000, phrasing: str | None = None) -> list[str]:
    """Every word of n world instructions (the generator's templates, colours, shapes, positions, backgrounds), worded
    as the model was trained: `phrasing` as the trainer's --phrasing (None or "": the templates alone)."""
    from editmgt_core.world import samples

    found = set()
    for i in range(n):
        found.update(instruction_words(samples.record(seed, i, phrasing=phrasing or None).instruction))
    return sorted(found)


def photo_like(rng: np.random.Generator, kind: str, size: int = 256) -> Image.Image:
    """Images the world never draws: noisy gradients, textures, blurred scenes with many soft colours."""
    import cv2

    u = np.linspace(0, 1, size, dtype=np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == "noisy_gradient":
        x = c0 * (1 - u[:, None, None]) + c1 * u[:, None, None] + rng.normal(0, 18, (size, size, 3))
    elif kind == "texture":
        x = cv2.resize(rng.uniform(0, 255, (size // 8, size // 8, 3)).astype(np.float32), (size, size))
        x += rng.normal(0, 25, (size, size, 3))
    elif kind == "noise":
        x = rng.uniform(0, 255, (size, size, 3))
    elif kind == "scene":  # a sky gradient, a horizon, soft blobs, grain: a photo's statistics at a glance
        horizon = int(size * rng.uniform(0.4, 0.7))
        x = np.empty((size, size, 3), np.float32)
        x[:horizon] = c0 * (1 - u[:horizon, None, None] * 0.6) + 40
        x[horizon:] = c1 * (0.5 + 0.5 * u[horizon:, None, None])
        for _ in range(int(rng.integers(5, 15))):
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.circle(x, centre, int(rng.integers(4, size // 5)), rng.uniform(0, 255, 3).tolist(), -1)
        x = cv2.GaussianBlur(x, (0, 0), 2.0) + rng.normal(0, 8, (size, size, 3))
    else:
        raise ValueError(f"unknown photo-like kind {kind!r}")
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


PHOTO_KINDS = ("noisy_gradient", "texture", "noise", "scene")


def calibrate(editor: Editor, seed: int, n: int = 200, margin: float = 1.25) -> dict:
    """VQ round-trip errors of n world sources and n photo-like images (seed's stream). The limit is margin x the
    world's largest error (no world image is flagged); the report says which share of each photo-like kind lies
    above it (a smooth gradient is close to the world's own gradient backgrounds and may pass)."""
    from editmgt_core.world import samples

    side = int(round(editor.settings.pixels**0.5))
    # at the working side and at 4x it (uploads of world pictures are larger and downscaled to the working size)
    worlds = [
        vq_error(editor, Image.fromarray(samples.record(seed, i, size=side * (1 + 3 * (i % 2))).src)) for i in range(n)
    ]
    limit = round(margin * max(worlds), 4)
    rng = np.random.default_rng(seed)
    photos = {k: [vq_error(editor, photo_like(rng, k)) for _ in range(n // len(PHOTO_KINDS))] for k in PHOTO_KINDS}
    return {
        "seed": seed,
        "world": {"median": float(np.median(worlds)), "p99": float(np.percentile(worlds, 99)), "max": max(worlds)},
        "photo_like": {k: summary(v, limit) for k, v in photos.items()},
        "vq_error": limit,
    }


def summary(errors: list[float], limit: float) -> dict:
    return {"min": min(errors), "median": float(np.median(errors)), "flagged": float(np.mean(np.array(errors) > limit))}


def main(argv: list[str] | None = None) -> None:
    from editmgt_core.model.loading import load_editor

    p = argparse.ArgumentParser(description="Derive a model's domain: instruction vocabulary and VQ-error limit.")
    p.add_argument("--model", default="editmgt_core/assets/default-model")
    p.add_argument("--seed", type=int, default=555, help="world seed for images and instructions (not 2027)")
    p.add_argument("--n", type=int, default=200, help="images of each side")
    p.add_argument(
        "--phrasing",
        default="",
        help="the wording the model was trained on (the trainer's --phrasing: "
        "'' the templates, 'mixed' templates and the training families); sets the vocabulary",
    )
    p.add_argument("--write", action="store_true", help="store the result in the model's editmgt_studio.json")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    editor = load_editor(args.model)
    report = calibrate(editor, args.seed, args.n)
    print(json.dumps(report, indent=1))
    if args.write:
        path = editor.root / SETTINGS_NAME
        settings = json.loads(path.read_text())
        settings["domain"] = {
            "trained_on": "small synthetic pictures of coloured shapes (circles, squares, stars...) on plain, "
            "striped, checked or gradient backgrounds",
            "vq_error": report["vq_error"],
            "vocabulary": world_vocabulary(args.seed, phrasing=args.phrasing),
        }
        path.write_text(json.dumps(settings, indent=2) + "\n")
        print(f"wrote domain to {path}")


if __name__ == "__main__":
    main()

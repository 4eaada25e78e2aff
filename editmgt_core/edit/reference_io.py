"""The reference's `infer.py` around the pipeline, for reference-compatible runs: how an input becomes the pipeline's
image and text, and how the pipeline's output becomes the saved picture.

infer.py squashes any input to the pipeline's square size with PIL's default filter (BICUBIC for RGB; the aspect
ratio is not kept), passes the instruction exactly as typed (runs of spaces included), encodes the negative prompt
and the instruction in separate calls, decodes with any leftover mask id read as token 0, rounds `x * 255` half to
even (numpy's round), and resizes the result back to the input's size with the same default filter. The micro-
conditions are the square size, never the input's own.

PIL's two-pass resize runs its passes in an order that changed in Pillow 13: a resize that reduces the height much
more than the width runs the vertical pass first there (the 8-bit result between passes makes the order show, by up
to 8 levels). The reference fixtures were made with Pillow 13; on an older Pillow `pil_resize` runs the two passes
itself in that order.
"""

from __future__ import annotations

import math

import numpy as np
import PIL
import torch
from PIL import Image
from torch import Tensor

from ..model.encoders import TextFeatures

PILLOW_PASS_ORDER = 13  # the first Pillow major version that picks the pass order itself
# On an older Pillow the passes run vertical first when the height's scale is below this share of the width's: an
# approximation of Pillow 13's "much more" (its exact threshold is not reproduced here); it gives the 900x600
# fixture's PNG exactly (1024 -> 600 rows against 1024 -> 900 columns)
VERTICAL_FIRST = 0.9


def pil_resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image.resize(size)` with PIL's default filter, in the pass order Pillow 13 uses on any Pillow."""
    (w, h), (tw, th) = image.size, size
    if int(PIL.__version__.split(".")[0]) >= PILLOW_PASS_ORDER or th >= h or tw == w:
        return image.resize(size)
    if th / h < VERTICAL_FIRST * tw / w:
        return image.resize((w, th)).resize((tw, th))
    return image.resize(size)


def square_size(pixels: int, multiple: int) -> tuple[int, int]:
    """The pipeline's (side, side) for a working pixel count: 1024 for the published model's 1024^2."""
    side = max(multiple, round(math.sqrt(pixels) / multiple) * multiple)
    return side, side


def squash(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image.resize(size)` with PIL's default filter, as infer.py calls it (an unchanged copy at that size)."""
    return pil_resize(image, size)


def encode_text(text_encoder, negative_prompt: str, instruction: str) -> TextFeatures:
    """Rows [negative prompt, instruction], each encoded on its own as the reference pipeline does."""
    rows = [text_encoder([negative_prompt]), text_encoder([instruction])]
    return TextFeatures(
        torch.cat([r.txt for r in rows]),
        torch.cat([r.pooled for r in rows]),
        torch.cat([r.real for r in rows]),
        [o for r in rows for o in r.offsets],
    )


def decodable(tokens: Tensor, mask_id: int) -> Tensor:
    """The grid the reference decodes: a leftover mask id becomes token 0."""
    return torch.where(tokens == mask_id, torch.zeros_like(tokens), tokens)


def to_image(pixels: Tensor) -> Image.Image:
    """[1, 3, H, W] in [0, 1] -> 8-bit RGB, `round(x * 255)` half to even as the reference's postprocess."""
    arr = pixels[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy()
    return Image.fromarray(np.round(arr * 255).astype(np.uint8))


def resize_back(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The result at the input's size, as infer.py resizes it (PIL's default filter)."""
    return pil_resize(image, size)

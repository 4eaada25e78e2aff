"""Edit metrics as pure functions: pixel distances, leakage, success, IoU, and CLIP / DINO embedding similarities.

Images are float [H, W, 3] arrays in [0, 1] (`to_unit` converts PIL images and uint8 arrays); masks are bool [H, W].

Embedding metrics follow the benchmark scripts (MagicBrush `evaluation/image_eval.py`, used for Emu Edit too):
- CLIP-I: cosine of the CLIP image embeddings (projected) of output and reference image.
- CLIP-out: cosine of the CLIP image embedding of the output and the CLIP text embedding of the output caption.
- DINO: cosine of the DINO ViT CLS features (after the final layer norm) of output and reference image.
Preprocessing is done here with PIL, equal to the scripts' torchvision transforms: CLIP as OpenAI's `clip.load`
(bicubic resize of the short side to the model's image size, centre crop, CLIP mean/std); DINO as MagicBrush's
(bicubic resize of the short side to 256/224 of the image size, centre crop, ImageNet mean/std). Doing it here keeps
the numbers independent of which backend (torchvision or PIL) transformers' image processors pick.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_RESIZE = 256 / 224  # MagicBrush: Resize(256) then CenterCrop(224)


def to_unit(image: Image.Image | np.ndarray) -> np.ndarray:
    """PIL image or uint8/float array -> float32 [H, W, 3] in [0, 1]."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)


def _check_same(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}; resize one first")


def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel difference over all pixels and channels, in [0, 1] (the benchmarks' L1)."""
    _check_same(a, b)
    return float(np.abs(a - b).mean())


def masked_l1(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean absolute difference over the pixels where mask is True (all channels); None when mask is empty."""
    _check_same(a, b)
    if mask.shape != a.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {a.shape[:2]}")
    if not mask.any():
        return None
    return float(np.abs(a[mask] - b[mask]).mean())


def leakage(out: np.ndarray, src: np.ndarray, edit_mask: np.ndarray) -> float | None:
    """Mean absolute change from the source outside the edit region (edit_mask True = may change), in [0, 1].
    None when the edit region covers the whole image."""
    return masked_l1(out, src, ~edit_mask)


def far_change(out: np.ndarray, src: np.ndarray, edit_mask: np.ndarray, margin: int) -> float | None:
    """Mean absolute change from the source farther than `margin` pixels from the edit region (the mask dilated by
    a square of that radius): drift the edit has no business making, beyond the cells the edit's tokens share
    with their neighbours. None when nothing is that far."""
    import cv2

    near = cv2.dilate(edit_mask.astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0
    return masked_l1(out, src, ~near)


def other_objects(src: np.ndarray, edit_mask: np.ndarray, margin: int) -> np.ndarray:
    """bool [H, W]: pixels of the source's other objects, i.e. not the background colour (the image's most common
    colour) and farther than `margin` pixels from the edit region (world images: flat backgrounds)."""
    import cv2

    flat = (src.reshape(-1, src.shape[-1]) * 255 + 0.5).astype(np.uint8)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    background = colours[counts.argmax()].astype(np.float32) / 255
    objects = np.abs(src - background).max(-1) > 0.1
    near = cv2.dilate(edit_mask.astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0
    return objects & ~near


def touches_other(
    out: np.ndarray, src: np.ndarray, others: np.ndarray, min_change: float = 0.1, share: float = 0.05
) -> bool | None:
    """The edit changed another object: more than `share` of the other objects' pixels changed by more than
    min_change in some channel. None when the image has no other object."""
    if not others.any():
        return None
    return bool((np.abs(out - src).max(-1)[others] > min_change).mean() > share)


def changed(src: np.ndarray, tgt: np.ndarray, min_change: float) -> np.ndarray:
    """bool [H, W]: pixels whose largest channel difference between source and target exceeds min_change."""
    _check_same(src, tgt)
    return np.abs(src - tgt).max(-1) > min_change


def edit_success(
    out: np.ndarray,
    src: np.ndarray,
    tgt: np.ndarray,
    edit_mask: np.ndarray,
    *,
    max_error: float = 0.1,
    min_change: float = 0.1,
) -> tuple[bool, dict]:
    """Did the edit do what the ground truth says? Judged from pixels inside the edit region.

    Success iff both
    - on the pixels the edit really changes (inside edit_mask, source and target differ by more than min_change
      in some channel; the whole edit_mask when there are none), the output is closer to the target than to the
      source: mean |out - tgt| < mean |out - src|;
    - over the whole edit region the output matches the target: mean |out - tgt| <= max_error.
    Returns (success, {"to_target", "to_source", "error"}) with the three means.
    """
    region = edit_mask & changed(src, tgt, min_change)
    if not region.any():
        region = edit_mask
    to_target, to_source = masked_l1(out, tgt, region), masked_l1(out, src, region)
    error = masked_l1(out, tgt, edit_mask)
    if error is None:
        raise ValueError("the edit mask is empty")
    ok = to_target < to_source and error <= max_error
    return bool(ok), {"to_target": to_target, "to_source": to_source, "error": error}


def upsample_map(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Token-grid map float [h, w] -> float [H, W] at size = (W, H), bilinear (half-pixel centres)."""
    import cv2

    return cv2.resize(np.asarray(scores, dtype=np.float32), size, interpolation=cv2.INTER_LINEAR)


def iou(a: np.ndarray, b: np.ndarray) -> float | None:
    """Intersection over union of two bool masks; None when both are empty."""
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    return None if union == 0 else float(np.logical_and(a, b).sum() / union)


def map_iou(scores: np.ndarray, edit_mask: np.ndarray, threshold: float = 0.5) -> float | None:
    """IoU of the localization map (upsampled to the mask's size, scores >= threshold) with the edit mask."""
    h, w = edit_mask.shape
    return iou(upsample_map(scores, (w, h)) >= threshold, edit_mask)


def exact_map_iou(
    edit_mask: np.ndarray, grid: tuple[int, int], tokens: tuple[int, int], threshold: float = 0.5
) -> float | None:
    """The map_iou of a map that is exact at the attention grid's resolution: each of the grid's cells holds the
    share of it the edit covers, brought to the token grid as the consolidated map is (bicubic) and scored as
    `map_iou` scores a map: a reference for what a map of that resolution can reach, whatever the model (not a
    strict bound: another map or threshold may score a little more)."""
    import cv2

    from ..sampler.consolidate import upsample

    share = cv2.resize(edit_mask.astype(np.float32), (grid[1], grid[0]), interpolation=cv2.INTER_AREA)
    return map_iou(upsample(torch.from_numpy(share)[None], tokens)[0].numpy(), edit_mask, threshold)


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine similarity of [N, D] and [N, D] (or [1, D] broadcast) -> [N]."""
    a, b = a.float(), b.float()
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-12)


def preprocess(
    images: list[Image.Image], size: int, resize: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> Tensor:
    """PIL images -> float [N, 3, size, size]: bicubic resize of the short side to `resize`, centre crop to `size`,
    scale to [0, 1], normalize with mean/std (torchvision's Resize + CenterCrop + ToTensor + Normalize)."""
    out = []
    for image in images:
        image = image.convert("RGB")
        w, h = image.size
        # torchvision: the short side becomes `resize`, the long side int(resize * long / short)
        nw, nh = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
        image = image.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
        image = image.crop((left, top, left + size, top + size))
        out.append((to_unit(image) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


@torch.inference_mode()
def clip_image_features(model, images: list[Image.Image]) -> Tensor:
    """CLIPModel -> projected image embeddings [N, D] (float32, on CPU)."""
    size = model.config.vision_config.image_size
    pixels = preprocess(images, size, size, CLIP_MEAN, CLIP_STD).to(model.device, model.dtype)
    return model.get_image_features(pixel_values=pixels).pooler_output.float().cpu()


@torch.inference_mode()
def clip_text_features(model, tokenizer, texts: list[str]) -> Tensor:
    """CLIPModel + its tokenizer -> projected text embeddings [N, D]; texts truncated to the model's context."""
    limit = model.config.text_config.max_position_embeddings
    batch = tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
    batch = {k: v.to(model.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
    return model.get_text_features(**batch).pooler_output.float().cpu()


@torch.inference_mode()
def dino_features(model, images: list[Image.Image]) -> Tensor:
    """ViTModel (DINO weights) -> CLS features after the final layer norm [N, D]."""
    size = model.config.image_size
    pixels = preprocess(images, size, round(size * DINO_RESIZE), IMAGENET_MEAN, IMAGENET_STD)
    hidden = model(pixel_values=pixels.to(model.device, model.dtype)).last_hidden_state
    return hidden[:, 0].float().cpu()

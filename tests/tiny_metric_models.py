"""Tiny random CLIP and DINO (ViT) models saved as folders, for metric tests (nothing is downloaded).

CLIP sees 32x32 images (so 32x32 inputs need no resampling); DINO sees 28x28 images after the benchmark's
resize-to-256/224 (28 -> 32) and centre crop, so a 32x32 input is cropped to [2:30, 2:30] without resampling.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

CLIP_SIZE, DINO_SIZE = 32, 28


def make_clip(folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    text = dict(
        vocab_size=len(tokens),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=32,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = dict(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=CLIP_SIZE,
        patch_size=8,
    )
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=12)).save_pretrained(folder)
    return folder


def make_dino(folder: Path) -> Path:
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=DINO_SIZE,
        patch_size=7,
    )
    torch.manual_seed(1)
    ViTModel(cfg, add_pooling_layer=False).save_pretrained(folder)
    return folder


def clip_pixels(images: list[np.ndarray]) -> torch.Tensor:
    """Hand preprocessing of 32x32 uint8 images for the tiny CLIP: only scaling and the CLIP mean/std."""
    mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
    x = np.stack([(a.astype(np.float32) / 255 - mean) / std for a in images])
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def dino_pixels(images: list[np.ndarray]) -> torch.Tensor:
    """Hand preprocessing of 32x32 uint8 images for the tiny DINO: centre crop 28, ImageNet mean/std."""
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    x = np.stack([(a[2:30, 2:30].astype(np.float32) / 255 - mean) / std for a in images])
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def cos(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    a, b = a.detach().double().numpy(), b.detach().double().numpy()
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)

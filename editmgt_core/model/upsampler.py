"""The super-resolving head of the VQ decoder: the same tokens decoded to `scale` times the decoder's own size.

A diffusers `VQModel` decodes 16x16 tokens to 64x64 pixels (its up blocks mirror the encoder's down blocks, so its
output factor is fixed by the tokenizer). The head reads the decoder's last feature map (after `conv_act`, before
`conv_out`) and adds a residual, drawn by sub-pixel convolutions, to the decoder's own image upscaled bicubically:

    base = bicubic(conv_out(h), scale)                    # (B, 3, S*H, S*W)
    img  = base + shuffle(conv(silu(conv(... h ...))))     # one 2x pixel-shuffle stage per factor of 2

The last convolution starts at zero, so an untrained head returns exactly the bicubic upscale of the decoder it was
added to. The tokens, the encoder and the codebook are untouched: a transformer trained on them still fits.

Files in a vqvae folder: `upsampler.json` (an `UpsamplerConfig`) and `upsampler.safetensors` (its weights).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

CONFIG_NAME = "upsampler.json"
WEIGHTS_NAME = "upsampler.safetensors"


@dataclass(frozen=True)
class UpsamplerConfig:
    scale: int = 4  # output pixels per decoder pixel along each side; a power of 2
    in_channels: int = 16  # the decoder's last feature width (block_out_channels[0])
    width: int = 32  # feature width at the decoder's resolution
    fine_width: int = 16  # feature width after each 2x stage but the last


class Upsampler(nn.Module):
    """features h (B, C, H, W) and the decoder's image y (B, 3, H, W) -> image (B, 3, scale*H, scale*W)."""

    def __init__(self, cfg: UpsamplerConfig):
        super().__init__()
        stages = round(math.log2(cfg.scale))
        if cfg.scale < 2 or 2**stages != cfg.scale:
            raise ValueError(f"upsampler scale must be a power of 2 >= 2, got {cfg.scale}")
        self.cfg = cfg
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.width, 3, padding=1)
        self.conv_mid = nn.Conv2d(cfg.width, cfg.width, 3, padding=1)
        widths = [cfg.width] + [cfg.fine_width] * (stages - 1)
        outs = [cfg.fine_width] * (stages - 1) + [3]
        # stage i: conv to 4x its output width, then a 2x pixel shuffle; a 3x3 conv refines between stages
        self.expand = nn.ModuleList(nn.Conv2d(w, 4 * o, 3, padding=1) for w, o in zip(widths, outs, strict=True))
        self.refine = nn.ModuleList(nn.Conv2d(o, o, 3, padding=1) for o in outs[:-1])
        nn.init.zeros_(self.expand[-1].weight)
        nn.init.zeros_(self.expand[-1].bias)

    def forward(self, h: Tensor, y: Tensor) -> Tensor:
        base = F.interpolate(y, scale_factor=self.cfg.scale, mode="bicubic", align_corners=False)
        x = F.silu(self.conv_mid(F.silu(self.conv_in(h))))
        for i, expand in enumerate(self.expand):
            x = F.pixel_shuffle(expand(x), 2)
            if i < len(self.refine):
                x = F.silu(self.refine[i](F.silu(x)))
        return base + x


def decoder_features(vq, quant: Tensor) -> tuple[Tensor, Tensor]:
    """(features (B, C, H, W) before conv_out, the decoder's image (B, 3, H, W)) of a diffusers VQModel for
    quantized latents (B, D, h, w); the same image as `vq.decode(quant, force_not_quantize=True)` for group norm."""
    dec = vq.decoder
    x = dec.conv_in(vq.post_quant_conv(quant))
    x = dec.mid_block(x, None)
    for block in dec.up_blocks:
        x = block(x, None)
    h = dec.conv_act(dec.conv_norm_out(x))
    return h, dec.conv_out(h)


def save_upsampler(head: Upsampler, folder: Path) -> None:
    """Write upsampler.json and upsampler.safetensors into a vqvae folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(head.cfg), indent=1))
    save_file({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, folder / WEIGHTS_NAME)


def load_upsampler(folder: Path) -> Upsampler | None:
    """The folder's upsampler in eval mode, or None when it has none (the decoder then decodes at its own size)."""
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        return None
    if not (folder / WEIGHTS_NAME).is_file():
        raise ValueError(f"{folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}")
    cfg = UpsamplerConfig(**json.loads((folder / CONFIG_NAME).read_text()))
    head = Upsampler(cfg)
    head.load_state_dict(load_file(folder / WEIGHTS_NAME))
    return head.eval()

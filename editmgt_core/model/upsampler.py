"""The super-resolving head of the VQ decoder: the same tokens decoded to `scale` times the decoder's own size.

A diffusers `VQModel` decodes 16x16 tokens to 64x64 pixels (its up blocks mirror the encoder's down blocks, so its
output factor is fixed by the tokenizer). The head reads the decoder's last feature map (after `conv_act`, before
`conv_out`) and adds a residual, drawn by sub-pixel convolutions, to the decoder's own image upscaled bicubically:

    base = bicubic(conv_out(h), scale)                    # (B, 3, S*H, S*W)
    x    = silu(conv(silu(conv(h)) + trunk(quant)))       # features at the decoder's size
    img  = base + shuffle(conv(... x ...))                # one 2x pixel-shuffle stage per factor of 2

The trunk (optional: `trunk_width` > 0) reads the quantized tokens themselves through residual convolutions at the
token grid, where a few layers see a whole object, and brings them to the decoder's size by pixel shuffles: the
decoder alone is too small to know which shape a cluster of tokens draws. Its last convolution starts at zero, as
does the head's, so an untrained head returns exactly the bicubic upscale of the decoder it was added to, and a
trunk added to a trained head starts as that head. The tokens, the encoder and the codebook are untouched: a
transformer trained on them still fits.

Files in a vqvae folder: `upsampler.json` (an `UpsamplerConfig`) and `upsampler.safetensors` (its weights).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
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
    trunk_width: int = 0  # the token trunk's width at the token grid (0: no trunk)
    trunk_blocks: int = 4  # residual blocks (two 3x3 convolutions each) of the trunk
    trunk_factor: int = 4  # decoder pixels per token along each side (the trunk's pixel-shuffle stages)
    trunk_codes: int = 0  # > 0: the trunk reads token ids through an embedding of this many codes, not their vectors


class Trunk(nn.Module):
    """tokens (B, D, h, w) quantized vectors, or (B, h, w) ids with `trunk_codes` -> features (B, cfg.width, f*h,
    f*w) at the decoder's size (f: cfg.trunk_factor)."""

    def __init__(self, cfg: UpsamplerConfig, token_dim: int):
        super().__init__()
        stages = round(math.log2(cfg.trunk_factor))
        if cfg.trunk_factor < 2 or 2**stages != cfg.trunk_factor or cfg.trunk_width % 2**stages:
            raise ValueError(
                f"trunk_factor must be a power of 2 >= 2 dividing trunk_width, got {cfg.trunk_factor} and "
                f"{cfg.trunk_width}"
            )
        w = cfg.trunk_width
        # an embedding gives every code features of its own: codes whose vectors lie close (an edge a fraction of
        # a pixel further on) need not start alike
        self.embed = nn.Embedding(cfg.trunk_codes, w) if cfg.trunk_codes else None
        self.conv_in = nn.Conv2d(w if cfg.trunk_codes else token_dim, w, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Conv2d(w, w, 3, padding=1), nn.SiLU(), nn.Conv2d(w, w, 3, padding=1))
            for _ in range(cfg.trunk_blocks)
        )
        for block in self.blocks:  # each block starts near the identity
            nn.init.normal_(block[-1].weight, std=1e-3)
            nn.init.zeros_(block[-1].bias)
        widths = [w // 2**i for i in range(stages + 1)]
        self.up = nn.ModuleList(nn.Conv2d(a, 4 * b, 3, padding=1) for a, b in zip(widths, widths[1:], strict=False))
        self.proj = nn.Conv2d(widths[-1], cfg.width, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens: quantized vectors (B, D, h, w), or token ids (B, h, w) when the trunk embeds codes."""
        t = self.conv_in(tokens if self.embed is None else self.embed(tokens).permute(0, 3, 1, 2))
        for block in self.blocks:
            t = t + block(t)
        for up in self.up:
            t = F.pixel_shuffle(up(F.silu(t)), 2)
        return self.proj(F.silu(t))


class Upsampler(nn.Module):
    """features h (B, C, H, W) and the decoder's image y (B, 3, H, W) -> image (B, 3, scale*H, scale*W); with a
    trunk, also the quantized tokens (B, D, H/f, W/f) it reads."""

    def __init__(self, cfg: UpsamplerConfig, token_dim: int = 16):
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
        self.trunk = Trunk(cfg, token_dim) if cfg.trunk_width else None

    def features(self, h: Tensor, quant: Tensor | None = None) -> Tensor:
        """The features at the decoder's size that the 2x stages draw from."""
        x = F.silu(self.conv_in(h))
        if self.trunk is not None:
            if quant is None:
                raise ValueError("this upsampler has a token trunk: pass the quantized tokens")
            x = x + self.trunk(quant)
        return F.silu(self.conv_mid(x))

    def forward(self, h: Tensor, y: Tensor, quant: Tensor | None = None) -> Tensor:
        return self.draw(self.features(h, quant), y)

    def decode(self, vq, quant: Tensor, ids: Tensor | None = None) -> Tensor:
        """The image of quantized latents (B, D, h, w) through the decoder of diffusers VQModel `vq` and this head;
        `ids` (B, h, w), the latents' code ids where the caller has them."""
        h, y = decoder_features(vq, quant)
        return self(h, y, self.trunk_input(vq, quant, ids))

    def trunk_input(self, vq, quant: Tensor, ids: Tensor | None = None) -> Tensor:
        """What the trunk reads of quantized latents: the latents, or their codes' ids when it embeds codes (`ids`
        when given, else the nearest codes of `quant`, which are exact)."""
        if self.trunk is None or self.trunk.embed is None:
            return quant
        if ids is not None:
            return ids.view(quant.shape[0], *quant.shape[2:])
        b, d, h, w = quant.shape
        ids = torch.cdist(quant.permute(0, 2, 3, 1).reshape(-1, d), vq.quantize.embedding.weight).argmin(1)
        return ids.view(b, h, w)

    def draw(self, x: Tensor, y: Tensor) -> Tensor:
        """features x (from `features`) and the decoder's image y -> the image at `scale` times their size."""
        base = F.interpolate(y, scale_factor=self.cfg.scale, mode="bicubic", align_corners=False)
        for i, expand in enumerate(self.expand):
            x = F.pixel_shuffle(expand(x), 2)
            if i < len(self.refine):
                x = F.silu(self.refine[i](F.silu(x)))
        return base + x


def codebook_width(vq_config) -> int:
    """The width of a diffusers VQModel's code vectors, from its config (a mapping): what a trunk reads."""
    return vq_config.get("vq_embed_dim") or vq_config.get("latent_channels") or 16


def fitted_config(vq_config, codes: bool = False, **fields) -> UpsamplerConfig:
    """An UpsamplerConfig that fits a diffusers VQModel's config: its decoder's last feature width, its pixels per
    token, and (`codes`: a trunk that embeds token ids) its codebook's size; `fields` set the rest."""
    return UpsamplerConfig(
        in_channels=vq_config["block_out_channels"][0],
        trunk_factor=2 ** (len(vq_config["block_out_channels"]) - 1),
        trunk_codes=vq_config["num_vq_embeddings"] if codes else 0,
        **fields,
    )


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


def load_upsampler(folder: Path, token_dim: int | None = None) -> Upsampler | None:
    """The folder's upsampler in eval mode, or None when it has none (the decoder then decodes at its own size).
    token_dim: the codebook's vector width (default: the folder's config.json `vq_embed_dim`, else 16)."""
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        return None
    if not (folder / WEIGHTS_NAME).is_file():
        raise ValueError(f"{folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}")
    raw = json.loads((folder / CONFIG_NAME).read_text())
    known = {f.name for f in dataclasses.fields(UpsamplerConfig)}
    if set(raw) - known:
        raise ValueError(f"{folder / CONFIG_NAME}: unknown keys {sorted(set(raw) - known)}; known: {sorted(known)}")
    cfg = UpsamplerConfig(**raw)
    if token_dim is None:
        vq_cfg = folder / "config.json"
        token_dim = codebook_width(json.loads(vq_cfg.read_text()) if vq_cfg.is_file() else {})
    head = Upsampler(cfg, token_dim)
    head.load_state_dict(load_file(folder / WEIGHTS_NAME))
    return head.eval()

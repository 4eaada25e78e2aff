"""The VQ tokenizer's shape and its trainer's settings: `VQConfig` and its presets, `TrainConfig`, and building a
fresh diffusers `VQModel` or reading the config of a saved one."""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from diffusers import VQModel


@dataclass(frozen=True)
class VQConfig:
    block_out_channels: tuple[int, ...] = (16, 32, 64)  # 3 blocks -> downsampling factor 4 (64 px -> 16 tokens)
    layers_per_block: int = 1  # resnets per encoder block (decoder uses one more)
    latent_channels: int = 16  # encoder output / decoder input channels
    num_vq_embeddings: int = 128  # codebook size = image-token vocabulary (see the module note on code purity)
    vq_embed_dim: int = 16  # codebook vector size
    norm_num_groups: int = 8  # GroupNorm groups; must divide every block width
    mid_block_add_attention: bool = False  # attention at 16x16 costs ~10% time for no gain on this data
    sample_size: int = 64  # training image side in pixels


PRESETS = {
    "small": VQConfig(),
    "tiny": VQConfig(
        block_out_channels=(8, 16, 16),
        latent_channels=8,
        num_vq_embeddings=64,
        vq_embed_dim=8,
        norm_num_groups=4,
        sample_size=32,
    ),
}


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000  # total optimizer steps
    batch: int = 16  # images per step (half sources, half targets)
    lr: float = 1e-3  # peak Adam learning rate (linear warmup, cosine decay to 10%)
    warmup: int = 100  # warmup steps
    seed: int = 0  # world stream seed; held-out images use seed + 1_000_003
    restart_every: int = 200  # dead-code restart period (steps); 0 disables
    ckpt_every: int = 500  # checkpoint period (steps)
    log_every: int = 25  # log period (steps)
    eval_images: int = 256  # held-out images for the final report
    crop: int = 0  # before `crop_until`, train on random crop x crop patches (4x cheaper steps at 32); 0 = off
    crop_until: int = 0  # first step trained on full images again (the fully convolutional model transfers)
    decoder_from: str = ""  # a trained vqvae folder: train its decoder only (encoder and codebook frozen); "" = off


def build_vq(cfg: VQConfig) -> VQModel:
    """A fresh VQModel with len(block_out_channels) encoder/decoder blocks."""
    n = len(cfg.block_out_channels)
    if any(c % cfg.norm_num_groups for c in cfg.block_out_channels):
        raise ValueError(
            f"norm_num_groups={cfg.norm_num_groups} must divide block_out_channels={cfg.block_out_channels}"
        )
    return VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        sample_size=cfg.sample_size,
        num_vq_embeddings=cfg.num_vq_embeddings,
        norm_num_groups=cfg.norm_num_groups,
        vq_embed_dim=cfg.vq_embed_dim,
        mid_block_add_attention=cfg.mid_block_add_attention,
    )


def vq_config_of(folder: Path) -> VQConfig:
    """The VQConfig of a saved vqvae folder (its config.json)."""
    d = json.loads((folder / "config.json").read_text())
    fields = {f.name for f in dataclasses.fields(VQConfig)}
    return VQConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields})

"""Transformer configuration: a frozen dataclass, named presets, and the diffusers-style `config.json` mapping.

The published checkpoint (`WeiChow/EditMGT`, subfolder `editmgt`) stores the constructor kwargs of the reference
`Transformer2DModel`; `TransformerConfig.from_dict` reads exactly those keys and `to_dict` writes them back.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

# Keys of the reference config.json that carry no information for this implementation but must have these values.
_FIXED_KEYS = {"patch_size": 1, "guidance_embeds": False}
# Keys that are accepted and ignored (the reference stores them but never reads them for the architecture).
_IGNORED_KEYS = {"in_channels"}
_CONNECTORS = ("linear", "none")
# The reference scheduler's settings this implementation runs (sampler.schedule): the cosine masking schedule.
SCHEDULES = ("cosine",)
log = logging.getLogger("editmgt.model")
# Precision of the transformer and the text encoders, as the CLI and the app offer it (loading.resolve_dtype reads it).
DTYPE_CHOICES = ("fp32", "bf16", "fp16")
DTYPE_HELP = (
    "precision of the transformer and the text encoders; the VQ stays fp32 (default fp32, the reference's own; bf16 "
    "halves the memory, about 8 GB of weights for the published model, at a small cost in quality; fp16 overflows "
    "Gemma-2)"
)
# torch.compile modes for the transformer's blocks (loading.compile_transformer), offered as --compile besides "off"
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
COMPILE_HELP = (
    "torch.compile the transformer's blocks in this mode (default off; on a GPU 'reduce-overhead' adds CUDA graphs; "
    "the first edits pay for compiling; not measured to pay yet, see docs/published-model.md)"
)


def add_runtime_args(group) -> None:
    """--revision, --dtype, --compile and --offload on an argparse parser or group: one declaration for the app and
    the CLI."""
    group.add_argument(
        "--revision",
        default=None,
        help="a hub model's branch, tag or commit (default: main); the "
        "commit it resolves to is saved with every result",
    )
    group.add_argument("--dtype", choices=DTYPE_CHOICES, default="fp32", help=DTYPE_HELP)
    group.add_argument("--compile", choices=("off", *COMPILE_MODES), default="off", help=COMPILE_HELP)
    group.add_argument(
        "--offload",
        action="store_true",
        help="keep the text encoders on the CPU between encodings (the published model on a 16 GB card)",
    )


@dataclass(frozen=True)
class TransformerConfig:
    num_layers: int = 14  # dual-stream (text / image) blocks
    num_single_layers: int = 28  # single-stream blocks after them
    num_heads: int = 8  # attention heads
    head_dim: int = 128  # channels per head; inner width = num_heads * head_dim
    joint_attention_dim: int = 2304  # width of the text encoder's sequence features (Gemma-2-2B: 2304)
    pooled_projection_dim: int = 1024  # width of the pooled text vector (CLIP-L/14 projection: 1024)
    axes_dims_rope: tuple[int, int, int] = (16, 56, 56)  # RoPE channels per id axis (unused, row, column)
    vocab_size: int = 8256  # embedding rows: codebook ids, then the mask id as the last row
    codebook_size: int = 8192  # number of VQ codes the head predicts
    downsample: bool = True  # 2x2 token downsample before the blocks (and the matching upsample after)
    upsample: bool = True
    connector: str = "linear"  # text connector before the context embedder: "linear" or "none"
    text_encoder_architecture: str = "CLIP_Gemma2"  # informational; the editor reads its text stack from the folder

    def __post_init__(self):
        if sum(self.axes_dims_rope) != self.head_dim:
            raise ValueError(f"axes_dims_rope {self.axes_dims_rope} must sum to head_dim={self.head_dim}")
        if any(d % 2 for d in self.axes_dims_rope):
            raise ValueError(f"axes_dims_rope {self.axes_dims_rope} must all be even")
        if self.vocab_size <= self.codebook_size:
            raise ValueError(f"vocab_size={self.vocab_size} must exceed codebook_size={self.codebook_size} (mask id)")
        if self.connector not in _CONNECTORS:
            raise ValueError(f"connector={self.connector!r}; expected one of {_CONNECTORS}")
        if self.connector == "none" and self.joint_attention_dim != self.inner_dim:
            raise ValueError(
                f"without a connector joint_attention_dim ({self.joint_attention_dim}) must equal the inner width "
                f"({self.inner_dim})"
            )
        if self.downsample != self.upsample:
            raise ValueError("downsample and upsample must be both on or both off")

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def mask_id(self) -> int:
        return self.vocab_size - 1

    @property
    def depth(self) -> int:
        """Number of blocks; global block indices run 0..depth-1, dual-stream first."""
        return self.num_layers + self.num_single_layers

    @classmethod
    def from_dict(cls, d: dict) -> TransformerConfig:
        """Build from the reference's constructor kwargs (diffusers `config.json`); `_`-prefixed keys are ignored, and
        so are keys the architecture does not take, with one warning naming them (as the reference's loader does)."""
        d = {k: v for k, v in d.items() if not k.startswith("_")}
        for key, want in _FIXED_KEYS.items():
            if key in d and d.pop(key) != want:
                raise ValueError(f"config {key} must be {want!r} for this model")
        for key in _IGNORED_KEYS:
            d.pop(key, None)
        renames = {"num_attention_heads": "num_heads", "attention_head_dim": "head_dim", "connector_type": "connector"}
        d = {renames.get(k, k): v for k, v in d.items()}
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            log.warning("transformer config keys %s are not used by this architecture and are ignored", unknown)
            d = {k: v for k, v in d.items() if k in fields}
        if "axes_dims_rope" in d:
            d["axes_dims_rope"] = tuple(d["axes_dims_rope"])
        return cls(**d)

    def to_dict(self) -> dict:
        """The reference's constructor kwargs, so the folder also loads with the reference code."""
        return {
            "_class_name": "Transformer2DModel",
            "patch_size": 1,
            "in_channels": 64,
            "num_layers": self.num_layers,
            "num_single_layers": self.num_single_layers,
            "attention_head_dim": self.head_dim,
            "num_attention_heads": self.num_heads,
            "joint_attention_dim": self.joint_attention_dim,
            "pooled_projection_dim": self.pooled_projection_dim,
            "guidance_embeds": False,
            "axes_dims_rope": list(self.axes_dims_rope),
            "vocab_size": self.vocab_size,
            "codebook_size": self.codebook_size,
            "downsample": self.downsample,
            "upsample": self.upsample,
            "text_encoder_architecture": self.text_encoder_architecture,
            "connector_type": self.connector,
        }

    @classmethod
    def from_json(cls, path: str | Path) -> TransformerConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def check_scheduler(path: str | Path, config: TransformerConfig) -> dict:
    """Read a reference `scheduler_config.json` and check it against the transformer: its mask id must be the
    transformer's (the last embedding row) and its schedule one this sampler runs. Returns the file's dict."""
    d = json.loads(Path(path).read_text())
    mask = d.get("mask_token_id", config.mask_id)
    if mask != config.mask_id:
        raise ValueError(
            f"{path}: mask_token_id {mask!r} differs from the transformer's mask id {config.mask_id} "
            f"(vocab_size {config.vocab_size} - 1)"
        )
    schedule = d.get("masking_schedule", "cosine")
    if schedule not in SCHEDULES:
        raise ValueError(f"{path}: masking_schedule {schedule!r} is not supported; expected one of {SCHEDULES}")
    return d


PRESETS: dict[str, TransformerConfig] = {
    # The published EditMGT transformer (CLIP + Gemma-2-2B text, 1024 px, 64x64 tokens): 1,009,306,624 parameters.
    "editmgt": TransformerConfig(),
    # The Meissonic base model EditMGT starts from: CLIP text only, no connector.
    "meissonic": TransformerConfig(joint_attention_dim=1024, connector="none", text_encoder_architecture="CLIP"),
    # A tiny config for tests.
    "tiny": TransformerConfig(
        num_layers=2,
        num_single_layers=2,
        num_heads=2,
        head_dim=16,
        joint_attention_dim=40,
        pooled_projection_dim=24,
        axes_dims_rope=(4, 6, 6),
        vocab_size=72,
        codebook_size=64,
    ),
}

"""Transformer checkpoints: build from a diffusers-style folder (`config.json` + `*.safetensors`), load strictly, save.

Only safetensors are read; nothing is unpickled. The model is built on the meta device and its parameters are
assigned straight from the file, so loading a 4 GB checkpoint needs 4 GB, not 8.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .config import TransformerConfig
from .transformer import EditMGTTransformer

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"


class CheckpointError(ValueError):
    """A state dict that does not match the model, with every offending key named."""


def check_state_dict(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Raise CheckpointError naming missing, unexpected and wrongly shaped keys; return if all match exactly."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    problems = [
        f"{label} ({len(items)}): {', '.join(items[:20])}{' ...' if len(items) > 20 else ''}"
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
        if items
    ]
    if problems:
        raise CheckpointError("checkpoint does not match the model: " + "; ".join(problems))


def load_state_dict(model: nn.Module, state: dict[str, Tensor], dtype: torch.dtype | None = None) -> nn.Module:
    """Strictly load `state` into `model` and return it.

    A model on the meta device gets the file's tensors assigned (no second copy); a materialized model is updated
    in place, so optimizers holding its parameters keep working.
    """
    check_state_dict(model, state)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=any(p.is_meta for p in model.parameters()))
    return model


def read_weights(folder: Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """All tensors of a folder's safetensors weights (single file or sharded with an index)."""
    if (folder / INDEX_NAME).is_file():
        shards = sorted(set(json.loads((folder / INDEX_NAME).read_text())["weight_map"].values()))
    elif (folder / WEIGHTS_NAME).is_file():
        shards = [WEIGHTS_NAME]
    else:
        shards = sorted(p.name for p in folder.glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"no *.safetensors weights in {folder}")
    device = torch.device(device)
    device = "cpu" if device.type == "cpu" else str(device)  # safetensors rejects "cpu:0"
    state: dict[str, Tensor] = {}
    for name in shards:
        state.update(load_file(folder / name, device=device))
    return state


def load_transformer(
    folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> EditMGTTransformer:
    """Build the transformer described by `folder/config.json` and load its safetensors weights strictly."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {folder}")
    config = TransformerConfig.from_json(folder / "config.json")
    with torch.device("meta"):
        model = EditMGTTransformer(config)
    load_state_dict(model, read_weights(folder, device), dtype=dtype)
    return model.eval()


def save_transformer(
    model: EditMGTTransformer, folder: str | Path, dtype: torch.dtype | None = None, max_shard_mb: float | None = None
) -> Path:
    """Write `config.json` and the safetensors weights (optionally cast, e.g. fp16 for bundling).

    With max_shard_mb the weights are split into shards of at most that size plus the diffusers index file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if dtype is not None else v).contiguous() for k, v in model.state_dict().items()}
    limit = None if max_shard_mb is None else max_shard_mb * 2**20
    total = sum(v.numel() * v.element_size() for v in state.values())
    if limit is None or total <= limit:
        save_file(state, folder / WEIGHTS_NAME)
    else:
        shards, size = [{}], 0
        for k, v in state.items():
            nbytes = v.numel() * v.element_size()
            if shards[-1] and size + nbytes > limit:
                shards.append({})
                size = 0
            shards[-1][k] = v
            size += nbytes
        weight_map = {}
        for i, shard in enumerate(shards):
            name = f"diffusion_pytorch_model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, folder / name)
            weight_map.update(dict.fromkeys(shard, name))
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    (folder / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    return folder

"""Checkpoint folders: round trip, strict loading with every bad key named, sharded weights, dtype."""

import json

import pytest
import torch
from safetensors.torch import save_file

from editmgt_core.model.checkpoint import CheckpointError, load_state_dict, load_transformer, save_transformer
from editmgt_core.model.config import PRESETS
from editmgt_core.model.transformer import EditMGTTransformer


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = EditMGTTransformer(PRESETS["tiny"]).eval()
    return model, save_transformer(model, tmp_path / "editmgt")


def test_round_trip(saved):
    model, folder = saved
    loaded = load_transformer(folder)
    assert loaded.config == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert json.loads((folder / "config.json").read_text())["connector_type"] == "linear"


def test_load_in_bf16(saved):
    _, folder = saved
    assert load_transformer(folder, dtype=torch.bfloat16).project_to_hidden.weight.dtype == torch.bfloat16


def test_bad_keys_are_named(saved):
    model, _ = saved
    state = dict(model.state_dict())
    state.pop("mlm_layer.conv2.weight")
    state["extra.weight"] = torch.zeros(1)
    state["context_embedder.bias"] = torch.zeros(3)
    with torch.device("meta"):
        fresh = EditMGTTransformer(PRESETS["tiny"])
    with pytest.raises(CheckpointError) as err:
        load_state_dict(fresh, state)
    text = str(err.value)
    assert "missing keys (1): mlm_layer.conv2.weight" in text
    assert "unexpected keys (1): extra.weight" in text
    assert "context_embedder.bias: checkpoint (3,) vs model (32,)" in text


def test_sharded_folder(saved, tmp_path):
    model, _ = saved
    state = model.state_dict()
    keys = list(state)
    shards = {"a.safetensors": keys[: len(keys) // 2], "b.safetensors": keys[len(keys) // 2 :]}
    folder = tmp_path / "sharded"
    folder.mkdir()
    for name, names in shards.items():
        save_file({k: state[k].contiguous() for k in names}, folder / name)
    index = {"weight_map": {k: name for name, names in shards.items() for k in names}}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps(model.config.to_dict()))
    loaded = load_transformer(folder)
    assert torch.equal(loaded.mlm_layer.conv2.weight, model.mlm_layer.conv2.weight)


def test_missing_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_transformer(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(PRESETS["tiny"].to_dict()))
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_transformer(tmp_path)


def test_save_in_shards(tmp_path):
    torch.manual_seed(0)
    model = EditMGTTransformer(PRESETS["tiny"]).eval()
    folder = save_transformer(model, tmp_path / "sharded", dtype=torch.float16, max_shard_mb=0.1)
    shards = sorted(folder.glob("*.safetensors"))
    assert len(shards) > 1 and all(p.stat().st_size <= 0.1 * 2**20 + 4096 for p in shards)
    loaded = load_transformer(folder)
    torch.testing.assert_close(loaded.mlm_layer.conv2.weight, model.mlm_layer.conv2.weight.half().float())

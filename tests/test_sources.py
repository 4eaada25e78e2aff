"""Loading the published layout as the reference loads it: a copy of the folder the reference's own classes saved
(../shared/reference/pipeline/model), changed the ways a real checkpoint may differ; hub errors mocked (no network)."""

import json
import logging
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
from huggingface_hub import errors
from PIL import Image
from safetensors.torch import load_file, save_file

from editmgt_core.edit.editing import default_options, edit
from editmgt_core.edit.files import read_parameters, save_image
from editmgt_core.model.checkpoint import CheckpointError
from editmgt_core.model.loading import ModelNotFoundError, PickledWeightsError, load_editor, resolve

PUBLISHED_LAYOUT = Path(__file__).resolve().parents[2] / "shared" / "reference" / "pipeline" / "model"
needs_layout = pytest.mark.skipif(not PUBLISHED_LAYOUT.is_dir(), reason=f"no {PUBLISHED_LAYOUT}")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def copy_layout(dest: Path) -> Path:
    shutil.copytree(PUBLISHED_LAYOUT, dest)
    for p in dest.rglob("*"):
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
    return dest


@pytest.fixture
def folder(tmp_path):
    return copy_layout(tmp_path / "model")


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@needs_layout
def test_an_extra_config_key_is_named_once_and_ignored(folder, caplog):
    edit_json(folder / "editmgt" / "config.json", sample_size=64)
    with caplog.at_level(logging.WARNING, logger="editmgt.model"):
        editor = load_editor(folder)
    named = [r.getMessage() for r in caplog.records if "sample_size" in r.getMessage()]
    assert named == ["transformer config keys ['sample_size'] are not used by this architecture and are ignored"]
    assert editor.mask_id == 71 and editor.revision is None


@needs_layout
@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_weights_that_do_not_fit_are_refused_by_name(folder, change):
    path = folder / "editmgt" / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    key = sorted(state)[0]
    if change == "missing":
        del state[key]
    elif change == "unexpected":
        state["extra.weight"] = torch.zeros(2)
    else:
        state[key] = torch.zeros(*state[key].shape[:-1], state[key].shape[-1] + 1)
    save_file(state, path)
    name = {"missing": key, "unexpected": "extra.weight", "shape": key}[change]
    with pytest.raises(CheckpointError, match=f"{change if change != 'shape' else 'shape mismatch'}.*{name}"):
        load_editor(folder)


@needs_layout
def test_the_scheduler_config_must_agree_with_the_transformer(folder):
    path = folder / "scheduler" / "scheduler_config.json"
    edit_json(path, mask_token_id=70)
    with pytest.raises(ValueError, match="mask_token_id 70 differs from the transformer's mask id 71"):
        load_editor(folder)
    edit_json(path, mask_token_id=71, masking_schedule="linear")
    with pytest.raises(ValueError, match="masking_schedule 'linear' is not supported"):
        load_editor(folder)
    path.unlink()  # absent: the transformer's mask id and the cosine schedule
    assert load_editor(folder).mask_id == 71


@needs_layout
@pytest.mark.parametrize(
    "sub, weights", [("text_encoder", "model.safetensors"), ("editmgt", "diffusion_pytorch_model.safetensors")]
)
def test_pickled_only_weights_are_refused_unread_with_the_conversion(folder, sub, weights):
    (folder / sub / weights).unlink()
    (folder / sub / "pytorch_model.bin").write_bytes(b"not a pickle: loading it would fail differently")
    with pytest.raises(PickledWeightsError) as err:
        load_editor(folder)
    message = str(err.value)
    assert str(folder / sub) in message and "pytorch_model.bin" in message and "never loaded" in message
    assert "save_file(torch.load(" in message and "weights_only=True" in message and weights in message


def hub_error(cls, message="x"):
    if cls is errors.LocalEntryNotFoundError:
        return cls(message)
    return cls(message, response=SimpleNamespace(headers={}, request=None))


@pytest.mark.parametrize(
    "cls, expected",
    [
        (errors.GatedRepoError, "is gated: accept its licence on https://huggingface.co/some/model.*set HF_TOKEN"),
        (errors.RepositoryNotFoundError, "was not found on the hub: check the id"),
        (errors.RevisionNotFoundError, "has no revision 'v9': pass a branch, tag or commit"),
        (errors.LocalEntryNotFoundError, "not in the hub cache.*offline.*`hf download some/model .*--revision v9`"),
    ],
)
def test_hub_errors_are_told_apart(monkeypatch, cls, expected):
    def fail(repo_id, **kw):
        raise hub_error(cls)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
    with pytest.raises(ModelNotFoundError, match=expected):
        resolve("some/model", revision="v9")


@needs_layout
def test_the_resolved_commit_is_recorded_with_the_edit(monkeypatch, tmp_path):
    snapshot = copy_layout(tmp_path / "hub" / "models--some--model" / "snapshots" / COMMIT)
    asked = {}
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda repo_id, **kw: asked.update(kw, repo_id=repo_id) or str(snapshot)
    )
    editor = load_editor("some/model", revision="v1.0")
    assert (asked["repo_id"], asked["revision"], editor.revision) == ("some/model", "v1.0", COMMIT)
    image = Image.new("RGB", (64, 64), (200, 30, 30))
    result = edit(editor, image, "make it blue", default_options(editor, steps=1, seed=555), pixels=64 * 64)
    assert result.parameters()["revision"] == COMMIT and result.parameters()["model"] == "some/model"
    save_image(result.image, tmp_path / "out.png", result.parameters())
    assert read_parameters(tmp_path / "out.png")["revision"] == COMMIT
    with pytest.raises(ValueError, match="revision 'v1.0' applies to hub ids"):
        load_editor(snapshot, revision="v1.0")


def test_revision_reaches_load_editor_from_the_cli_and_the_app(monkeypatch):
    import argparse

    from editmgt_core.app import server as app
    from editmgt_core.cli import common
    from editmgt_core.model import loading

    asked = []

    def fake_load_editor(model, **kw):
        asked.append((model, kw["revision"]))
        raise ModelNotFoundError("stop here")

    monkeypatch.setattr(loading, "load_editor", fake_load_editor)
    monkeypatch.setattr(app, "load_editor", fake_load_editor)
    p = argparse.ArgumentParser()
    common.add_model_args(p)
    with pytest.raises(ModelNotFoundError):
        common.editor_from_args(p.parse_args(["--model", "some/model", "--revision", "abc123"]), device="cpu")
    with pytest.raises(SystemExit, match="stop here"):
        app.make_demo(app.parse_args(["--model", "some/model", "--revision", "v2", "--device", "cpu"]))
    monkeypatch.setenv("EDITMGT_MODEL", "some/model")
    monkeypatch.setenv("EDITMGT_REVISION", "f00d")  # the Space's pin, for the model it names
    with pytest.raises(SystemExit):
        app.make_demo(app.parse_args(["--device", "cuda"]))
    assert asked[:3] == [("some/model", "abc123"), ("some/model", "v2"), ("some/model", "f00d")]
    assert asked[3] == (app.DEFAULT_MODEL, None)  # the Space's fallback: the bundle, no revision


@needs_layout
@pytest.mark.parametrize(
    "sub, weights",
    [
        ("vqvae", "diffusion_pytorch_model.safetensors"),
        ("text_encoder", "model.safetensors"),
        ("llm_encoder", "model.safetensors"),
    ],
)
def test_the_vq_and_text_encoders_refuse_weights_that_do_not_fit(folder, sub, weights):
    """transformers and diffusers only warn and initialise missing weights at random; the loader refuses."""
    path = folder / sub / weights
    state = load_file(path)
    key = sorted(state)[1]
    del state[key]
    state["extra.weight"] = torch.zeros(2)
    save_file(state, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing keys") as err:
        load_editor(folder)
    message = str(err.value)
    assert key.split(".")[-2] in message and "extra.weight" in message and str(folder / sub) in message

"""The published model's path: the CPU warning, the Space's model choice, and (where the weights are) one real edit.

`real_weights` needs WeiChow/EditMGT in the local hub cache (`hf download WeiChow/EditMGT ...`, see
docs/published-model.md) and skips without it; `gpu` needs CUDA.
"""

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from editmgt_core.app import server as app
from editmgt_core.model.config import TransformerConfig
from editmgt_core.model.loading import PUBLISHED_ID, cpu_warning
from editmgt_core.model.transformer import EditMGTTransformer


def published_stand_in(device: str):
    """An Editor-shaped object with the published transformer's parameters on the meta device (no memory)."""
    with torch.device("meta"):
        transformer = EditMGTTransformer(TransformerConfig())
    text = SimpleNamespace(model=torch.nn.Linear(1000, 1000))
    settings = SimpleNamespace(pixels=1024 * 1024)
    return SimpleNamespace(
        transformer=transformer,
        text=text,
        vq=SimpleNamespace(factor=16),
        settings=settings,
        device=torch.device(device),
    )


def test_a_cpu_run_of_the_1b_model_warns_with_an_estimate():
    warning = cpu_warning(published_stand_in("cpu"), steps=36)
    assert "1.0B-parameter transformer" in warning and "minutes" in warning and "--device cuda" in warning
    minutes = int(warning.split("roughly ")[1].split(" minutes")[0])
    assert 20 <= minutes <= 200  # 36 guided steps of ~2,300 positions through 1B parameters at 100 GFLOP/s
    assert cpu_warning(published_stand_in("cpu"), steps=12) != warning  # the estimate follows the steps
    assert cpu_warning(published_stand_in("cuda"), steps=36) is None


def test_the_bundle_gets_no_warning():
    editor = app.load(app.DEFAULT_MODEL, "cpu")
    assert cpu_warning(editor, steps=12) is None


def test_the_space_model_variable_counts_on_a_gpu_only(monkeypatch, caplog):
    monkeypatch.setenv("EDITMGT_MODEL", PUBLISHED_ID)
    assert app.default_model("cuda") == PUBLISHED_ID
    with caplog.at_level(logging.WARNING):
        assert app.default_model("cpu") == str(app.DEFAULT_MODEL)
    assert "ignored on the CPU" in caplog.text
    monkeypatch.delenv("EDITMGT_MODEL")
    assert app.default_model("cuda") == str(app.DEFAULT_MODEL)


def test_an_unreachable_space_model_falls_back_to_the_bundle(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with caplog.at_level(logging.WARNING):
        editor = app.load("someone/not-cached", "cpu", fallback=True)
    assert Path(editor.root) == app.DEFAULT_MODEL and "loading the bundled model instead" in caplog.text
    with pytest.raises(SystemExit, match="hf download someone/not-cached"):
        app.load("someone/not-cached", "cpu")  # asked for by name: no silent substitute


def _cached(repo_id: str) -> bool:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, local_files_only=True)
        return True
    except Exception:
        return False


@pytest.mark.real_weights
@pytest.mark.skipif(not _cached(PUBLISHED_ID), reason=f"{PUBLISHED_ID} is not in the local hub cache")
def test_the_published_model_edits_a_photo():
    from editmgt_core.edit.editing import default_options, edit
    from editmgt_core.model.loading import load_editor

    device = "cuda" if torch.cuda.is_available() else "cpu"
    editor = load_editor(PUBLISHED_ID, device=device, dtype="bf16" if device == "cuda" else "fp32")
    assert editor.transformer.config == TransformerConfig() and editor.model_id == PUBLISHED_ID
    yy, xx = np.mgrid[0:512, 0:512]
    red_disc = ((yy - 256) ** 2 + (xx - 256) ** 2 < 120**2)[..., None] * np.array([220, 30, 30])
    image = Image.fromarray((np.full((512, 512, 3), 235) * (red_disc == 0) + red_disc).astype(np.uint8))
    options = default_options(editor, seed=0, steps=16 if device == "cuda" else 4)
    result = edit(editor, image, "make the red circle blue", options, pixels=512 * 512)
    out = np.asarray(result.image, dtype=np.float32)
    centre, corner = out[216:296, 216:296].mean((0, 1)), out[:60, :60].mean((0, 1))
    assert centre[2] > centre[0], f"the disc is not blue: mean RGB {centre}"  # it turned blue
    assert np.abs(corner - 235).max() < 25, f"the background changed: mean RGB {corner}"  # the rest stayed
    assert result.parameters()["model"] == PUBLISHED_ID


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_offload_keeps_the_text_encoder_off_the_gpu_between_edits():
    from editmgt_core.edit.editing import default_options, edit
    from editmgt_core.model.loading import load_editor

    editor = load_editor(app.DEFAULT_MODEL, device="cuda", offload=True)
    image = Image.open(app.EXAMPLES / "recolor-yellow-circle.png")
    result = edit(editor, image, "make the yellow circle blue", default_options(editor, seed=0))
    assert next(editor.text.model.parameters()).device.type == "cpu"  # back on the CPU after encoding
    assert next(editor.transformer.parameters()).device.type == "cuda"
    plain = edit(
        load_editor(app.DEFAULT_MODEL, device="cuda"),
        image,
        "make the yellow circle blue",
        default_options(editor, seed=0),
    )
    assert torch.equal(result.tokens, plain.tokens)  # offload changes where, not what

"""`load_editor` on tiny random model folders in the published layout, and its errors."""

import pytest
import torch
from tiny_model import CODES, TEXT_DIM, make_model_folder

from editmgt_core.loading import ModelNotFoundError, load_editor


@pytest.fixture(scope="module", params=["single", "clip_gemma2"])
def folder(request, tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp(request.param), text=request.param)


def test_load_and_encode(folder):
    editor = load_editor(folder)
    assert editor.settings.name == "tiny" and editor.settings.attention_layers == (1, 2)
    feats = editor.text(["make the red circle blue", "a dog"])
    assert feats.txt.shape == (2, 12, TEXT_DIM)
    assert feats.pooled.shape[0] == 2
    real = feats.real.sum(1).tolist()
    assert real == [5, 2], real  # real prompt words only: no padding, no special tokens
    images = torch.rand(2, 3, 32, 48)
    tokens = editor.vq.encode(images)
    assert tokens.shape == (2, 16, 24) and int(tokens.max()) < CODES
    decoded = editor.vq.decode(tokens)
    assert decoded.shape == (2, 3, 32, 48) and decoded.min() >= 0 and decoded.max() <= 1
    # a decoded image re-encodes to (mostly) the same tokens: the wrapper's encode/decode are inverse paths
    assert (editor.vq.encode(decoded) == tokens).float().mean() > 0.5


def test_keyword_offsets(folder):
    editor = load_editor(folder)
    prompt = "make the red circle blue"
    feats = editor.text([prompt])
    spans = [prompt[a:b] for (a, b), r in zip(feats.offsets[0], feats.real[0].tolist(), strict=True) if r]
    assert spans == prompt.split()
    first_real = feats.real[0].tolist().index(True)
    if editor.settings.text["kind"] == "clip_gemma2":
        assert first_real > 1  # Gemma's tokenizer pads on the left: the prompt sits at the end
    else:
        assert first_real == 1  # BERT pads on the right, after [CLS]


def test_missing_folder_and_offline_hub_id(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_editor(tmp_path / "nope")
    with pytest.raises(ModelNotFoundError, match="no editmgt/ subfolder"):
        load_editor(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download someone/missing-model"):
        load_editor("someone/missing-model")


def test_settings_check_attention_layers(tmp_path):
    import json

    from editmgt_core.loading import SETTINGS_NAME, Settings

    path = tmp_path / SETTINGS_NAME
    path.write_text(json.dumps({"attention_layers": [5, "s0", "s7"]}))
    assert Settings.read(tmp_path).attention_layers == (5, "s0", "s7")
    for bad in (["s0"], [5, "t0"], [5, 5], []):
        path.write_text(json.dumps({"attention_layers": bad}))
        with pytest.raises(ValueError, match="attention_layers"):
            Settings.read(tmp_path)

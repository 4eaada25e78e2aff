"""`load_editor` on tiny random model folders in the published layout, and its errors."""

import pytest
import torch
from tiny_model import CODES, TEXT_DIM, make_model_folder

from editmgt_core.model.loading import ModelNotFoundError, load_editor


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
    # the decoder runs in channels-last layout (faster on CPU); the layout changes no value beyond float rounding
    assert editor.vq.vq.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    for part in (editor.vq.vq.post_quant_conv, editor.vq.vq.decoder):
        part.to(memory_format=torch.contiguous_format)
    assert torch.allclose(editor.vq.decode(tokens), decoded, atol=1e-5)


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
    with pytest.raises(ModelNotFoundError, match='hf download someone/missing-model --exclude "\\*.bin"') as err:
        load_editor("someone/missing-model")
    assert "huggingface-cli" not in str(err.value)  # removed in huggingface_hub 1.x


def test_settings_check_attention_layers(tmp_path):
    import json

    from editmgt_core.model.loading import SETTINGS_NAME, Settings

    path = tmp_path / SETTINGS_NAME
    path.write_text(json.dumps({"attention_layers": [5, "s0", "s7"]}))
    assert Settings.read(tmp_path).attention_layers == (5, "s0", "s7")
    for bad in (["s0"], [5, "t0"], [5, 5], []):
        path.write_text(json.dumps({"attention_layers": bad}))
        with pytest.raises(ValueError, match="attention_layers"):
            Settings.read(tmp_path)


def test_dtype_reaches_the_text_encoders(folder):
    editor = load_editor(folder, dtype="bf16")
    text = editor.text
    models = [text.clip, text.gemma] if hasattr(text, "gemma") else [text.model]
    assert editor.transformer.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for m in models for p in m.parameters())
    assert all(p.dtype == torch.float32 for p in editor.vq.vq.parameters())  # the VQ stays float32
    feats = text(["make the red circle blue"])
    assert feats.txt.dtype == torch.float32 and torch.isfinite(feats.txt).all()  # handed on in float32
    with pytest.raises(ValueError, match="expected one of fp32, bf16, fp16"):
        load_editor(folder, dtype="fp8")


def test_offload_moves_the_text_encoders_only_while_encoding(folder, monkeypatch):
    """On a CPU the trip is cpu -> cpu; what matters is that every model makes it, one at a time, and returns."""
    editor = load_editor(folder, offload=True)
    text = editor.text
    models = [text.clip, text.gemma] if hasattr(text, "gemma") else [text.model]
    trips = []
    for m in models:

        def to(device, m=m, original=m.to):
            trips.append((m, str(device)))
            return original(device)

        monkeypatch.setattr(m, "to", to)
    reference = load_editor(folder).text(["make it blue"])
    feats = text(["make it blue"])
    assert trips == [step for m in models for step in ((m, "cpu"), (m, "cpu"))]  # there, back; then the next one
    assert torch.equal(feats.txt, reference.txt) and torch.equal(feats.pooled, reference.pooled)


def test_hub_download_fetches_no_pickles(monkeypatch, tmp_path):
    """The patterns resolve() gives snapshot_download, applied as huggingface_hub applies them to a published layout."""
    import huggingface_hub
    from huggingface_hub.utils import filter_repo_objects

    seen = {}
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **kw: seen.update(kw) or str(tmp_path))
    from editmgt_core.model.loading import resolve

    assert resolve("WeiChow/EditMGT") == tmp_path
    layout = [
        "editmgt/config.json",
        "editmgt/diffusion_pytorch_model.safetensors",
        "editmgt/diffusion_pytorch_model.bin",
        "vqvae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "text_encoder/pytorch_model.bin",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "llm_encoder/model-00001-of-00002.safetensors",
        "llm_encoder/tokenizer.json",
        "llm_encoder/training_args.pt",
        "README.md",
        "model_index.json",
    ]
    patterns = {k: seen[k] for k in ("allow_patterns", "ignore_patterns")}
    fetched = set(filter_repo_objects(layout, **patterns))
    assert not any(p.endswith((".bin", ".pt")) for p in fetched)
    assert {p for p in layout if p.endswith(".safetensors")} <= fetched and "tokenizer/merges.txt" in fetched

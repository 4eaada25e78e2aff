"""Decoders compared on the same edits (tiny model): one edit per record, each decoder judged, codebooks checked."""

import json
import shutil

import pytest
from PIL import Image
from safetensors.torch import load_file, save_file
from tiny_model import make_model_folder

from editmgt_core.evaluation import decoder_compare, examples_sheet
from editmgt_core.model.loading import load_editor
from editmgt_core.model.upsampler import Upsampler, UpsamplerConfig, save_upsampler


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    model = make_model_folder(root / "tiny")
    sharp = root / "sharp"
    shutil.copytree(model / "vqvae", sharp)
    save_upsampler(Upsampler(UpsamplerConfig(scale=2, in_channels=8, width=8, fine_width=8)), sharp)
    other = root / "other"
    shutil.copytree(model / "vqvae", other)
    weights = load_file(other / "diffusion_pytorch_model.safetensors")
    weights["quantize.embedding.weight"] = weights["quantize.embedding.weight"] + 1.0
    save_file(weights, other / "diffusion_pytorch_model.safetensors")
    return model, sharp, other


def test_each_decoder_is_judged_on_the_same_tokens(folders, tmp_path):
    model, sharp, _ = folders
    argv = [
        "--model",
        str(model),
        "--decoders",
        f"sharp={sharp}",
        "--world-seed",
        "5",
        "--n",
        "3",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    report = decoder_compare.main(decoder_compare.parse_args(argv))
    rows = report["records"]
    assert len(rows) == 3 and json.loads((tmp_path / "decoder_compare.json").read_text())["world_seed"] == 5
    for row in rows:
        assert row["size_model"] == 64 and row["size_sharp"] == 64  # the tiny model works at 32 px: 2x is 64
        for name in ("model", "sharp", "model_vq", "sharp_vq"):
            assert isinstance(row[f"success_{name}"], bool) and isinstance(row[f"shape_{name}"], bool)
    # an untrained head is the bicubic upscale of the same decoder: the pixel judge at 64 px sees the same edit
    assert [r["success_sharp_vq"] for r in rows] == [r["success_model_vq"] for r in rows]
    assert "| Shape judge, sharp |" in (tmp_path / "decoder_compare.md").read_text()


def test_a_decoder_with_another_codebook_is_refused(folders):
    model, _, other = folders
    with pytest.raises(ValueError, match="codebook"):
        decoder_compare.load_decoder(load_editor(model), other)
    with pytest.raises(SystemExit):
        decoder_compare.parse_args(["--decoders", "model=x", "--world-seed", "1", "--out", "y"])


def test_examples_sheet_layout():
    examples = [{"instruction": "a"}, {"instruction": "b"}]
    cells = [Image.new("RGB", (64, 64), c) for c in ("red", "blue")]
    sheet = examples_sheet.sheet(examples, [("input", cells), ("out", cells[::-1])], cell=32)
    assert sheet.size == (2 * (32 + 6) + 6, 20 + 2 * (32 + 20 + 6) + 6)
    assert sheet.getpixel((6 + 16, 20 + 20 + 16)) == (255, 0, 0)  # first example, input column
    assert sheet.getpixel((6 + 38 + 16, 20 + 20 + 16)) == (0, 0, 255)  # first example, second column

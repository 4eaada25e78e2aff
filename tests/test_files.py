"""PNG metadata: our own key, the model included (by name, never a path), hashes of the source and the mask,
older files still read, AUTOMATIC1111's text left alone."""

import json

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from editmgt_core.edit import files


def test_parameters_travel_under_our_key(tmp_path):
    path = tmp_path / "out.png"
    params = {"model": "WeiChow/EditMGT", "instruction": "make the café sign red", "seed": 7, "lam": 0.3}
    files.save_image(Image.new("RGB", (8, 8)), path, params)
    with Image.open(path) as image:
        assert set(image.info) >= {"editmgt"} and "parameters" not in image.info  # not A1111's key
        assert json.loads(image.info["editmgt"]) == params
    assert files.read_parameters(path) == params  # non-ASCII text survives (iTXt is UTF-8)


def test_older_files_and_foreign_parameters(tmp_path):
    legacy, a1111 = tmp_path / "legacy.png", tmp_path / "a1111.png"
    for path, text in ((legacy, json.dumps({"seed": 3})), (a1111, "a cat\nSteps: 20, Sampler: Euler a, Seed: 1")):
        info = PngInfo()
        info.add_text("parameters", text)
        Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    assert files.read_parameters(legacy) == {"seed": 3}  # what this project wrote before
    assert files.read_parameters(a1111) is None  # another program's format: not ours to parse
    files.save_image(Image.new("RGB", (8, 8)), tmp_path / "none.png")
    assert files.read_parameters(tmp_path / "none.png") is None


def test_hashes_and_public_model_names(tmp_path):
    image = Image.new("RGB", (4, 3), (10, 20, 30))
    assert files.image_sha256(image) == files.image_sha256(image.convert("RGBA"))  # the pixels, not the file or mode
    assert files.image_sha256(image) != files.image_sha256(Image.new("RGB", (3, 4), (10, 20, 30)))
    mask = np.zeros((3, 4), bool)
    other = mask.copy()
    other[1, 2] = True
    assert files.mask_sha256(mask) != files.mask_sha256(other) and len(files.mask_sha256(mask)) == 64
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert files.public_model(str(folder)) == "my-model" and files.public_model("WeiChow/EditMGT") == "WeiChow/EditMGT"
    assert files.public_model(str(tmp_path / "gone" / "model")) == "model" and files.public_model(None) is None

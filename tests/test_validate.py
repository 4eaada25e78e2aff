"""editmgt_core.studio.validate: the limits on uploads and instructions, the parsers that name a bad value,
brush and mask images, the keyword chips and Stop's status."""

import numpy as np
import pytest
from PIL import Image
from test_studio import picture, png_header_only
from tiny_model import make_model_folder

from editmgt_core.model.loading import load_editor
from editmgt_core.studio import validate


@pytest.fixture(scope="module")
def editor(tmp_path_factory):
    return load_editor(make_model_folder(tmp_path_factory.mktemp("tiny")))


def test_open_upload_refuses_what_is_not_a_sound_image(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="not an image"):
        validate.open_upload(tmp_path / "notes.png")
    picture(64, 64).save(tmp_path / "ok.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:-2000])
    with pytest.raises(ValueError, match="damaged or truncated"):
        validate.open_upload(tmp_path / "cut.png")
    with pytest.raises(ValueError, match="refused"):
        validate.open_upload(png_header_only(tmp_path / "big.png", 8000, 6000))  # 48 MP: over the hard cap
    with pytest.raises(ValueError, match="refused"):
        validate.open_upload(png_header_only(tmp_path / "bomb.png", 30000, 30000))  # PIL's bomb check fires first
    assert validate.open_upload(tmp_path / "ok.png").size == (64, 64)


def test_check_image_downscales_large_and_refuses_tiny(monkeypatch):
    with pytest.raises(ValueError, match="at least 8x8"):
        validate.check_image(picture(1, 1))
    with pytest.raises(ValueError, match="no image"):
        validate.check_image(None)
    monkeypatch.setattr(validate, "SOFT_PIXELS", 40 * 40)
    image, notice = validate.check_image(picture(80, 40, "RGBA"))
    assert image.mode == "RGB" and image.width * image.height <= 40 * 40 and "downscaled" in notice
    assert validate.check_image(picture(20, 20))[1] is None


def test_parsers_name_the_bad_value(editor):
    words = validate.words("Make the red circle red, then the Circle blue")
    assert words == ["Make", "the", "red", "circle", "then", "blue"]
    assert validate.parse_layers("0-1, 2", 3) == (0, 1, 2) and validate.parse_layers(" ", 3) is None
    with pytest.raises(ValueError, match="out of range; this model has blocks 0..2"):
        validate.parse_layers("1-5", 3)
    assert validate.parse_layers("2, s0-1", 3) == (2, "s0", "s1")
    with pytest.raises(ValueError, match="out of range"):
        validate.parse_layers("1, s3", 3)
    with pytest.raises(ValueError, match="at least one block without 's'"):
        validate.parse_layers("s0", 3)
    with pytest.raises(ValueError, match="write block indices"):
        validate.parse_layers("0, t1", 3)
    assert validate.parse_layers("change", 3) == ("change",)  # the app's predicted-change map: no block to check
    assert validate.parse_layers("rs1:h0, change", 3) == ("rs1:h0", "change")
    assert validate.parse_values("0, 0.5; 0.5", "λ values", 0, 1) == (0.0, 0.5)
    assert validate.sweep_grid("0, 0.5", "", 1.5) == ((0.0, 0.5), (1.5,))
    with pytest.raises(ValueError, match="cells; at most 16"):
        validate.sweep_grid("0, 0.1, 0.2, 0.3, 0.4", "1, 1.5, 2, 2.5", 1.0)
    for bad, match in [("x", "numbers separated"), ("2", r"\[0, 1\]"), ("", "1 to 16 values")]:
        with pytest.raises(ValueError, match=match):
            validate.parse_values(bad, "λ values", 0, 1)
    with pytest.raises(ValueError, match="too long|at most 1,000"):
        validate.check_instruction("a" * 10_000)
    ok = dict(steps=4, guidance_scale=2, gamma=1, lam=0.2)
    for field, value in [
        ("steps", 1000),
        ("steps", 2.5),
        ("lam", 5),
        ("gamma", -1),
        ("guidance_scale", float("inf")),
        ("steps", "many"),
        ("seed", 2**70),
        ("grow", 17),
        ("grow", 0.5),
        ("token_temperature", 0),
        ("token_temperature", 3),
        ("keep_pixels", "yes"),
    ]:
        with pytest.raises(ValueError, match=field):
            validate.make_options(editor, **{**ok, field: value})
    with pytest.raises(ValueError, match="mask_mode"):
        validate.make_options(editor, **ok, mask_mode="blur")
    with pytest.raises(ValueError, match="resolution"):
        validate.work_pixels(editor, 100_000)
    assert validate.make_options(editor, **ok, seed=-1).seed is None
    grown = validate.make_options(editor, **ok, grow=2.0, keep_pixels=False)  # a number field sends 2.0
    assert (grown.grow, grown.keep_pixels) == (2, False) and isinstance(grown.grow, int)
    assert validate.make_options(editor, **ok, token_temperature=0.2).token_temperature == 0.2
    options, pixels = validate.request(editor, **ok, seed=3, randomize=True, resolution=48)
    assert options.seed is None and pixels == 48 * 48


def test_brush_and_mask_images():
    layer = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    assert validate.brush_mask([layer], (40, 20)) is None
    layer.paste((255, 0, 0, 150), (0, 0, 10, 10))
    mask = validate.brush_mask([layer], (40, 20))
    assert mask.shape == (20, 40) and mask[:, :20].all() and not mask[:, 20:].any()
    white_left = Image.fromarray(np.repeat(np.array([[255, 0]], np.uint8), 5, axis=0).repeat(5, axis=1))
    mask, notice = validate.mask_from_image(white_left, (10, 5))
    assert mask[:, :4].all() and notice is None
    mask, notice = validate.mask_from_image(white_left, (20, 10), (40, 20))  # same aspect: scaled, and said so
    assert mask.shape == (10, 20) and "scaled" in notice
    assert validate.mask_from_image(white_left, (20, 10), (10, 5))[1] is None  # the upload's own size: quiet
    with pytest.raises(ValueError, match="mask is 10x5 but the image is 10x10"):
        validate.mask_from_image(white_left, (10, 10))


def test_screen_helpers():
    assert validate.keep_keywords("make the red circle", "make the red circle blue", ["red", "dog"]) == ["red"]
    assert validate.keep_keywords("make the red circle", "make the circle", ["red", "circle"]) == ["circle"]
    replaced = validate.keep_keywords("make the red circle blue", "make the red square green", ["red"])
    assert replaced == []  # replaced
    assert validate.keep_keywords("", "make the red circle", ["red"]) == []
    assert validate.stopped_status("**Step 12/64** · 3% held").startswith("**Stopped** at step 12/64")
    assert validate.stopped_status("**Done** · 12 steps") is None and validate.stopped_status("") is None
    sweep = "**Cell 2/4** (λ=0.1, γ=1) · step 5/64"
    assert validate.stopped_status(sweep).startswith("**Stopped** at cell 2/4, step 5/64")
    assert "Explore" in validate.stopped_status(sweep) and "Edit" not in validate.stopped_status(sweep)
    between = validate.stopped_status("Cell 1 done (λ=0, γ=1) · 1 finished")
    assert between.startswith("**Stopped** · cells finished: 1")

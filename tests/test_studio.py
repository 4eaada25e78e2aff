"""editmgt_core.studio on a tiny random model: input limits, CPU-only streaming, sweep reuse, rendering, saving."""

import dataclasses
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import make_model_folder

from editmgt_core import studio
from editmgt_core.editing import default_options, edit
from editmgt_core.loading import load_editor

FAST = dict(steps=3, guidance_scale=2.0, negative_prompt="", seed=5)


@pytest.fixture(scope="module")
def editor(tmp_path_factory):
    return load_editor(make_model_folder(tmp_path_factory.mktemp("tiny")))


def picture(w=32, h=32, mode="RGB", seed=0):
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def png_header_only(path, width, height):
    """A PNG that claims width x height but holds one row of data: never decoded, only its header is read."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * (width + 1))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def test_open_image_refuses_what_is_not_a_sound_image(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match="not an image"):
        studio.open_image(tmp_path / "notes.png")
    picture(64, 64).save(tmp_path / "ok.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:-2000])
    with pytest.raises(ValueError, match="damaged or truncated"):
        studio.open_image(tmp_path / "cut.png")
    with pytest.raises(ValueError, match="refused"):
        studio.open_image(png_header_only(tmp_path / "big.png", 8000, 6000))  # 48 MP: over the hard cap
    with pytest.raises(ValueError, match="refused"):
        studio.open_image(png_header_only(tmp_path / "bomb.png", 30000, 30000))  # PIL's bomb check fires first
    assert studio.open_image(tmp_path / "ok.png").size == (64, 64)


def test_check_image_downscales_large_and_refuses_tiny(monkeypatch):
    with pytest.raises(ValueError, match="at least 8x8"):
        studio.check_image(picture(1, 1))
    with pytest.raises(ValueError, match="no image"):
        studio.check_image(None)
    monkeypatch.setattr(studio, "SOFT_PIXELS", 40 * 40)
    image, notice = studio.check_image(picture(80, 40, "RGBA"))
    assert image.mode == "RGB" and image.width * image.height <= 40 * 40 and "downscaled" in notice
    assert studio.check_image(picture(20, 20))[1] is None


def test_parsers_name_the_bad_value(editor):
    assert studio.words("Make the red circle red, then the Circle blue") == ["Make", "the", "red", "circle", "then",
                                                                            "blue"]  # fmt: skip
    assert studio.parse_layers("0-1, 2", 3) == (0, 1, 2) and studio.parse_layers(" ", 3) is None
    with pytest.raises(ValueError, match="out of range; this model has blocks 0..2"):
        studio.parse_layers("1-5", 3)
    assert studio.parse_layers("2, s0-1", 3) == (2, "s0", "s1")
    with pytest.raises(ValueError, match="out of range"):
        studio.parse_layers("1, s3", 3)
    with pytest.raises(ValueError, match="at least one block without 's'"):
        studio.parse_layers("s0", 3)
    with pytest.raises(ValueError, match="write block indices"):
        studio.parse_layers("0, t1", 3)
    assert studio.parse_layers("change", 3) == ("change",)  # the app's predicted-change map: no block to check
    assert studio.parse_layers("rs1:h0, change", 3) == ("rs1:h0", "change")
    assert studio.parse_values("0, 0.5; 0.5", "λ values", 0, 1) == (0.0, 0.5)
    for bad, match in [("x", "numbers separated"), ("2", r"\[0, 1\]"), ("", "1 to 16 values")]:
        with pytest.raises(ValueError, match=match):
            studio.parse_values(bad, "λ values", 0, 1)
    with pytest.raises(ValueError, match="too long|at most 1,000"):
        studio.check_instruction("a" * 10_000)
    ok = dict(steps=4, guidance_scale=2, gamma=1, lam=0.2)
    for field, value in [("steps", 1000), ("steps", 2.5), ("lam", 5), ("gamma", -1), ("guidance_scale", float("inf")),
                         ("steps", "many"), ("seed", 2**70), ("grow", 17), ("grow", 0.5),
                         ("token_temperature", 0), ("token_temperature", 3), ("keep_pixels", "yes")]:  # fmt: skip
        with pytest.raises(ValueError, match=field):
            studio.make_options(editor, **{**ok, field: value})
    with pytest.raises(ValueError, match="mask_mode"):
        studio.make_options(editor, **ok, mask_mode="blur")
    with pytest.raises(ValueError, match="resolution"):
        studio.work_pixels(editor, 100_000)
    assert studio.make_options(editor, **ok, seed=-1).seed is None
    grown = studio.make_options(editor, **ok, grow=2.0, keep_pixels=False)  # a number field sends 2.0
    assert (grown.grow, grown.keep_pixels) == (2, False) and isinstance(grown.grow, int)
    assert studio.make_options(editor, **ok, token_temperature=0.2).token_temperature == 0.2
    options, pixels = studio.request(editor, **ok, seed=3, randomize=True, resolution=48)
    assert options.seed is None and pixels == 48 * 48


def test_brush_and_mask_images():
    layer = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    assert studio.brush_mask([layer], (40, 20)) is None
    layer.paste((255, 0, 0, 150), (0, 0, 10, 10))
    mask = studio.brush_mask([layer], (40, 20))
    assert mask.shape == (20, 40) and mask[:, :20].all() and not mask[:, 20:].any()
    white_left = Image.fromarray(np.repeat(np.array([[255, 0]], np.uint8), 5, axis=0).repeat(5, axis=1))
    mask, notice = studio.mask_image(white_left, (10, 5))
    assert mask[:, :4].all() and notice is None
    mask, notice = studio.mask_image(white_left, (20, 10), (40, 20))  # same aspect: scaled, and said so
    assert mask.shape == (10, 20) and "scaled" in notice
    assert studio.mask_image(white_left, (20, 10), (10, 5))[1] is None  # the upload's own size: quiet
    with pytest.raises(ValueError, match="mask is 10x5 but the image is 10x10"):
        studio.mask_image(white_left, (10, 10))


def test_screen_helpers():
    assert studio.keep_keywords("make the red circle", "make the red circle blue", ["red", "dog"]) == ["red"]
    assert studio.keep_keywords("make the red circle", "make the circle", ["red", "circle"]) == ["circle"]
    assert studio.keep_keywords("make the red circle blue", "make the red square green", ["red"]) == []  # replaced
    assert studio.keep_keywords("", "make the red circle", ["red"]) == []
    assert studio.stopped_status("**Step 12/64** · 3% held").startswith("**Stopped** at step 12/64")
    assert studio.stopped_status("**Done** · 12 steps") is None and studio.stopped_status("") is None


def cpu_only(value):
    if dataclasses.is_dataclass(value):
        return all(cpu_only(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return all(cpu_only(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(cpu_only(v) for v in value)
    return not isinstance(value, torch.Tensor)


def test_stream_is_cpu_data_and_matches_edit(editor):
    options = default_options(editor, **FAST, lam=0.3)
    items = list(studio.stream(editor, picture(), "make the circle red", options, preview_side=64, preview_budget=1))
    frames, final = items[:-1], items[-1]
    assert [f.step for f in frames] == [0, 1, 2] and all(cpu_only(i) for i in items)
    assert frames[0].preview.size == (32, 32) and frames[0].revealed.dtype == bool  # working size: never enlarged
    assert frames[-1].preview is None  # the last step is the result
    unpreviewed = list(studio.stream(editor, picture(), "make the circle red", options, preview_budget=0))
    assert all(f.preview is None for f in unpreviewed[:-1])
    assert np.array_equal(
        np.asarray(final.image), np.asarray(edit(editor, picture(), "make the circle red", options).image)
    )
    assert final.parameters["seed"] == 5 and final.hold is not None


def test_sweep_cells_equal_separate_edits(editor):
    options = default_options(editor, **FAST)
    items = list(studio.sweep(editor, picture(), "make the circle red", options, (0.0, 0.4), (1.0, 1.5)))
    cells = [i for i in items if isinstance(i, studio.Cell)]
    assert len(cells) == 4 and sum(isinstance(i, studio.CellStep) for i in items) == 4 * FAST["steps"]
    assert [(c.gamma, c.lam) for c in cells] == [(1.0, 0.0), (1.0, 0.4), (1.5, 0.0), (1.5, 0.4)]
    last = cells[-1]  # the encodings were reused by three cells before it
    alone = edit(editor, picture(), "make the circle red", dataclasses.replace(options, lam=0.4, gamma=1.5))
    assert np.array_equal(np.asarray(last.result.image), np.asarray(alone.image))
    assert cells[0].result.held_fraction == 0 and "λ=0.4 γ=1" in cells[1].label


def test_rendering_and_change_measures():
    canvas = np.asarray(studio.reveal_canvas(picture(64, 64), np.eye(8, dtype=bool), side=128))
    assert canvas.shape == (128, 128, 3) and (canvas == (255, 220, 0)).all(-1).any()  # outlines drawn
    hold = np.zeros((8, 8), bool)
    hold[:, :4] = True
    overlay = studio.attention_overlay(picture(64, 32), np.random.rand(8, 8), hold, side=128)
    assert overlay.size == (128, 64)
    before = Image.new("RGB", (16, 16), (10, 10, 10))
    after = before.copy()
    after.paste((110, 10, 10), (8, 0, 16, 16))  # right half changed by 100 in one channel
    assert studio.mean_change_outside(before, after, hold) == pytest.approx(100 / 3)
    assert studio.mean_change_outside(before, after, None) == pytest.approx(50 / 3)
    assert studio.change_heatmap(before, after).size == (16, 16)


def test_saved_png_carries_its_parameters(editor, tmp_path):
    final = list(studio.stream(editor, picture(), "make it red", default_options(editor, **FAST)))[-1]
    png, sidecar = studio.save_result(final, tmp_path)
    assert studio.read_parameters(png)["seed"] == 5 and '"instruction": "make it red"' in sidecar.read_text()
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(final.image))
    assert studio.from_jpeg(studio.jpeg(final.image)).size == final.image.size

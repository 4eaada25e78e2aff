"""End to end on a tiny random model folder: load_editor + edit() on awkward inputs, hold, streaming, seeds."""

import dataclasses

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import make_model_folder

from editmgt_core.edit.editing import (
    EditResult,
    Progress,
    default_options,
    edit,
    edit_stream,
    keep_source_pixels,
    to_rgb,
    work_size,
)
from editmgt_core.model.loading import load_editor
from editmgt_core.sampler.sampling import SamplerOptions

FAST = SamplerOptions(steps=4, guidance_scale=2.0, seed=3, negative_prompt="")


@pytest.fixture(scope="module")
def editor(tmp_path_factory):
    return load_editor(make_model_folder(tmp_path_factory.mktemp("tiny")))


def picture(w, h, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def exif_rotated(w, h):
    image = picture(w, h)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    image.info["exif"] = exif.tobytes()
    return image


@pytest.mark.parametrize(
    "image, size",
    [
        (picture(40, 40, "RGBA"), (40, 40)),
        (picture(50, 30, "L"), (50, 30)),
        (picture(37, 64), (37, 64)),
        (picture(30, 30, "P"), (30, 30)),
        (picture(20, 20, "CMYK"), (20, 20)),
        (Image.fromarray((np.arange(24 * 24, dtype=np.uint16) * 100).reshape(24, 24)), (24, 24)),
        (picture(1, 1), (1, 1)),
    ],
    ids=["rgba", "gray", "non-square", "palette", "cmyk", "16-bit", "1x1"],
)
def test_edit_returns_the_input_size(editor, image, size):
    result = edit(editor, image, "make the red circle blue", FAST)
    assert result.image.size == size and result.image.mode == "RGB"


def test_exif_orientation_is_applied(editor, tmp_path):
    path = tmp_path / "rotated.jpg"
    exif_rotated(48, 24).save(path, exif=exif_rotated(48, 24).info["exif"])
    result = edit(editor, Image.open(path), "make it red", FAST)
    assert result.image.size == (24, 48)  # upright: width and height swapped


def test_hold_everything_returns_the_source_tokens(editor):
    result = edit(editor, picture(32, 32), "make the dog red", dataclasses.replace(FAST, lam=1.0))
    assert torch.equal(result.tokens, result.src_tokens)
    assert result.held_fraction == 1.0


def test_stream_yields_each_step_then_the_result(editor):
    items = list(edit_stream(editor, picture(32, 32), "add a hat", dataclasses.replace(FAST, lam=0.3)))
    records, result = items[:-1], items[-1]
    assert [p.record.step for p in records] == [0, 1, 2, 3] and all(isinstance(p, Progress) for p in records)
    assert records[0].preview(editor).size == result.work_size
    assert isinstance(result, EditResult)
    assert torch.equal(records[-1].record.tokens[0].cpu(), result.tokens)
    assert result.scores is not None and result.scores.shape == result.tokens.shape
    assert set(result.timings) == {"text", "encode", "sampling", "decode"}


def test_same_seed_same_edit_and_seed_is_reported(editor):
    image = picture(32, 32, seed=5)
    a = edit(editor, image, "make the circle green", FAST)
    b = edit(editor, image, "make the circle green", FAST)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    unseeded = edit(editor, image, "make the circle green", dataclasses.replace(FAST, seed=None))
    assert isinstance(unseeded.options.seed, int)
    again = edit(editor, image, "make the circle green", unseeded.options)
    assert torch.equal(again.tokens, unseeded.tokens)
    assert unseeded.parameters()["seed"] == unseeded.options.seed


def test_brush_mask_replace_keeps_unpainted_tokens(editor):
    mask = np.zeros((32, 32), dtype=bool)
    mask[:, :16] = True  # only the left half may change
    opts = dataclasses.replace(FAST, mask_mode="replace")
    result = edit(editor, picture(32, 32), "make it red", opts, user_mask=mask)
    right = slice(result.tokens.shape[1] // 2, None)
    assert torch.equal(result.tokens[:, right], result.src_tokens[:, right])


def test_keep_source_pixels_blends_only_inside_kept_tokens():
    out, source = Image.new("RGB", (64, 32), (0, 0, 0)), Image.new("RGB", (64, 32), (250, 250, 250))
    keep = torch.zeros(4, 8, dtype=torch.bool)
    keep[:, 4:] = True  # the right half of the token grid (cells of 8 px)
    mixed = np.asarray(keep_source_pixels(out, source, keep))[..., 0]
    assert (mixed[:, :32] == 0).all()  # changed tokens: the output untouched
    assert (mixed[:, 36:] == 250).all()  # kept, half a cell in: the source exactly
    assert (np.diff(mixed[:, 30:40].astype(int), axis=1) >= 0).all() and 0 < mixed[0, 33] < 250  # a smooth ramp
    assert keep_source_pixels(out, source, torch.zeros(4, 8, dtype=torch.bool)) is out
    with pytest.raises(ValueError, match="differ in size"):
        keep_source_pixels(out, source.resize((32, 32)), keep)


def test_unchanged_tokens_keep_the_inputs_own_pixels(editor):
    image = picture(37, 64, seed=2)  # not the working size: the pixels come back at the input's resolution
    held = edit(editor, image, "make the dog red", dataclasses.replace(FAST, lam=1.0))
    assert np.array_equal(np.asarray(held.image), np.asarray(image))
    decoded = edit(editor, image, "make the dog red", dataclasses.replace(FAST, lam=1.0, keep_pixels=False))
    assert np.abs(np.asarray(decoded.image, np.float32) - np.asarray(image, np.float32)).mean() > 10  # VQ round trip
    assert held.parameters()["keep_pixels"] and not decoded.parameters()["keep_pixels"]


def test_brush_keeps_pixels_outside_and_leaves_the_edit_alone(editor):
    image, mask = picture(64, 32, seed=4), np.zeros((32, 64), dtype=bool)
    mask[:, :32] = True  # the left half may change
    opts = dataclasses.replace(FAST, mask_mode="replace")
    result = edit(editor, image, "make it red", opts, user_mask=mask)
    plain = edit(editor, image, "make it red", dataclasses.replace(opts, keep_pixels=False), user_mask=mask)
    assert torch.equal(result.tokens, plain.tokens)  # keep_pixels changes pixels only
    changed = (result.tokens != result.src_tokens).numpy()
    assert changed[:, : changed.shape[1] // 2].mean() > 0.5 and not changed[:, changed.shape[1] // 2 :].any()
    changed_pixels = cv2.resize(changed.astype(np.uint8), (64, 32), interpolation=cv2.INTER_NEAREST).astype(bool)
    kept, decoded = np.asarray(result.image), np.asarray(plain.image)
    assert np.array_equal(kept[changed_pixels], decoded[changed_pixels])  # changed tokens: the decoded edit
    assert np.array_equal(kept[:, 44:], np.asarray(image)[:, 44:])  # held, past the feather band: the source itself


def test_keywords_must_be_in_the_instruction(editor):
    with pytest.raises(ValueError, match="not found"):
        edit(editor, picture(32, 32), "make the circle red", dataclasses.replace(FAST, lam=0.2, keywords=("dog",)))
    ok = edit(editor, picture(32, 32), "make the circle red", dataclasses.replace(FAST, lam=0.2, keywords=("circle",)))
    assert ok.options.keywords == ("circle",)


@pytest.mark.parametrize("instruction", ["", "   \n\t"])
def test_empty_instruction_is_refused(editor, instruction):
    with pytest.raises(ValueError, match="instruction is empty"):
        edit(editor, picture(16, 16), instruction, FAST)


def test_bad_inputs():
    with pytest.raises(ValueError, match="PIL image"):
        to_rgb(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="aspect ratio"):
        work_size(1000, 10, 4096, 8)
    assert work_size(64, 32, 64 * 64, 8) == (88, 48)


def test_source_map_layers_from_the_settings_and_from_the_user(editor):
    from editmgt_core.edit.editing import resolve_options

    tuned = dataclasses.replace(editor, settings=dataclasses.replace(editor.settings, attention_layers=(1, "s0")))
    assert resolve_options(tuned, FAST).layers == (1, "s0")
    assert resolve_options(tuned, dataclasses.replace(FAST, gamma=0.0)).layers == (1,)  # no source stream to read
    ref = dataclasses.replace(FAST, reference_compatible=True, keep_pixels=False)
    assert resolve_options(tuned, ref).layers == (1,)  # the model's band: the reference's capture only
    with pytest.raises(ValueError, match="source-image maps"):  # asked for explicitly: refused, not dropped
        edit(tuned, picture(32, 32), "make it blue", dataclasses.replace(ref, layers=(1, "s0")))
    with pytest.raises(ValueError, match="out of range"):
        resolve_options(tuned, dataclasses.replace(FAST, layers=(1, "s9")))
    held = dataclasses.replace(FAST, lam=0.4)
    with_source = edit(tuned, picture(32, 32), "make it blue", held)
    target_only = edit(tuned, picture(32, 32), "make it blue", dataclasses.replace(held, layers=(1,)))
    assert with_source.options.layers == (1, "s0") and with_source.scores.shape == target_only.scores.shape
    assert not torch.equal(with_source.scores, target_only.scores)
    assert with_source.focus == target_only.focus  # the focus reads the target maps only


def test_reference_compatible_drops_the_models_defaults_the_reference_lacks(editor):
    defaults = {"steps": 3, "grow": 2, "focus_gate": 0.7, "token_temperature": 0.2}
    tuned = dataclasses.replace(editor, settings=dataclasses.replace(editor.settings, defaults=defaults))
    assert default_options(tuned).token_temperature == 0.2 and default_options(tuned).grow == 2
    ref = default_options(tuned, reference_compatible=True)
    assert (ref.steps, ref.grow, ref.focus_gate, ref.token_temperature) == (3, 0, 0.0, 1.0)
    assert default_options(tuned, reference_compatible=True, grow=1).grow == 1  # asked for: kept (sample refuses it)

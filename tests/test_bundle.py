"""The bundled default model: its folder, its size, and region hold on real world edits, end to end."""

import dataclasses

import cv2
import numpy as np
import pytest
from PIL import Image

from editmgt_core import paths
from editmgt_core.edit.editing import default_options, edit, image_to_tensor, tensor_to_image
from editmgt_core.evaluation import metrics
from editmgt_core.evaluation.world_eval import at_size, target_round_trip
from editmgt_core.model.loading import load_editor
from editmgt_core.world import samples

BUNDLE = paths.BUNDLED_MODEL


@pytest.fixture(scope="module")
def editor():
    return load_editor(BUNDLE)


def test_bundle_is_small_and_safetensors_only():
    files = [p for p in BUNDLE.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 60 * 2**20
    weights = [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".safetensors")]
    assert weights and all(p.suffix == ".safetensors" for p in weights)


@pytest.mark.parametrize("index", range(4))
def test_region_hold_keeps_pixels_outside_the_edit(editor, index):
    """Brush = the record's edit mask: outside it the output is the source itself (keep_pixels), or, decoded from
    the held tokens (keep_pixels off), the source's VQ round trip."""
    rec = samples.record(2026, index, 64, category="recolor")
    image = Image.fromarray(rec.src)
    options = default_options(editor, seed=index, mask_mode="replace")
    result = edit(editor, image, rec.instruction, options, user_mask=rec.mask)
    assert result.held_fraction > 0.5
    # the output comes at the decoder's size (4x with the super-resolving head); kept pixels are the input's,
    # upsampled to that size
    size = result.image.size
    up = lambda m: cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    source = np.asarray(image.resize(size, Image.Resampling.BICUBIC)) if size != image.size else rec.src
    # held tokens start within a token (4 px) of the mask; the blend then fades in over ~1.5 tokens
    beyond_blend = up(~cv2.dilate(rec.mask.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool))
    assert np.array_equal(np.asarray(result.image)[beyond_blend], source[beyond_blend])
    decoded = edit(editor, image, rec.instruction, dataclasses.replace(options, keep_pixels=False), user_mask=rec.mask)
    assert np.array_equal(decoded.tokens, result.tokens)  # keep_pixels changes pixels only
    roundtrip = tensor_to_image(editor.vq.decode(editor.vq.encode(image_to_tensor(image))))
    # tokens outside the painted region are the source's; the decoder mixes pixels ~1 token (4 px) across edges
    away = up(~cv2.dilate(rec.mask.astype(np.uint8), np.ones((17, 17), np.uint8)).astype(bool))
    diff = np.abs(np.asarray(decoded.image, np.float32) - np.asarray(roundtrip, np.float32)) / 255
    assert diff[away].mean() < 0.01, diff[away].mean()


# Regression guard on unseen records (seed 2026; training used seeds 0, 1, 3, 4, 8, 12 and 20, world-eval 777,
# calibrate-layers 555, tune-hold 777): the first N_RECORDS records of the stream, every category as it comes, at the
# bundle's default settings (the predicted-change map held at λ 0.3, grow 0; keep_pixels on; token temperature 0.2),
# judged by world-eval's success criterion, worded by the world's templates and by the held-out phrasing families
# (which training never saw). The bundle succeeds on MEASURED of them (before the phrasing fine-tune: 24 and 20).
# Returning the source unchanged scores 0, so the test fails if the model or the edit pipeline stops editing.
N_RECORDS, MIN_SUCCESS, MEASURED = 30, 16, {None: 23, "heldout": 23}


@pytest.mark.parametrize("phrasing", [None, "heldout"])
def test_bundle_edits_succeed_on_unseen_records(editor, phrasing):
    wins, unit = [], metrics.to_unit
    for index in range(N_RECORDS):
        rec = samples.record(2026, index, 64, phrasing=phrasing)
        mask = np.ones_like(rec.mask) if rec.category in samples.GLOBAL_CATEGORIES else rec.mask
        result = edit(editor, Image.fromarray(rec.src), rec.instruction, default_options(editor, seed=index))
        ok, _ = metrics.edit_success(at_size(result.image, (64, 64)), unit(rec.src), unit(rec.tgt), mask.astype(bool))
        wins.append(ok)
    assert sum(wins) >= MIN_SUCCESS, f"{sum(wins)}/{N_RECORDS} edits succeeded (measured {MEASURED[phrasing]})"


def test_tokenizer_ceiling_is_near_the_target(editor):
    """The bundled VQ's round trip of a world target (the best any edit can decode to) is nearer the target than
    the source is, inside the edit: the tokenizer can represent the world's edits."""
    from editmgt_core.edit.editing import prepare, resolve_options

    unit = metrics.to_unit
    for index in range(6):
        rec = samples.record(2026, index, 64)
        mask = np.ones_like(rec.mask) if rec.category in samples.GLOBAL_CATEGORIES else rec.mask
        source, target = Image.fromarray(rec.src), Image.fromarray(rec.tgt)
        prepared = prepare(editor, source, rec.instruction, resolve_options(editor, None))
        out, src, tgt = (
            at_size(target_round_trip(editor, prepared, target, True), (64, 64)),
            unit(rec.src),
            unit(rec.tgt),
        )
        assert metrics.masked_l1(out, tgt, mask) < metrics.masked_l1(src, tgt, mask), rec.category

"""Full-resolution results: the original's own pixels away from changed tokens, decoded ones on them, at any size."""

import dataclasses

import cv2
import numpy as np
from PIL import Image

from editmgt_core.app import server as app
from editmgt_core.edit.composite import cell_grid, composite
from editmgt_core.edit.editing import default_options, edit


def far_from(changed_px: np.ndarray, cells: float) -> np.ndarray:
    """bool [H, W]: pixels farther than `cells` pixels from every changed pixel."""
    return cv2.distanceTransform((~changed_px).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) > cells


def test_the_decoded_image_may_have_any_size():
    rng = np.random.default_rng(555)
    original = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    changed = np.zeros((6, 8), dtype=bool)
    changed[2:4, 3:5] = True
    for decoded_size in ((32, 24), (128, 96), (400, 300)):  # smaller, a super-resolving decoder's, the same
        decoded = Image.new("RGB", decoded_size, (255, 0, 255))
        out = np.asarray(composite(decoded, original, changed))
        px = cell_grid(changed, original.size)
        assert out.shape == (300, 400, 3)
        assert (out[px] == (255, 0, 255)).all()  # changed tokens: all decoded
        far = far_from(px, 25)  # half a cell of 50 px
        assert np.array_equal(out[far], np.asarray(original)[far])  # the rest: the original's own pixels
        assert (~px & ~far).sum() > 0 and (out[~px & ~far] != np.asarray(original)[~px & ~far]).any()  # the feather


def test_no_change_returns_the_original_and_all_changed_the_decoded():
    original, decoded = Image.new("RGB", (40, 30), (9, 9, 9)), Image.new("RGB", (20, 15), (200, 0, 0))
    assert np.array_equal(np.asarray(composite(decoded, original, np.zeros((3, 4), bool))), np.asarray(original))
    assert composite(decoded, original, np.ones((3, 4), bool)).getpixel((39, 29)) == (200, 0, 0)


def test_a_4000x3000_photo_comes_back_at_full_resolution_untouched_away_from_the_edit():
    editor = app.load(app.DEFAULT_MODEL, "cpu")
    example = Image.open(app.EXAMPLES / "recolor-yellow-circle.png").convert("RGB")
    photo = example.resize((4000, 3000), Image.Resampling.BICUBIC)
    photo = Image.fromarray(np.asarray(photo) ^ np.random.default_rng(777).integers(0, 4, (3000, 4000, 3), np.uint8))
    options = dataclasses.replace(default_options(editor), seed=555, lam=0.3)
    result = edit(editor, photo, "make the yellow circle blue", options)
    assert result.image.size == (4000, 3000) and result.parameters()["size"] == [4000, 3000]
    assert "full resolution 4000x3000" in result.parameters()["resize"]
    changed = (result.tokens != result.src_tokens).numpy()
    assert 0 < changed.mean() < 1, "the edit should change some tokens and keep others"
    h, w = changed.shape
    cell = max(4000 / w, 3000 / h)
    far = far_from(cell_grid(changed, (4000, 3000)), cell)
    assert far.mean() > 0.1
    assert np.array_equal(np.asarray(result.image)[far], np.asarray(photo)[far])

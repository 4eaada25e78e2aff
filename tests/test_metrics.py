"""Metric functions against hand computations: L1, leakage, success, IoU, preprocessing, CLIP / DINO features."""

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_metric_models import clip_pixels, cos, dino_pixels, make_clip, make_dino

from editmgt_core.evaluation import metrics


def test_l1_and_leakage_by_hand():
    src = np.zeros((4, 4, 3), np.float32)
    out = src.copy()
    out[0, 0] = 0.5  # inside the edit mask
    out[3, 3] = [0.2, 0.4, 0.6]  # outside: leaks 0.4 on average over one of 12 outside pixels
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    assert metrics.l1(out, src) == pytest.approx((0.5 * 3 + 1.2) / 48)
    assert metrics.leakage(out, src, mask) == pytest.approx(1.2 / (12 * 3))
    assert metrics.leakage(out, src, np.ones((4, 4), bool)) is None  # nothing outside a global edit
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.l1(out, src[:3])


def test_to_unit_accepts_pil_and_uint8():
    arr = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert np.allclose(metrics.to_unit(Image.fromarray(arr)), arr / 255)
    assert metrics.to_unit(arr[..., 0]).shape == (4, 4, 3)


def _edit_case():
    rng = np.random.default_rng(0)
    src = rng.uniform(0.3, 0.7, (16, 16, 3)).astype(np.float32)
    tgt = src.copy()
    tgt[4:8, 4:8] = [1.0, 0.0, 0.0]  # the edit recolours a square
    mask = np.zeros((16, 16), bool)
    mask[3:9, 3:9] = True  # dilated, as the world's masks
    return src, tgt, mask


def test_edit_success_criterion():
    src, tgt, mask = _edit_case()
    assert metrics.edit_success(tgt, src, tgt, mask)[0]
    assert not metrics.edit_success(src, src, tgt, mask)[0]  # nothing changed
    assert not metrics.edit_success((src + tgt) / 2, src, tgt, mask)[0]  # halfway: not closer to the target
    noisy = np.clip(tgt + np.random.default_rng(1).normal(0, 0.02, tgt.shape), 0, 1).astype(np.float32)
    ok, detail = metrics.edit_success(noisy, src, tgt, mask)
    assert ok and detail["error"] < 0.1 and detail["to_target"] < detail["to_source"]
    smeared = tgt.copy()
    smeared[3:9, 3:9] = np.clip(smeared[3:9, 3:9] + 0.3, 0, 1)  # right colour family, too far off everywhere
    assert not metrics.edit_success(smeared, src, tgt, mask)[0]


def test_iou_and_map_iou():
    a = np.zeros((4, 4), bool)
    a[:2, :2] = True
    b = np.zeros((4, 4), bool)
    b[:2, :] = True
    assert metrics.iou(a, b) == pytest.approx(0.5)
    assert metrics.iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) is None
    # 2x2 -> 4x4 bilinear with half-pixel centres: rows/cols 0, 1 get 1.0, 0.75; 2, 3 get 0.25, 0
    scores = np.array([[1.0, 0.0], [0.0, 0.0]])
    assert np.allclose(metrics.upsample_map(scores, (4, 4))[0], [1.0, 0.75, 0.25, 0.0])
    assert metrics.map_iou(scores, a, 0.5) == 1.0
    assert metrics.map_iou(scores, b, 0.5) == pytest.approx(0.5)


def test_exact_map_iou_depends_on_the_grid():
    """A square on the attention grid's cells scores well at that grid; a small object off the cells is capped far
    below 1 at the published 8x8 grid (16x16 tokens, 64 px) and rises with a finer grid."""
    cells = np.zeros((64, 64), bool)
    cells[16:32, 24:40] = True  # 2 x 2 cells of an 8 x 8 grid
    assert metrics.exact_map_iou(cells, (8, 8), (16, 16)) > 0.85
    small = np.zeros((64, 64), bool)
    small[21:31, 13:23] = True  # 10 px, straddling cell borders
    coarse, fine = metrics.exact_map_iou(small, (8, 8), (16, 16)), metrics.exact_map_iou(small, (16, 16), (16, 16))
    assert coarse < 0.6 < fine
    assert metrics.exact_map_iou(np.zeros((64, 64), bool), (8, 8), (16, 16)) is None


def test_preprocess_resizes_short_side_and_centre_crops():
    arr = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)  # H 32, W 40
    x = metrics.preprocess([Image.fromarray(arr)], 32, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert x.shape == (1, 3, 32, 32)
    assert np.allclose(x[0].permute(1, 2, 0).numpy(), arr[:, 4:36] / 255)  # crop left = round((40 - 32) / 2)
    x = metrics.preprocess([Image.fromarray(arr)], 16, 20, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (1, 3, 16, 16) and x.min() >= -1 and x.max() <= 1


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import AutoTokenizer, CLIPModel, ViTModel

    root = tmp_path_factory.mktemp("metric_models")
    clip = CLIPModel.from_pretrained(make_clip(root / "clip")).eval()
    dino = ViTModel.from_pretrained(make_dino(root / "dino"), add_pooling_layer=False).eval()
    return clip, AutoTokenizer.from_pretrained(root / "clip"), dino


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_clip_image_features_match_the_model_forward(models):
    clip, _, _ = models
    arrs = _images(2)
    got = metrics.clip_image_features(clip, [Image.fromarray(a) for a in arrs])
    with torch.no_grad():
        want = clip.visual_projection(clip.vision_model(pixel_values=clip_pixels(arrs)).pooler_output)
    assert torch.allclose(got, want, atol=1e-5)
    assert np.allclose(metrics.cosine(got[:1], got[1:]).numpy(), cos(want[:1], want[1:]), atol=1e-5)


def test_clip_text_features_match_the_model_forward(models):
    clip, tokenizer, _ = models
    texts = ["a red circle", "the blue square on the left"]
    got = metrics.clip_text_features(clip, tokenizer, texts)
    for i, text in enumerate(texts):
        ids = tokenizer(text, return_tensors="pt").input_ids
        assert ids[0, 0] == 0 and ids[0, -1] == 1  # <|startoftext|> ... <|endoftext|>
        with torch.no_grad():
            want = clip.text_projection(clip.text_model(input_ids=ids).pooler_output)
        assert torch.allclose(got[i], want[0], atol=1e-5)  # padding does not change the pooled eos token


def test_dino_features_are_the_cls_token_of_the_cropped_image(models):
    _, _, dino = models
    arrs = _images(2, seed=1)
    got = metrics.dino_features(dino, [Image.fromarray(a) for a in arrs])
    with torch.no_grad():
        want = dino(pixel_values=dino_pixels(arrs)).last_hidden_state[:, 0]
    assert got.shape == (2, 16) and torch.allclose(got, want, atol=1e-5)


def test_far_change_and_other_objects():
    src = np.zeros((20, 20, 3), np.float32)
    src[2:6, 2:6] = 1.0  # the edited object
    src[12:16, 12:16] = 0.5  # another object
    mask = np.zeros((20, 20), bool)
    mask[2:6, 2:6] = True
    out = src.copy()
    out[2:6, 2:6] = 0.2  # the edit itself
    out[6:8, 2:6] = 0.3  # spill within 2 px of the mask: near
    assert metrics.far_change(out, src, mask, margin=2) == 0.0
    out[18, 0] = 0.9  # one far pixel, every channel
    far = ~(np.pad(np.ones((8, 8), bool), ((0, 12), (0, 12))))  # outside the mask dilated by 2 px
    assert metrics.far_change(out, src, mask, margin=2) == pytest.approx(0.9 / far.sum())
    others = metrics.other_objects(src, mask, margin=2)
    assert others.sum() == 16 and others[12:16, 12:16].all()  # not the background, not near the edit
    assert metrics.touches_other(out, src, others) is False
    out[12:14, 12:14] = 0.0
    assert metrics.touches_other(out, src, others) is True  # 4 of 16 pixels changed
    assert metrics.touches_other(out, src, np.zeros_like(others)) is None

"""Attention consolidation: parity with the reference chain's intermediates, scipy parity of the filter, properties.

The fixture (tests/fixtures/consolidation/<case>) holds the reference's consolidation.safetensors and, in
maps.safetensors, the conditional row (chunk(2)[1]) of its captured maps text_to_image.2 / .3 ([1, 2, 256, 1024]).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import torch
from safetensors.torch import load_file
from torch.testing import assert_close

from editmgt_core.sampler.consolidate import (
    adaptive_filter,
    adaptive_filter_parts,
    attention_scores,
    consolidate,
    gaussian_blur,
    local_variance,
    min_max,
    percentile,
    text_weights_for,
    upsample,
)

CASE = Path(__file__).parent / "fixtures" / "consolidation" / "case_grid64_gamma1p1_single_capture"
META = json.loads((CASE / "meta.json").read_text())["consolidation"]
REF = load_file(CASE / "consolidation.safetensors")
MAPS = {int(k.split(".")[1]): v for k, v in load_file(CASE / "maps.safetensors").items()}
KW = META["keyword_positions"]
POSITIONS = {
    "reference_default": list(range(256)),  # the reference averages every text row, padding included
    "reference_keyword": KW["reference_clip_positions"],
    "corrected_default": KW["corrected_gemma_valid_positions"],
    "corrected_keyword": KW["corrected_gemma_keyword_positions"],
}
# Max |diff| against the reference once the mean differs by float32 summation order (~1e-9 on values ~1e-3):
# observed <= 8.1e-7 on rescaled/smoothed/upsampled. The filter alone, from the reference's own input, is exact.
CHAIN_ATOL = 2e-6
ULP_ATOL = 1e-7


def one_hot_weights(positions, length=256):
    w = torch.zeros(1, length)
    w[0, positions] = 1.0
    return w


@pytest.mark.parametrize("variant", sorted(POSITIONS))
def test_chain_matches_reference(variant):
    w = one_hot_weights(POSITIONS[variant])
    local = attention_scores(MAPS, w)
    assert_close(local, REF[f"{variant}.local_stacked"], rtol=1e-5, atol=1e-9)
    rescaled = min_max(local)
    assert_close(rescaled, REF[f"{variant}.rescaled"], rtol=0, atol=CHAIN_ATOL)
    smoothed = adaptive_filter(rescaled.view(1, 32, 32))
    assert_close(smoothed.flatten(1), REF[f"{variant}.smoothed"], rtol=0, atol=CHAIN_ATOL)
    up = upsample(smoothed, (64, 64))
    assert_close(up.flatten(1), REF[f"{variant}.upsampled"], rtol=0, atol=CHAIN_ATOL)
    full = consolidate(MAPS, w, (32, 32), (64, 64))
    assert full.shape == (1, 64, 64)
    assert_close(full.flatten(1), REF[f"{variant}.upsampled"].clamp(0, 1), rtol=0, atol=CHAIN_ATOL)


@pytest.mark.parametrize("variant", sorted(POSITIONS))
def test_filter_reproduces_reference_intermediates(variant):
    parts = adaptive_filter_parts(REF[f"{variant}.rescaled"].view(1, 32, 32))
    for name in ("gaussian", "local_var", "local_var_normalized", "adaptive_weight", "smoothed_before_peaks"):
        assert_close(parts[name], REF[f"{variant}.adaptive.{name}"], rtol=0, atol=ULP_ATOL, msg=name)
    assert_close(parts["peak_threshold"].double(), REF[f"{variant}.adaptive.peak_threshold"], rtol=0, atol=ULP_ATOL)
    assert torch.equal(parts["peak_mask"], REF[f"{variant}.adaptive.peak_mask"])
    assert_close(parts["smoothed_after_peaks"], REF[f"{variant}.adaptive.smoothed_after_peaks"], rtol=0, atol=ULP_ATOL)
    assert_close(parts["smoothed"], REF[f"{variant}.smoothed"], rtol=0, atol=ULP_ATOL)
    up = upsample(parts["smoothed"].view(1, 32, 32), (64, 64))
    assert_close(up.flatten(1), REF[f"{variant}.upsampled"], rtol=0, atol=ULP_ATOL)


def scipy_adaptive(s: np.ndarray) -> np.ndarray:
    """The reference's smooth_local_scores(method='adaptive', strength=1.0) on one float32 map, without torch."""
    g = scipy.ndimage.gaussian_filter(s, sigma=1.5, mode="reflect")
    v = scipy.ndimage.generic_filter(s, np.var, size=5)
    v = (v - v.min()) / (v.max() - v.min() + 1e-8)
    w = 1.0 - v * 0.7
    out = w * g + (1 - w) * s
    peaks = s > np.percentile(s, 90)
    out[peaks] = 0.7 * s[peaks] + (1 - 0.7) * out[peaks]
    if out.max() > out.min():
        out = (out - out.min()) / (out.max() - out.min()) * (s.max() - s.min()) + s.min()
    return out


@pytest.mark.parametrize("shape", [(32, 32), (3, 5), (8, 2), (1, 6), (1, 1), (40, 30)])
def test_filter_matches_scipy_on_any_grid(shape):
    rng = np.random.default_rng(sum(shape))
    s = rng.random(shape, dtype=np.float32) ** 3  # skewed, like attention
    t = torch.from_numpy(s)[None]
    assert_close(gaussian_blur(t)[0], torch.from_numpy(scipy.ndimage.gaussian_filter(s, 1.5, mode="reflect")))
    assert_close(local_variance(t)[0], torch.from_numpy(scipy.ndimage.generic_filter(s, np.var, size=5)))
    assert percentile(t.flatten(1), 90.0).item() == np.percentile(s, 90)
    assert_close(adaptive_filter(t)[0], torch.from_numpy(scipy_adaptive(s)), rtol=0, atol=ULP_ATOL)


def test_constant_map_gives_zeros_without_nan():
    s = torch.full((2, 4, 6), 0.3)
    assert torch.equal(adaptive_filter(s), s)  # zero variance: Vn = 0, Sm = G = S, no rescale
    maps = {0: torch.full((1, 2, 3, 12), 0.01)}
    out = consolidate(maps, torch.ones(1, 3), (3, 4), (6, 8))
    assert torch.equal(out, torch.zeros(1, 6, 8))


def random_maps(batch, grid, layers=(3, 5), heads=2, text=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {layer: torch.rand(batch, heads, text, grid[0] * grid[1], generator=g) ** 4 for layer in layers}


def test_batch_rows_equal_single_row_calls():
    maps = random_maps(2, (32, 32))
    w = torch.tensor([[1.0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 0]])
    both = consolidate(maps, w, (32, 32), (64, 64))
    for row in range(2):
        one = consolidate({k: v[row : row + 1] for k, v in maps.items()}, w[row : row + 1], (32, 32), (64, 64))
        assert_close(both[row : row + 1], one, rtol=0, atol=1e-7)
    assert not torch.allclose(both[0], both[1])


def test_non_square_grid_and_range():
    maps = random_maps(3, (3, 5), seed=1)
    out = consolidate(maps, torch.ones(3, 7), (3, 5), (6, 10))
    assert out.shape == (3, 6, 10)
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()
    same = consolidate(maps, torch.ones(3, 7), (3, 5), (3, 5))  # equal grids: no upsample
    assert same.shape == (3, 3, 5)
    raw = consolidate(maps, torch.ones(3, 7), (3, 5), (3, 5), smooth=False)
    assert_close(raw.flatten(1), min_max(attention_scores(maps, torch.ones(3, 7))))


def test_weighted_mean_is_the_mean_over_selected_rows():
    maps = random_maps(1, (2, 2))
    w = torch.tensor([[0.0, 1, 0, 1, 0, 0, 0]])
    stacked = torch.stack([maps[3], maps[5]], dim=1)[:, :, :, [1, 3]]
    assert_close(attention_scores(maps, w), stacked.mean(dim=(1, 2, 3)))


@pytest.mark.parametrize(
    "weights, match",
    [(torch.zeros(1, 7), "select no text token"), (torch.ones(1, 6), r"\[B, T\]"), (-torch.ones(1, 7), "no text")],
)
def test_bad_text_weights_raise(weights, match):
    with pytest.raises(ValueError, match=match):
        consolidate(random_maps(1, (2, 2)), weights, (2, 2), (4, 4))


def test_bad_maps_raise():
    with pytest.raises(ValueError, match="empty"):
        consolidate({}, torch.ones(1, 7), (2, 2), (4, 4))
    with pytest.raises(ValueError, match="grid"):
        consolidate(random_maps(1, (2, 2)), torch.ones(1, 7), (2, 3), (4, 4))


# Offsets as a Gemma fast tokenizer gives them for "make the owl red": <bos> is (0, 0); "▁the" spans its space.
PROMPT = "make the owl red"
TOKENS = [(0, 0), (0, 4), (4, 8), (8, 12), (12, 16)]


def padded(tokens, length, side):
    pad = [(0, 0)] * (length - len(tokens))
    real = [1] * len(tokens)
    if side == "left":
        return [pad + tokens], [[0] * len(pad) + real]
    return [tokens + pad], [real + [0] * len(pad)]


def test_keyword_positions_match_fixture_with_left_padding():
    offsets, mask = padded(TOKENS, 256, "left")
    everything = text_weights_for(offsets, mask, PROMPT)
    assert everything[0].nonzero().flatten().tolist() == KW["corrected_gemma_valid_positions"]
    owl = text_weights_for(offsets, mask, PROMPT, keywords=["owl"])
    assert owl[0].nonzero().flatten().tolist() == KW["corrected_gemma_keyword_positions"]
    assert owl.dtype == torch.float32 and owl.shape == (1, 256)


def test_keyword_positions_right_padding_and_batches():
    offsets, mask = padded(TOKENS, 12, "right")
    assert text_weights_for(offsets, mask, PROMPT)[0].nonzero().flatten().tolist() == [0, 1, 2, 3, 4]
    assert text_weights_for(offsets, mask, PROMPT, ["OWL", "red"])[0].nonzero().flatten().tolist() == [3, 4]
    left, left_mask = padded(TOKENS, 12, "left")
    w = text_weights_for(torch.tensor(offsets + left), torch.tensor(mask + left_mask), PROMPT, ["the owl"])
    assert w[0].nonzero().flatten().tolist() == [2, 3] and w[1].nonzero().flatten().tolist() == [9, 10]


def test_keyword_split_into_subwords_and_repeated():
    text = "put a giraffe next to the giraffe"  # "▁gir" + "affe", twice
    tokens = [(0, 0), (0, 3), (3, 5), (5, 9), (9, 13), (13, 18), (18, 21), (21, 25), (25, 29), (29, 33)]
    w = text_weights_for([tokens], [[1] * len(tokens)], text, ["Giraffe"])
    assert w[0].nonzero().flatten().tolist() == [3, 4, 8, 9]


@pytest.mark.parametrize(
    "keywords, match", [(["cat"], "cat"), (["ow"], "ow"), ([" "], "non-empty"), (["owls"], "owls")]
)
def test_unknown_or_empty_keywords_raise(keywords, match):
    offsets, mask = padded(TOKENS, 8, "left")
    with pytest.raises(ValueError, match=match):
        text_weights_for(offsets, mask, PROMPT, keywords)


def test_keyword_cut_off_by_truncation_raises():
    offsets, mask = [TOKENS[:3]], [[1, 1, 1]]  # "owl" was truncated away
    with pytest.raises(ValueError, match="owl"):
        text_weights_for(offsets, mask, PROMPT, ["owl"])


def test_logit_maps():
    from editmgt_core.sampler.consolidate import change_map, kl_map, logit_maps

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 4, 6, generator=g)
    src = torch.randint(0, 5, (2, 4, 6), generator=g)
    want = 1 - logits.softmax(1).gather(1, src[:, None])[:, 0]
    assert_close(change_map(logits, src), want)
    assert_close(kl_map(logits, logits), torch.zeros(2, 4, 6), atol=1e-6, rtol=0)
    other = torch.randn(2, 5, 4, 6, generator=g)
    kl = (logits.softmax(1) * (logits.log_softmax(1) - other.log_softmax(1))).sum(1)
    assert_close(kl_map(logits, other), 1 - torch.exp(-kl))
    both = logit_maps(["change", "kl"], logits, other, src)
    assert both.shape == (2, 4, 6) and both.min() >= 0 and both.max() <= 1
    assert_close(both, gaussian_blur((change_map(logits, src) + kl_map(logits, other)) / 2, 1.0).clamp(0, 1))
    with pytest.raises(ValueError, match="needs guidance"):
        logit_maps(["kl"], logits, None, src)


def test_maps_with_different_head_counts_average_their_own_heads():
    w = torch.ones(1, 3)
    one = torch.full((1, 1, 3, 4), 0.2)
    four = torch.full((1, 4, 3, 4), 0.6)
    assert_close(attention_scores({"a": one, "b": four}, w), torch.full((1, 4), 0.4))

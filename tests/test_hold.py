"""Region hold: each pure function of the hold map on small hand-made tensors."""

import pytest
import torch

from editmgt_core.sampler.hold import (
    EDITABLE,
    PROTECTED,
    combine_hold,
    free_rows,
    gated_rows,
    grow_map,
    hold_scores,
    hold_tokens,
    pixel_mask_to_tokens,
)


def test_hold_and_mask_helpers():
    pred, src = torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long)
    unknown = torch.tensor([[True, True, True, False]])
    scores = torch.tensor([[0.2, 0.5, 1.0, 0.0]])
    out, hold = hold_tokens(pred, unknown, scores, 0.5, src)
    assert hold.tolist() == [[True, False, False, False]] and out.tolist() == [[1, 0, 0, 0]]
    assert hold_tokens(pred, unknown, scores, 1.0, src)[1].tolist() == [[True, True, True, False]]  # inclusive at 1
    brush = torch.tensor([[[True, False]]])
    assert combine_hold(None, brush, "union").tolist() == [[[2.0, 2.0]]]  # no map (lam 0): nothing held
    assert combine_hold(None, brush, "intersection").tolist() == [[[2.0, -1.0]]]  # the brush alone
    with pytest.raises(ValueError, match="mask_mode"):
        combine_hold(None, torch.ones(1, 2, 2, dtype=torch.bool), "xor")
    pixels = torch.zeros(1, 16, 16)
    pixels[0, :6, :6] = 1.0  # covers cell (0,0) fully, (0,1)/(1,0) by half, (1,1) by a quarter
    assert pixel_mask_to_tokens(pixels, (4, 4), "area")[0, :2, :2].tolist() == [[True, False], [False, False]]
    assert pixel_mask_to_tokens(pixels.bool(), (4, 4), "any")[0, :2, :2].tolist() == [[True, True], [True, True]]
    assert pixel_mask_to_tokens(pixels, (4, 4), "any")[0, 2:].sum() == 0
    with pytest.raises(ValueError, match="rule"):
        pixel_mask_to_tokens(pixels, (4, 4), "most")


def test_gated_rows_are_those_below_the_gate():
    f = torch.tensor([0.2, 0.5, 0.6])
    assert gated_rows(f, 0.5).tolist() == [True, False, False]  # at the gate: held
    assert gated_rows(f, 0.0) is None and gated_rows(None, 0.5) is None


def test_grow_map_is_a_square_max_filter():
    scores = torch.zeros(2, 5, 5)
    scores[0, 0, 0], scores[1, 2, 2] = 0.7, 0.4
    grown = grow_map(scores, 1)
    assert grown.shape == scores.shape and grown.dtype == scores.dtype
    assert torch.equal(grown[0] == 0.7, torch.nn.functional.pad(torch.ones(2, 2), (0, 3, 0, 3)).bool())  # the corner
    assert torch.equal(grown[1] == 0.4, torch.nn.functional.pad(torch.ones(3, 3), (1, 1, 1, 1)).bool())
    assert grown.min() == 0 and grown.max() == 0.7  # no new values: the range stays the map's
    assert grow_map(scores, 0) is scores


def test_free_rows_sets_gated_rows_editable():
    scores = torch.rand(2, 3, 3, generator=torch.Generator().manual_seed(0))
    freed = free_rows(scores, torch.tensor([True, False]))
    assert (freed[0] == EDITABLE).all() and torch.equal(freed[1], scores[1]) and freed.dtype == scores.dtype
    assert free_rows(scores, None) is scores


def test_hold_scores_grows_then_gates_then_brushes():
    scores = torch.zeros(2, 4, 4)
    scores[:, 0, 1] = 0.9  # in the unpainted half, one token from the painted one
    gated = torch.tensor([False, True])
    brush = torch.zeros(2, 4, 4, dtype=torch.bool)
    brush[:, :, 2:] = True  # right half editable
    chained = combine_hold(free_rows(grow_map(scores, 1), gated), brush, "intersection")
    got = hold_scores(scores, grow=1, gated=gated, user_mask=brush, mode="intersection")
    assert torch.equal(got, chained)
    assert (got[0, :2, 2] == scores[0, 0, 1]).all() and (got[0, 2:, 2:] == 0).all()  # grown, then met with the brush
    assert (got[0, :, :2] == PROTECTED).all()
    assert (got[1, :, 2:] == EDITABLE).all() and (got[1, :, :2] == PROTECTED).all()  # a gated row: the brush alone
    no_brush = hold_scores(scores, grow=1, gated=gated, user_mask=None, mode="replace")
    assert torch.equal(no_brush, free_rows(grow_map(scores, 1), gated))
    assert torch.equal(
        hold_scores(None, grow=1, gated=None, user_mask=brush, mode="union"), combine_hold(None, brush, "union")
    )
    assert hold_scores(scores, grow=0, gated=None, user_mask=None, mode="union") is scores  # the map as made
    assert hold_scores(None, grow=2, gated=gated, user_mask=None, mode="union") is None  # neither map nor brush

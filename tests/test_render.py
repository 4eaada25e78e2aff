"""editmgt_core.studio.render: the reveal canvas, the attention overlay and the change measures."""

import numpy as np
import pytest
from PIL import Image
from test_studio import picture

from editmgt_core.studio import render


def test_rendering_and_change_measures():
    canvas = np.asarray(render.reveal_canvas(picture(64, 64), np.eye(8, dtype=bool), side=128))
    assert canvas.shape == (128, 128, 3) and (canvas == (255, 220, 0)).all(-1).any()  # outlines drawn
    hold = np.zeros((8, 8), bool)
    hold[:, :4] = True
    overlay = render.attention_overlay(picture(64, 32), np.random.rand(8, 8), hold, side=128)
    assert overlay.size == (128, 64)
    before = Image.new("RGB", (16, 16), (10, 10, 10))
    after = before.copy()
    after.paste((110, 10, 10), (8, 0, 16, 16))  # right half changed by 100 in one channel
    assert render.mean_change_outside(before, after, hold) == pytest.approx(100 / 3)
    assert render.mean_change_outside(before, after, None) == pytest.approx(50 / 3)
    assert render.change_heatmap(before, after).size == (16, 16)

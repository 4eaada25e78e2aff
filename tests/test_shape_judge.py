"""The shape-aware judge on synthetic renders: right shapes pass, blobs and leftovers fail, neighbours are watched."""

import dataclasses

import cv2
import numpy as np
import pytest

from editmgt_core.evaluation import shape_judge
from editmgt_core.world import drawing, samples
from editmgt_core.world.drawing import Background, Obj, Scene

FLAT = Background("flat", ("gray", "gray"), False, 0.25, 0.0)
SQUARE = Obj("square", "yellow", 0.25, 0.3, 0.12)
CROSS = Obj("cross", "red", 0.75, 0.7, 0.12)
TRIANGLE = Obj("triangle", "blue", 0.5, 0.5, 0.16)
ADD = {"new": {"shape": "triangle", "color": "blue", "x": 0.5, "y": 0.5, "r": 0.16}}


def _img(scene: Scene, size: int) -> np.ndarray:
    return drawing.render(scene, size).astype(np.float32) / 255


def _scenes():
    return Scene(FLAT, (SQUARE, CROSS)), Scene(FLAT, (SQUARE, CROSS, TRIANGLE))


@pytest.mark.parametrize("size", [64, 256])
def test_the_target_itself_passes_at_any_resolution(size):
    src, tgt = _scenes()
    verdict = shape_judge.judge(_img(tgt, size), src, tgt, ADD, "add")
    assert verdict.success and verdict.fit == "triangle" and verdict.iou == 1.0
    assert verdict.others_changed is False


def test_a_round_blob_where_a_triangle_belongs_fails():
    src, tgt = _scenes()
    size = 256
    want = shape_judge.silhouette(_img(tgt, size), "blue")
    blob = shape_judge.ellipse_mask(want, 1.0)  # the triangle's own moments: as close as a blob gets
    out = _img(src, size)
    out[blob] = np.array(drawing.COLORS["blue"]) / 255
    verdict = shape_judge.judge(out, src, tgt, ADD, "add")
    assert not verdict.success and verdict.fit in ("circle", "ellipse")


def test_a_blurred_triangle_fails_where_a_crisp_one_passes():
    src, tgt = _scenes()
    size = 256
    crisp = _img(tgt, size)
    blurred = cv2.GaussianBlur(crisp, (0, 0), 8)  # about what a 64-px decode upscaled 4x looks like, softer
    assert shape_judge.judge(crisp, src, tgt, ADD, "add").success
    assert not shape_judge.judge(blurred, src, tgt, ADD, "add").success


def test_a_removal_that_leaves_the_object_fails():
    tgt, src = _scenes()  # remove the triangle: the source has it
    edit = {"target": dataclasses.asdict(TRIANGLE)}
    left = shape_judge.judge(_img(src, 128), src, tgt, edit, "remove")
    gone = shape_judge.judge(_img(tgt, 128), src, tgt, edit, "remove")
    assert not left.success and left.left > 0.9
    assert gone.success and gone.left == 0.0 and gone.others_changed is False


def test_a_removal_that_takes_a_neighbour_along_is_seen():
    overlap = Obj("cross", "red", 0.58, 0.58, 0.12)  # under the triangle, mostly outside it
    src, tgt = Scene(FLAT, (SQUARE, overlap, TRIANGLE)), Scene(FLAT, (SQUARE, overlap))
    edit = {"target": dataclasses.asdict(TRIANGLE)}
    both_gone = _img(Scene(FLAT, (SQUARE,)), 128)
    verdict = shape_judge.judge(both_gone, src, tgt, edit, "remove")
    assert verdict.success and verdict.others_changed  # the triangle is gone, and so is the cross
    assert shape_judge.judge(_img(tgt, 128), src, tgt, edit, "remove").others_changed is False


def test_a_recolour_that_smears_the_square_beside_it():
    old = Obj("circle", "yellow", 0.5, 0.5, 0.14)
    src, tgt = Scene(FLAT, (SQUARE, old)), Scene(FLAT, (SQUARE, dataclasses.replace(old, color="green")))
    edit = {"target": dataclasses.asdict(old), "new": {"color": "green"}}
    smeared = _img(Scene(FLAT, (dataclasses.replace(SQUARE, r=0.07), tgt.objects[1])), 128)
    verdict = shape_judge.judge(smeared, src, tgt, edit, "recolor")
    assert verdict.success and verdict.others_changed
    unchanged = shape_judge.judge(_img(src, 128), src, tgt, edit, "recolor")
    assert not unchanged.success and unchanged.iou == 0.0  # nothing green: no recolour


def test_world_records_pass_on_their_own_targets():
    passed = []
    for i in range(40):
        rec = samples.record(555, i)
        verdict = shape_judge.judge(_img(rec.tgt_scene, 256), rec.src_scene, rec.tgt_scene, rec.edit, rec.category)
        if rec.category in samples.GLOBAL_CATEGORIES:
            assert verdict.success is None and verdict.others_changed is None
        else:
            passed.append(verdict.success and not verdict.others_changed)
    assert len(passed) > 20 and all(passed)


def test_bad_image_shape():
    src, tgt = _scenes()
    with pytest.raises(ValueError, match="square"):
        shape_judge.judge(np.zeros((64, 32, 3), np.float32), src, tgt, ADD, "add")

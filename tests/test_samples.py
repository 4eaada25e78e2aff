"""Tests for the procedural edit world: determinism, per-category pixel semantics, instruction variety, CLI output."""

import json
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from editmgt_core.world import dataset, drawing, samples, sentences
from editmgt_core.world.drawing import Obj

N_RECORDS = 250


@pytest.fixture(scope="module")
def recs():
    return list(samples.records(seed=7, n=N_RECORDS))


def _index(rec) -> int:
    """Index of the edited object in the source scene."""
    return [samples.obj_dict(o) for o in rec.src_scene.objects].index(rec.edit["target"])


def _solid(objects, i, size=64) -> np.ndarray:
    """Pixels fully covered by objects[i] and untouched by the objects drawn after it."""
    solid = drawing.coverage(objects[i], size) == 1.0
    for o in objects[i + 1 :]:
        solid &= drawing.coverage(o, size) == 0.0
    return solid


def test_deterministic_by_seed():
    a, b, c = samples.record(3, 11), samples.record(3, 11), samples.record(4, 11)
    assert np.array_equal(a.src, b.src) and np.array_equal(a.tgt, b.tgt) and a.instruction == b.instruction
    assert a.edit == b.edit
    assert not (np.array_equal(a.src, c.src) and a.instruction == c.instruction)


def test_shapes_and_types(recs):
    for r in recs[:20]:
        assert r.src.shape == r.tgt.shape == (64, 64, 3) and r.src.dtype == np.uint8
        assert r.mask.shape == (64, 64) and r.mask.dtype == bool
        json.dumps(r.edit)
    big = samples.record(0, 0, size=96)
    assert big.src.shape == (96, 96, 3)
    with pytest.raises(ValueError, match="size"):
        samples.record(0, 0, size=8)


def test_every_category_and_template_variety(recs):
    templates = defaultdict(set)
    for r in recs:
        assert r.category == r.edit["category"]
        templates[r.category].add(r.edit["template"])
    assert set(templates) == set(samples.CATEGORIES)
    for cat, ids in templates.items():
        assert len(ids) >= 5, (cat, ids)


def test_masks_and_unchanged_outside(recs):
    for r in recs:
        if r.category in samples.GLOBAL_CATEGORIES:
            assert r.mask.all()
        else:
            assert r.mask.any() and not r.mask.all()
            assert np.array_equal(r.src[~r.mask], r.tgt[~r.mask]), r.category
            assert r.mask.sum() > (r.src != r.tgt).any(-1).sum()  # dilated


def test_local_edits_match_pixels(recs):
    seen = set()
    for r in recs:
        e, s, t = r.edit, r.src_scene, r.tgt_scene
        if r.category == "recolor":
            i = _index(r)
            solid = _solid(t.objects, i)
            assert solid.any()
            assert (r.tgt[solid] == drawing.COLORS[e["new"]["color"]]).all()
            assert (r.src[solid] == drawing.COLORS[e["target"]["color"]]).all()
        elif r.category == "remove":
            i = _index(r)
            assert len(t.objects) == len(s.objects) - 1
            gone = drawing.coverage(s.objects[i], 64) > 0
            for o in t.objects:
                gone &= drawing.coverage(o, 64) == 0
            bg = np.rint(drawing.render_background(s.background, 64)).astype(np.uint8)
            assert np.array_equal(r.tgt[gone], bg[gone])
        elif r.category == "add":
            new = t.objects[-1]
            assert samples.obj_dict(new) == {k: v for k, v in e["new"].items() if k != "position"}
            assert (r.tgt[_solid(t.objects, len(t.objects) - 1)] == drawing.COLORS[new.color]).all()
            col, row, _ = sentences.POSITIONS[e["new"]["position"]]
            # the instruction decides the target: one size, centred in the named cell
            assert (new.x, new.y, new.r) == pytest.approx(((col + 0.5) / 3, (row + 0.5) / 3, samples.ADD_RADIUS))
        elif r.category == "replace":
            i = _index(r)
            assert t.objects[i].shape == e["new"]["shape"] != s.objects[i].shape
            assert (r.tgt[_solid(t.objects, i)] == drawing.COLORS[s.objects[i].color]).all()
        elif r.category == "resize":
            i = _index(r)
            before, after = drawing.coverage(s.objects[i], 64).sum(), drawing.coverage(t.objects[i], 64).sum()
            assert (after > before * 1.3) if e["new"]["direction"] == "bigger" else (after < before * 0.8)
        seen.add(r.category)
    assert {"recolor", "remove", "add", "replace", "resize"} <= seen


def test_global_edits_match_pixels(recs):
    styles = set()
    for r in recs:
        if r.category == "background":
            new = r.edit["new"]["background"]
            assert new != r.edit["old"]["background"]
            empty = np.ones((64, 64), bool)
            for o in r.tgt_scene.objects:
                empty &= drawing.coverage(o, 64) == 0
            bg = np.rint(drawing.render_background(r.tgt_scene.background, 64)).astype(np.uint8)
            assert np.array_equal(r.tgt[empty], bg[empty])
        elif r.category == "style":
            style = r.edit["new"]["style"]
            styles.add(style)
            if style == "invert":
                assert np.abs(r.tgt.astype(int) + r.src.astype(int) - 255).max() <= 1
            elif style in ("grayscale", "outline"):
                assert (r.tgt[..., 0] == r.tgt[..., 1]).all() and (r.tgt[..., 1] == r.tgt[..., 2]).all()
            elif style == "sepia":
                assert (r.tgt[..., 0] >= r.tgt[..., 2]).all()
    assert styles == set(drawing.STYLES)


def test_referring_expressions_are_unambiguous():
    left, right = Obj("circle", "red", 0.2, 0.5, 0.1), Obj("circle", "blue", 0.8, 0.5, 0.1)
    phrases = {p for p, _ in sentences.referring_expressions((left, right), 0)}
    assert {"the red circle", "the red one", "the left circle", "the circle on the left"} <= phrases
    assert "the circle" not in phrases
    twins = (Obj("star", "red", 0.3, 0.3, 0.1), Obj("star", "red", 0.35, 0.7, 0.1))
    phrases = {p for p, _ in sentences.referring_expressions(twins, 1)}
    assert "the red star" not in phrases and "the red one" not in phrases
    assert "the lower star" in phrases and "the right star" not in phrases  # x gap below the margin
    same = (Obj("star", "red", 0.5, 0.5, 0.1), Obj("star", "red", 0.52, 0.52, 0.1))
    assert sentences.refer(np.random.default_rng(0), same, 0) is None


def test_refs_in_records_name_the_target(recs):
    for r in recs:
        if r.edit["ref"] is None:
            continue
        i = _index(r)
        assert (r.edit["ref"], r.edit["ref_kind"]) in sentences.referring_expressions(r.src_scene.objects, i)
        assert r.edit["ref"].lower() in r.instruction.lower()


def test_cli_writes_manifest(tmp_path, capsys):
    dataset.main(dataset.parse_args(["--n", "6", "--seed", "1", "--out", str(tmp_path), "--size", "32"]))
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 6
    for line in lines:
        row = json.loads(line)
        scenes = {"source_scene", "target_scene"}
        assert set(row) == {"id", "source", "instruction", "target", "mask", "category", "edit"} | scenes
        assert row["category"] in samples.CATEGORIES and row["edit"]["category"] == row["category"]
        for key in ("source", "target", "mask"):
            img = Image.open(tmp_path / row[key])
            assert img.size == (32, 32) and img.mode == ("L" if key == "mask" else "RGB")
    assert "6/6" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--n"):
        dataset.main(dataset.parse_args(["--n", "0", "--out", str(tmp_path)]))


def test_background_edits_name_kind_and_colours_so_every_orientation_period_and_phase_is_right(recs):
    bg = drawing.Background("stripes", ("pink", "gray"), True, 0.25, 0.5)
    stripes = samples.equivalent_backgrounds(bg)
    assert stripes[0] == bg and len(stripes) == len(set(stripes)) == 2 * 4 * 4
    assert {b.vertical for b in stripes} == {True, False}
    assert {(b.kind, b.colors) for b in stripes} == {(bg.kind, bg.colors)}
    checks = drawing.Background("checks", ("pink", "gray"), False, 0.25, 0.0)
    assert len(samples.equivalent_backgrounds(checks)) == 4 * 4  # orientation does not change a checkerboard
    gradient = drawing.Background("gradient", ("beige", "teal"), True, 0.25, 0.0)
    assert [b.vertical for b in samples.equivalent_backgrounds(gradient)] == [True, False]  # the order is said
    flat = drawing.Background("flat", ("teal", "teal"), False, 0.25, 0.0)
    assert samples.equivalent_backgrounds(flat) == [flat]
    backgrounds = [r for r in recs if r.category == "background" and r.tgt_scene.background.kind == "stripes"]
    assert backgrounds
    rec = backgrounds[0]
    others = samples.equivalent_targets(rec.tgt_scene, 64)
    assert len(others) == 31 and not any(np.array_equal(o, rec.tgt) for o in others)
    assert (
        sentences.background_phrase(rec.tgt_scene.background.kind, rec.tgt_scene.background.colors) in rec.instruction
    )  # kind and colours are all the instruction says
    solid = np.zeros((64, 64), bool)
    for i in range(len(rec.tgt_scene.objects)):
        solid |= _solid(rec.tgt_scene.objects, i)
    if rec.tgt_scene.style is None:  # the objects are drawn the same over every background
        assert all(np.array_equal(o[solid], rec.tgt[solid]) for o in others)


def test_rows_carry_both_scenes_exactly(tmp_path):
    manifest = dataset.write_dataset(tmp_path, 40, seed=3, size=48, log_every=1000)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert any(r["category"] == "background" for r in rows)
    for row in rows:
        for key, image in (("source_scene", "source"), ("target_scene", "target")):
            scene = samples.scene_from_dict(row[key])
            assert np.array_equal(drawing.render(scene, 48), np.asarray(Image.open(tmp_path / row[image])))

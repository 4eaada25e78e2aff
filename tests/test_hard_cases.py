"""Tests for the robustness slices: each slice's scenes have their property, ambiguous records fit every candidate,
and the world CLI writes slice and phrasing manifests (sharing images) that world-eval can read."""

import json

import numpy as np
import pytest

from editmgt_core.world import dataset, hard_cases, samples
from editmgt_core.world.sentences import referring_expressions

N = 24


def _index(rec) -> int:
    return [samples.obj_dict(o) for o in rec.src_scene.objects].index(rec.edit["target"])


@pytest.fixture(scope="module")
def slices():
    return {name: [hard_cases.slice_record(2, i, name, 32) for i in range(N)] for name in hard_cases.SLICES}


def test_slice_properties(slices):
    for name, recs in slices.items():
        assert {r.category for r in recs} <= set(hard_cases.SLICE_CATEGORIES)
        assert len({r.category for r in recs}) >= 3, name
        for r in recs:
            assert r.edit["slice"] == name and (r.src != r.tgt).any()
    for r in slices["small"]:
        assert all(hard_cases.SMALL_RADIUS[0] <= o.r <= hard_cases.SMALL_RADIUS[1] for o in r.src_scene.objects)
    for r in slices["overlap"]:
        assert hard_cases.touches(r.src_scene.objects, _index(r))
    for r in slices["crowded"]:
        assert 5 <= len(r.src_scene.objects) <= 6
    for name in ("small", "overlap", "crowded"):  # still unambiguous references
        for r in slices[name]:
            assert (r.edit["ref"], r.edit["ref_kind"]) in referring_expressions(r.src_scene.objects, _index(r))


def test_ambiguous_records_fit_every_candidate(slices):
    words = set()
    for r in slices["ambiguous"]:
        cands = r.edit["candidates"]
        assert 2 <= len(cands) == len(r.candidates) <= 3 and r.edit["ref_kind"] == "ambiguous"
        assert np.array_equal(r.candidates[0][0], r.tgt) and np.array_equal(r.candidates[0][1], r.mask)
        word = r.edit["ambiguity"]
        words.add(word)
        if word == "it":
            assert len(r.src_scene.objects) == len(cands) and " it " in f" {r.instruction.lower()} "
        else:
            shared = {c[word] for c in cands}
            assert len(shared) == 1 and shared.pop() in r.instruction.lower()
            others = [o for o in r.src_scene.objects if samples.obj_dict(o) not in cands]
            assert all(getattr(o, word) not in {c[word] for c in cands} for o in others)
        masks = [m for _, m in r.candidates]
        for j, (tgt, mask) in enumerate(r.candidates):  # each candidate's edit changes only around it
            assert np.array_equal(tgt[~mask], r.src[~mask])
            assert not np.array_equal(tgt, r.candidates[1 - j if j < 2 else 0][0]) and masks[j].any()
    assert words == {"it", "shape", "color"}


def test_slice_records_are_deterministic_and_checked():
    a, b = hard_cases.slice_record(9, 4, "overlap", 32), hard_cases.slice_record(9, 4, "overlap", 32)
    assert a.instruction == b.instruction and np.array_equal(a.src, b.src)
    worded = hard_cases.slice_record(9, 4, "overlap", 32, phrasing="heldout")
    assert np.array_equal(worded.tgt, a.tgt) and worded.edit["held_out"]
    ambiguous = hard_cases.slice_record(9, 4, "ambiguous", 32, phrasing="train")
    assert ambiguous.edit["ref"] in ambiguous.instruction.lower() or "it" in ambiguous.instruction.lower()
    with pytest.raises(ValueError, match="unknown slice"):
        hard_cases.slice_record(0, 0, "tiny")
    with pytest.raises(ValueError, match="size"):
        hard_cases.slice_record(0, 0, "small", 8)


def test_cli_writes_phrasing_sets_sharing_images(tmp_path):
    dataset.main(
        dataset.parse_args(
            [
                "--n",
                "3",
                "--seed",
                "4",
                "--size",
                "32",
                "--out",
                str(tmp_path / "p"),
                "--phrasing",
                "templates,train,heldout",
            ]
        )
    )
    rows = [json.loads(line) for line in (tmp_path / "p" / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 9 and len({r["id"] for r in rows}) == 9
    for i in range(3):
        group = [r for r in rows if r["record"] == i]
        assert [r["phrasing_set"] for r in group] == ["templates", "train", "heldout"]
        assert len({r["source"] for r in group}) == 1
        assert group[0]["instruction"] == samples.record(4, i, 32).instruction
        assert [r["held_out"] for r in group] == [False, False, True]
        assert group[2]["phrasing"] == samples.record(4, i, 32, phrasing="heldout").edit["phrasing"]


def test_cli_writes_ambiguous_candidates(tmp_path):
    args = ["--n", "2", "--size", "32", "--out", str(tmp_path / "a"), "--slice", "ambiguous"]
    dataset.main(dataset.parse_args(args))
    rows = [json.loads(line) for line in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["0000000", "0000001"] and all(r["slice"] == "ambiguous" for r in rows)
    for r in rows:
        assert len(r["candidates"]) == len(r["edit"]["candidates"])
        assert all((tmp_path / "a" / c[k]).is_file() for c in r["candidates"] for k in ("target", "mask"))
    with pytest.raises(SystemExit):
        dataset.parse_args(["--n", "1", "--out", str(tmp_path), "--phrasing", "train,pirate"])

"""Tests for world-eval's phrasing-set and ambiguity sections, on known outputs (no model needed)."""

import json

import numpy as np
from PIL import Image

from editmgt_core.evaluation import world_eval, world_report
from editmgt_core.world import hard_cases, paraphrase


def _ambiguous(tmp_path, index=0):
    rec = next(
        r
        for i in range(index, index + 50)
        if (r := hard_cases.slice_record(3, i, "ambiguous", 64)).category in ("recolor", "replace")
    )
    row = {"candidates": []}
    for j, (tgt, mask) in enumerate(rec.candidates):
        Image.fromarray(tgt).save(tmp_path / f"t{j}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / f"m{j}.png")
        row["candidates"].append({"target": f"t{j}.png", "mask": f"m{j}.png"})
    return rec, row


def _images(rec, out, scores=None):
    image = Image.fromarray(out)
    return {"source": Image.fromarray(rec.src), "off": image, "on": image, "scores": scores}


def test_ambiguity_outcomes(tmp_path):
    rec, row = _ambiguous(tmp_path)
    (t0, m0), (t1, m1) = rec.candidates[:2]
    first = world_eval.ambiguity_columns(row, tmp_path, _images(rec, t0))
    assert first["ambiguity_off"] == "one" and first["edited_candidate_off"] == 0
    second = world_eval.ambiguity_columns(row, tmp_path, _images(rec, t1))
    assert second["ambiguity_on"] == "one" and second["edited_candidate_on"] == 1
    both = np.where(m1[..., None], t1, t0)  # both candidates edited
    assert world_eval.ambiguity_columns(row, tmp_path, _images(rec, both))["ambiguity_off"] == "several"
    assert world_eval.ambiguity_columns(row, tmp_path, _images(rec, rec.src))["ambiguity_off"] == "other"
    assert world_eval.ambiguity_columns({}, tmp_path, _images(rec, rec.src)) == {}


def test_ambiguity_map_columns(tmp_path):
    rec, row = _ambiguous(tmp_path)
    t1, m1 = rec.candidates[1]
    grid = np.asarray(Image.fromarray(m1.astype(np.uint8) * 255).resize((16, 16), Image.BOX), np.float32) / 255
    cols = world_eval.ambiguity_columns(row, tmp_path, _images(rec, t1, scores=grid))
    assert cols["map_top_candidate"] == 1 and cols["map_points_at_edited"] is True
    assert cols["map_on_candidates"] > 0.7 and cols["map_top_share"] > 0.6


def test_phrasing_and_ambiguity_tables():
    rows = [
        {"category": c, "phrasing_set": s, "success_off": ok, "success_on": ok}
        for s, c, ok in [
            ("templates", "remove", True),
            ("templates", "style", True),
            ("heldout", "remove", False),
            ("heldout", "style", True),
        ]
    ]
    table = world_report.phrasing_table(rows, 0.0)
    assert "| templates | λ=0 | 2 | 100.0% | 100.0% | 100.0% |" in table
    assert "| heldout | λ=0 | 2 | 50.0% | 0.0% | 100.0% |" in table and "λ=0.2" not in table
    assert world_eval.phrasing_summary(rows)["heldout"]["overall"]["success_off"] == 0.5
    assert world_report.phrasing_table([{"category": "remove"}], 0.0) == ""
    amb = [{"ambiguity_off": o} for o in ("one", "one", "several", "other")]
    assert "| λ=0 | 4 | 50.0% | 25.0% | 25.0% |" in world_report.ambiguity_table(amb, 0.0)


def test_manifest_columns_only_for_opt_in_rows():
    assert world_eval.manifest_columns({"id": "1", "instruction": "x", "category": "add"}) == {}
    cols = world_eval.manifest_columns({"phrasing": "lets", "held_out": False, "phrasing_set": "train", "record": 3})
    assert cols == {"phrasing": "lets", "held_out": False, "phrasing_set": "train", "record": 3}
    assert paraphrase.template_key({"category": "style", "new": {"style": "sepia"}}) == "style:sepia"


def test_world_eval_generates_an_ambiguous_slice_under_two_phrasings(tmp_path, capsys):
    from tiny_model import make_model_folder

    from editmgt_core import cli

    model = make_model_folder(tmp_path / "tiny")
    out = tmp_path / "eval"
    argv = [
        "world-eval",
        "--world-seed",
        "5",
        "--n",
        "2",
        "--slice",
        "ambiguous",
        "--phrasing",
        "templates,heldout",
        "--model",
        str(model),
        "--out",
        str(out),
        "--steps",
        "2",
        "--lam",
        "0.3",
        "--quiet",
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| templates | λ=0 | 2 |" in printed and "| heldout | λ=0.3 | 2 |" in printed
    assert "Ambiguous instructions" in printed and "| λ=0.3 | 4 |" in printed
    report = json.loads((out / "world_eval.json").read_text())
    assert [r["phrasing_set"] for r in report["records"]] == ["templates", "heldout"] * 2
    assert all(
        r["ambiguity_on"] in world_report.AMBIGUITY_OUTCOMES and 0 <= r["map_on_candidates"] <= 1
        for r in report["records"]
    )
    assert (out / "world" / "manifest.jsonl").is_file() and set(report["phrasing_sets"]) == {"templates", "heldout"}
    assert cli.main(["world-eval", "--out", str(out), "--slice", "small"]) == 1  # nothing to evaluate
    assert "give --manifest" in capsys.readouterr().err

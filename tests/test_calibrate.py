"""Attention-band calibration: the ranking measures, band choice, and the command on a tiny model."""

import re

import numpy as np
import pytest
from tiny_model import make_model_folder

from editmgt_core import cli
from editmgt_core.evaluation.calibrate import (
    LayerScore,
    RecordMaps,
    add_source_maps,
    auc,
    best_band,
    local_records,
    map_auc,
    suggest_gate,
    topk_iou,
)
from editmgt_core.world.samples import GLOBAL_CATEGORIES


def test_auc_and_topk_iou():
    inside = np.array([True, True, False, False, False])
    assert auc(np.array([0.9, 0.8, 0.1, 0.2, 0.3]), inside) == 1.0
    assert auc(np.array([0.1, 0.2, 0.9, 0.8, 0.7]), inside) == 0.0
    assert auc(np.ones(5), inside) == 0.5  # ties count half
    assert auc(np.ones(5), np.zeros(5, bool)) is None
    assert topk_iou(np.array([0.9, 0.1, 0.8, 0.0, 0.0]), inside) == pytest.approx(1 / 3)
    assert topk_iou(np.arange(5.0), np.ones(5, bool)) is None


def test_best_band_is_the_contiguous_run_with_the_highest_mean_auc():
    scores = [LayerScore(i, a, 0.0) for i, a in enumerate([0.5, 0.7, 0.9, 0.8, 0.4])]
    assert best_band(scores, 1) == (2,)
    assert best_band(scores, 3) == (2,)  # a longer band would lower the mean
    flat = [LayerScore(i, 0.6, 0.0) for i in range(4)]
    assert len(best_band(flat, 3)) == 3  # equal means: the widest band averages more evidence
    assert best_band([*scores, LayerScore("s1", 0.99, 0.0)], 1) == (2,)  # source maps are not part of a band


def test_source_maps_join_the_band_while_they_raise_the_maps_auc():
    inside = [np.array([True, True, False, False]), np.array([False, True, True, False])]
    noise = [np.array([0.5, 0.1, 0.4, 0.3]), np.array([0.6, 0.2, 0.1, 0.5])]  # AUC 0.5 and 0
    good = [m.astype(float) for m in inside]  # AUC 1
    maps = RecordMaps({0: noise, "s0": good, "s1": noise, "s2": [0.5 * g for g in good]}, inside)
    assert map_auc(maps, [0]) == pytest.approx(0.25) and map_auc(maps, ["s0"]) == 1.0
    want = np.mean([auc(n + g, i) for n, g, i in zip(noise, good, inside, strict=True)])
    assert map_auc(maps, [0, "s0"]) == pytest.approx(want)
    layers, value = add_source_maps(maps, (0,), most=3)
    assert layers[:2] == (0, "s0") and "s1" not in layers and value >= map_auc(maps, [0, "s0"])
    assert add_source_maps(maps, (0,), most=1) == ((0, "s0"), map_auc(maps, [0, "s0"]))
    assert add_source_maps(RecordMaps({0: noise}, inside), (0,), most=2) == ((0,), map_auc(maps, [0]))


def test_local_records_skip_global_categories():
    records = local_records(3, 12, 32)
    assert len(records) == 12 and all(r.category not in GLOBAL_CATEGORIES for r in records)
    whole = local_records(3, 5, 32, whole_image=True)
    assert len(whole) == 5 and all(r.category in GLOBAL_CATEGORIES for r in whole)


def test_suggested_gate_separates_whole_image_from_local_focus():
    gate = suggest_gate(local=[0.8, 0.85, 0.9, 0.62], whole_image=[0.4, 0.5, 0.6, 0.82])
    assert gate.value == 0.605 and (gate.whole_image_gated, gate.local_gated) == (0.75, 0.0)  # 0.62 stays held
    assert suggest_gate([0.3, 0.4], [0.8, 0.9]).value == 0.0  # no gate helps: hold always


def test_command_scores_every_block(tmp_path, capsys):
    folder = make_model_folder(tmp_path)
    assert cli.main(["calibrate-layers", "--model", str(folder), "--records", "3", "--size", "32"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out[1:] if re.fullmatch(r"s?\d+", line.split()[0])]
    depth = len(rows) // 2
    assert [r[0] for r in rows] == [str(i) for i in range(depth)] + [f"s{i}" for i in range(depth)] and depth >= 2
    assert all(0.0 <= float(r[1]) <= 1.0 for r in rows)
    assert out[-5].startswith("best band (mean AUC): [")
    assert out[-4].startswith('suggested layers: "attention_layers": [')
    assert out[-1].startswith('suggested gate: "focus_gate": ') and "whole-image edits" in out[-1]
    assert cli.main(["calibrate-layers", "--model", str(folder), "--records", "0"]) == 1


def test_command_scores_map_recipes_and_writes_the_choice(tmp_path, capsys):
    import json

    folder = make_model_folder(tmp_path)
    assert cli.main(["calibrate-layers", "--model", str(folder), "--records", "2", "--size", "32", "--write"]) == 0
    out = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(out) if line.startswith("map recipes"))
    stop = next(i for i, line in enumerate(out) if line.startswith("best band"))
    families = out[start + 2 : stop]
    names = {line[:34].strip() for line in families}
    assert {"the model's map now", "predicted change", "image rows -> instruction"} <= names
    ious = [float(line[34:].split()[1]) for line in families]
    assert ious == sorted(ious, reverse=True) and all(0 <= v <= 1 for v in ious)  # best first
    best = json.loads(re.search(r"(\[.*?\]) / ", families[0])[1])
    settings = json.loads((folder / "editmgt_studio.json").read_text())
    assert settings["attention_layers"] == best and "focus_gate" in settings["defaults"]
    if not any(isinstance(e, int) for e in best):
        assert settings["reference_layers"] == [1, 2]  # the blocks read before stay the reference band

"""Benchmark evaluation against hand-computed values (tiny random CLIP / DINO), converters, and the world evaluation."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_metric_models import clip_pixels, cos, dino_pixels, make_clip, make_dino
from tiny_model import make_model_folder

from editmgt_core import cli
from editmgt_core.evaluation.convert import cell_image
from editmgt_core.evaluation.evaluate import module_argv
from editmgt_core.world import dataset, samples

HEADER = "| Method | N | CLIP-I ↑ | CLIP-out ↑ | L1 ↓ | DINO ↑ | Leakage ↓ |"


@pytest.fixture(scope="module")
def metric_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("metric_models")
    return make_clip(root / "clip"), make_dino(root / "dino")


def rgb(seed: int, size=(32, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def save(path: Path, arr: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path.name if path.parent.name == "data" else f"{path.parent.name}/{path.name}"


def test_evaluate_matches_hand_computed_metrics(tmp_path, metric_models, capsys):
    from transformers import AutoTokenizer, CLIPModel, ViTModel

    data, pred = tmp_path / "data", tmp_path / "pred"
    src = {k: rgb(i) for i, k in enumerate("abc")}
    tgt = {k: rgb(10 + i) for i, k in enumerate("abc")}
    out = {"a": rgb(20), "b": rgb(21)}  # no prediction for c
    mask = np.zeros((32, 32), bool)
    mask[8:20, 4:30] = True
    rows = []
    for k in "abc":
        row = {"id": k, "source": save(data / f"{k}_src.png", src[k]), "target": save(data / f"{k}_tgt.png", tgt[k])}
        rows.append({**row, "instruction": "make it red", "category": "one" if k == "a" else "two"})
    rows[0].update(mask=save(data / "a_mask.png", mask.astype(np.uint8) * 255), output_caption="a red circle")
    (data / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for k, arr in out.items():
        save(pred / f"{k}.png", arr)

    clip_path, dino_path = metric_models
    argv = ["evaluate", "--manifest", str(data / "m.jsonl"), "--pred", str(pred), "--out", str(tmp_path / "report")]
    assert cli.main([*argv, "--clip-model", str(clip_path), "--dino-model", str(dino_path), "--name", "tiny"]) == 0
    printed = capsys.readouterr().out
    assert HEADER in printed and "| tiny | 2 |" in printed and "Per category" in printed
    report = json.loads((tmp_path / "report" / "eval.json").read_text())
    method = report["methods"][0]
    assert method["missing"] == ["c"] and method["n"] == 2
    got = {r["id"]: r for r in method["items"]}

    clip = CLIPModel.from_pretrained(clip_path).eval()
    dino = ViTModel.from_pretrained(dino_path, add_pooling_layer=False).eval()
    with torch.no_grad():
        image_emb = lambda arrs: clip.visual_projection(clip.vision_model(pixel_values=clip_pixels(arrs)).pooler_output)
        ids = AutoTokenizer.from_pretrained(clip_path)("a red circle", return_tensors="pt").input_ids
        text_emb = clip.text_projection(clip.text_model(input_ids=ids).pooler_output)
        dino_cls = lambda arrs: dino(pixel_values=dino_pixels(arrs)).last_hidden_state[:, 0]
        for k in "ab":
            unit = lambda a: a.astype(np.float64) / 255
            assert got[k]["l1"] == pytest.approx(np.abs(unit(out[k]) - unit(tgt[k])).mean(), abs=1e-6)
            assert got[k]["clip_i"] == pytest.approx(cos(image_emb([out[k]]), image_emb([tgt[k]]))[0], abs=1e-5)
            assert got[k]["dino"] == pytest.approx(cos(dino_cls([out[k]]), dino_cls([tgt[k]]))[0], abs=1e-5)
        assert got["a"]["clip_out"] == pytest.approx(cos(image_emb([out["a"]]), text_emb)[0], abs=1e-5)
    leak = np.abs(out["a"][~mask].astype(np.float64) - src["a"][~mask]).mean() / 255
    assert got["a"]["leakage"] == pytest.approx(leak, abs=1e-6)
    assert "clip_out" not in got["b"] and "leakage" not in got["b"]  # no caption, no mask, no hold
    overall = method["overall"]
    assert overall["l1"] == pytest.approx((got["a"]["l1"] + got["b"]["l1"]) / 2)
    assert overall["clip_out"] == pytest.approx(got["a"]["clip_out"]) and overall["n_clip_out"] == 1
    assert (tmp_path / "report" / "eval.md").read_text().splitlines()[2] == HEADER


def test_leakage_falls_back_to_the_recorded_hold_mask(tmp_path, capsys):
    data, pred = tmp_path / "data", tmp_path / "pred"
    src, out = rgb(0), rgb(0).copy()
    out[20:, :] = 0  # changes in the bottom half only
    row = {"id": "x/1", "source": save(data / "src.png", src), "target": save(data / "tgt.png", rgb(1))}
    (data / "m.jsonl").write_text(json.dumps({**row, "instruction": "x"}) + "\n")
    save(pred / "images" / "x_1.png", out)
    hold = np.zeros((4, 4), bool)
    hold[:2] = True  # tokens of the top half held to the source: leakage counts rows 0..15
    save(pred / "hold" / "x_1.png", hold.astype(np.uint8) * 255)
    record = {"id": "x/1", "status": "ok", "output": "images/x_1.png", "hold": "hold/x_1.png"}
    (pred / "results.jsonl").write_text(json.dumps(record) + "\n")
    assert (
        cli.main(["evaluate", "--manifest", str(data / "m.jsonl"), "--pred", str(pred), "--metrics", "l1,leakage"]) == 0
    )
    assert HEADER in capsys.readouterr().out
    item = json.loads((pred / "eval.json").read_text())["methods"][0]["items"][0]
    assert item["leakage"] == 0.0  # rows 0..15 unchanged
    hold[:] = True
    save(pred / "hold" / "x_1.png", hold.astype(np.uint8) * 255)
    assert cli.main(["evaluate", "--manifest", str(data / "m.jsonl"), "--pred", str(pred), "--metrics", "leakage"]) == 0
    item = json.loads((pred / "eval.json").read_text())["methods"][0]["items"][0]
    assert item["leakage"] == pytest.approx(np.abs(out.astype(float) - src).mean() / 255)


def test_evaluate_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["evaluate", "--manifest", "m.jsonl", "--pred", str(tmp_path / "no"), "--metrics", "l1"]) == 1
    assert "prediction folder not found" in capsys.readouterr().err
    assert cli.main(["evaluate", "--manifest", "m.jsonl", "--pred", str(tmp_path), "--metrics", "fid"]) == 1
    assert "unknown ['fid']" in capsys.readouterr().err
    assert module_argv(["world", "--limit", "3"]) == ["world-eval", "--limit", "3"]
    assert module_argv(["--pred", "p"]) == ["evaluate", "--pred", "p"]


def test_emu_edit_converter(tmp_path, capsys):
    rows = [
        {
            "image": "pics/a.jpg",
            "instruction": "add a hat",
            "input_caption": "a dog",
            "output_caption": "a dog with a hat",
            "task": "add",
            "idx": 7,
        },
        {
            "image": {"path": "pics/b.png"},
            "instruction": "make it night",
            "input_caption": "a street",
            "output_caption": "a street at night",
            "task": "global",
            "idx": 8,
        },
    ]
    Image.fromarray(rgb(3)).save(tmp_path / "a.jpg")
    save(tmp_path / "emu" / "pics" / "b.png", rgb(4))
    (tmp_path / "emu" / "pics" / "a.jpg").write_bytes((tmp_path / "a.jpg").read_bytes())
    src = tmp_path / "emu" / "test.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli.main(["convert", "emu-edit", "--input", str(src), "--out", str(tmp_path / "o")]) == 0
    assert "2 items" in capsys.readouterr().out
    items = [json.loads(line) for line in (tmp_path / "o" / "manifest.jsonl").read_text().splitlines()]
    assert [i["id"] for i in items] == ["7", "8"] and items[0]["source"] == items[0]["target"] == "images/7.png"
    assert items[1]["output_caption"] == "a street at night" and items[1]["category"] == "global"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / "images" / "8.png")), rgb(4))

    buf = io.BytesIO()
    Image.fromarray(rgb(5)).save(buf, format="PNG")  # the hub's parquet cells: {"bytes": ..., "path": ...}
    assert np.array_equal(np.asarray(cell_image({"bytes": buf.getvalue(), "path": "x.png"}, tmp_path)), rgb(5))
    src.write_text(json.dumps({"image": "pics/a.jpg", "instruction": "x"}) + "\n")
    assert cli.main(["convert", "emu-edit", "--input", str(src), "--out", str(tmp_path / "o")]) == 1
    assert "lacks the columns" in capsys.readouterr().err


def test_emu_edit_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    from editmgt_core.evaluation.convert import convert_emu_edit

    buf = io.BytesIO()
    Image.fromarray(rgb(5)).save(buf, format="PNG")
    table = pa.table(
        {
            "image": [{"bytes": buf.getvalue(), "path": "x.png"}],
            "instruction": ["add a hat"],
            "input_caption": ["a"],
            "output_caption": ["b"],
            "task": ["add"],
            "idx": [0],
        }
    )
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "test-00000-of-00001.parquet")
    manifest = convert_emu_edit(tmp_path, tmp_path / "o", split="test")
    assert json.loads(manifest.read_text())["instruction"] == "add a hat"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / "images" / "0.png")), rgb(5))


def test_magicbrush_converter(tmp_path):
    test = tmp_path / "MagicBrush" / "test"
    img = test / "images" / "42"
    for name, seed in (("42-input.png", 0), ("42-output1.png", 1), ("42-output2.png", 2)):
        save(img / name, rgb(seed))
    white = rgb(9).copy()
    white[4:10, 5:12] = 255  # white paint over the image
    save(img / "42-mask1.png", white)
    rgba = np.concatenate([rgb(8), np.full((32, 32, 1), 255, np.uint8)], -1)
    rgba[20:30, 0:8, 3] = 0  # transparent region
    Image.fromarray(rgba, "RGBA").save(img / "42-mask2.png")
    sessions = {
        "42": [
            {"input": "42-input.png", "mask": "42-mask1.png", "instruction": "add a hat", "output": "42-output1.png"},
            {
                "input": "42-output1.png",
                "mask": "42-mask2.png",
                "instruction": "make it blue",
                "output": "42-output2.png",
            },
        ]
    }
    (test / "edit_sessions.json").write_text(json.dumps(sessions))
    (test / "global_descriptions.json").write_text(json.dumps({"42": {"42-output2.png": "a blue dog"}}))
    out = tmp_path / "mb"
    assert cli.main(["convert", "magicbrush", "--input", str(tmp_path / "MagicBrush"), "--out", str(out)]) == 0
    items = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [i["id"] for i in items] == ["42-1", "42-2"] and [i["category"] for i in items] == ["turn1", "turn2"]
    assert (out / items[1]["source"]).resolve() == (img / "42-output1.png").resolve()  # single-turn: GT input
    assert items[1]["output_caption"] == "a blue dog" and "output_caption" not in items[0]
    m1, m2 = (np.asarray(Image.open(out / i["mask"])) > 127 for i in items)
    want1 = np.zeros((32, 32), bool)
    want1[4:10, 5:12] = True
    want2 = np.zeros((32, 32), bool)
    want2[20:30, 0:8] = True
    assert np.array_equal(m1, want1 | (rgb(9).min(-1) >= 250)) and np.array_equal(m2, want2)
    assert cli.main(["convert", "magicbrush", "--input", str(tmp_path), "--out", str(out)]) == 1


def test_world_eval_on_a_tiny_model(tmp_path, capsys):
    model = make_model_folder(tmp_path / "tiny")
    manifest = dataset.write_dataset(tmp_path / "world", n=3, seed=11)
    out = tmp_path / "eval"
    argv = ["world-eval", "--manifest", str(manifest), "--model", str(model), "--out", str(out), "--limit", "3"]
    argv += ["--steps", "2", "--guidance-scale", "2", "--negative-prompt", "", "--lam", "0.3", "--quiet"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| Category | N | Success λ=0 | Success λ=0.3 |" in printed and "**overall** | 3 |" in printed
    report = json.loads((out / "world_eval.json").read_text())
    assert report["lam"] == 0.3 and len(report["records"]) == 3 and report["overall"]["n"] == 3
    categories = [json.loads(line)["category"] for line in manifest.read_text().splitlines()]
    for rec, category in zip(report["records"], categories, strict=True):
        assert rec["category"] == category and isinstance(rec["success_on"], bool)
        assert rec["success_on"] >= rec["success_exact_on"]  # another right answer can only add a success
        assert isinstance(rec["success_vq"], bool)
        local = category not in samples.GLOBAL_CATEGORIES
        assert (rec["leakage_on"] is not None) == local and (rec.get("iou_on") is not None) == local
        if local:
            assert 0 <= rec["leakage_on"] <= 1 and 0 <= rec["iou_on"] <= 1 and 0 <= rec["vq_floor"] <= 1
            assert 0 <= rec["leakage_vq"] <= 1 and 0 < rec["iou_grid"] <= 1
        else:
            assert "iou_grid" not in rec
        # the shape judge, beside the pixel judge: its own verdict on local edits, the pixel judge's on global ones
        assert isinstance(rec["shape_on"], bool) and isinstance(rec["shape_vq"], bool)
        assert (rec["others_changed_on"] is not None) == local
        assert local or (rec["shape_on"], rec["shape_vq"]) == (rec["success_on"], rec["success_vq"])
    assert "| Shape judge λ=0 | Shape judge λ=0.3 |" in printed
    assert set(report["checks"]) >= {"success overall (λ on)", "leakage ratio on/off"}
    for name in ("world_eval.png", "world_examples.png"):
        Image.open(out / name).load()
    assert (out / "world_eval.md").read_text().startswith("| Category |")


def test_a_background_edit_is_judged_against_every_background_its_instruction_allows(tmp_path):
    from editmgt_core.evaluation import metrics
    from editmgt_core.evaluation.world_eval import other_right_targets

    manifest = dataset.write_dataset(tmp_path, 150, seed=4, size=64, log_every=1000)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    backgrounds = [r for r in rows if r["category"] == "background"]
    row = next(r for r in backgrounds if r["target_scene"]["background"]["kind"] == "stripes")
    src, tgt = (metrics.to_unit(Image.open(tmp_path / row[k]).convert("RGB")) for k in ("source", "target"))
    whole = np.ones(src.shape[:2], bool)
    others = [metrics.to_unit(t) for t in other_right_targets(row, (64, 64))]
    assert len(others) == 31
    # the same stripes turned the other way: a right edit that the exact target alone calls a failure
    background = samples.scene_from_dict(row["target_scene"]).background
    kinds = samples.equivalent_backgrounds(background)[1:]
    turned = next(o for o, b in zip(others, kinds, strict=True) if b.vertical != background.vertical)
    assert not metrics.edit_success(turned, src, tgt, whole)[0]
    assert any(metrics.edit_success(turned, src, t, whole)[0] for t in others)
    assert other_right_targets({k: v for k, v in row.items() if k != "target_scene"}, (64, 64)) == []  # older rows
    assert other_right_targets(next(r for r in rows if r["category"] == "recolor"), (64, 64)) == []


def test_tokenizer_ceiling_is_the_targets_round_trip(tmp_path):
    from editmgt_core.edit.editing import prepare, resolve_options
    from editmgt_core.evaluation.metrics import to_unit
    from editmgt_core.evaluation.world_eval import target_round_trip
    from editmgt_core.model.loading import load_editor

    editor = load_editor(make_model_folder(tmp_path / "tiny"))
    rec = samples.record(5, 0, 32)
    source, target = Image.fromarray(rec.src), Image.fromarray(rec.tgt)
    prepared = prepare(editor, source, rec.instruction, resolve_options(editor, None))
    # a target equal to the source has the source's tokens everywhere: keep_pixels gives the source back exactly
    src = to_unit(source)
    assert np.array_equal(to_unit(target_round_trip(editor, prepared, source, True)), src)
    plain = to_unit(target_round_trip(editor, prepared, source, False))  # the bare VQ round trip is not lossless
    assert plain.shape == (32, 32, 3) and np.abs(plain - src).mean() > 0.01
    # a target that differs changes tokens, and those show the target's decode, not the source's pixels
    assert not np.array_equal(to_unit(target_round_trip(editor, prepared, target, True)), src)


def test_world_table_has_one_column_per_metric_when_hold_is_off():
    from editmgt_core.evaluation.world_eval import markdown_table

    stats = {
        "n": 2,
        "success_off": 0.5,
        "success_on": 0.5,
        "success_vq": 1.0,
        "leakage_off": 0.06,
        "leakage_on": 0.06,
        "vq_floor": 0.02,
        "iou_on": None,
        "held_fraction_on": 0.0,
    }
    summary = {"categories": {"recolor": stats}, "overall": stats}
    off = markdown_table(summary, 0.0).splitlines()[0]
    assert off == (
        "| Category | N | Success λ=0 | Tokenizer ceiling | Leakage λ=0 | Leakage, target's tokens | VQ floor "
        "| IoU, exact map on the attention grid |"
    )
    on = markdown_table(summary, 0.3).splitlines()[0]
    assert on.count("λ=0.3") == 3 and "| Success λ=0 | Success λ=0.3 |" in on


def test_acceptance_counts_a_drop_of_exactly_three_points_as_met():
    from editmgt_core.evaluation.world_eval import acceptance_checks, summarize

    def rows(off, on):  # 300 records; success_off / success_on on the first `off` / `on` of them
        return [
            {"category": "recolor", "success_off": i < off, "success_on": i < on, "seconds_on": 1.0} for i in range(300)
        ]

    for off, on, met in ((244, 235, True), (244, 234, False)):  # 81.3% -> 78.3% (3.0 points), -> 78.0% (3.3)
        table = rows(off, on)
        check = acceptance_checks(summarize(table), table)["success drop off -> on"]
        assert check["pass"] is met and check["value"] == pytest.approx((off - on) / 300)

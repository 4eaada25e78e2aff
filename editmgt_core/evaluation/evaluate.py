"""Benchmark evaluation of a prediction folder against a manifest, in the layout of the paper's Table 1.

    python -m editmgt_core evaluate --manifest M.jsonl --pred DIR [--pred DIR2 ...] [--out DIR]

Metrics per item (images as float in [0, 1]; see metrics.py for the exact definitions and preprocessing):
  CLIP-I    CLIP image-image cosine, output vs reference image
  CLIP-out  CLIP image-text cosine, output vs the manifest's `output_caption` (items without one are skipped)
  L1        mean absolute pixel difference, output (bicubic-resized to the reference's size) vs reference
  DINO      DINO CLS cosine, output vs reference image
  Leakage   mean absolute change from the source outside the edit region: the manifest's `mask` (white = edit)
            when present, else the region-hold mask recorded by `batch` (hold/<id>.png: held tokens = outside)
The reference image is the manifest's `target` (MagicBrush: the ground-truth edit; Emu Edit, which has no ground
truth: the input image, per its protocol; see `convert`). Default models, as the benchmark papers (Emu Edit,
MagicBrush, EditMGT Table 1): CLIP ViT-B/32 `openai/clip-vit-base-patch32` (CLIPModel) and DINO ViT-S/16
`facebook/dino-vits16` (ViTModel); any transformers model id or local folder of those classes works.

A prediction folder is a `batch` output folder (results.jsonl / items/*.json give each id's image and hold mask) or
any folder of images named `<id>.png` (or .jpg/.jpeg/.webp, also under images/).

Converters (`convert.py`) turn the Emu Edit and MagicBrush test sets into manifests; the world evaluation is
`world_eval.py`. `python -m editmgt_core.evaluation.evaluate ARGS` = `python -m editmgt_core evaluate ARGS`, and
`python -m editmgt_core.evaluation.evaluate world ARGS` = `python -m editmgt_core world-eval ARGS`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..edit.files import open_image, open_mask, write_bytes_atomic, write_json_atomic
from ..edit.manifests import Item, file_key, read_manifest, resolve_path
from . import metrics

CLIP_MODEL = "openai/clip-vit-base-patch32"
DINO_MODEL = "facebook/dino-vits16"
METRICS = ("clip-i", "clip-out", "l1", "dino", "leakage")
COLUMNS = (
    ("clip_i", "CLIP-I ↑", 3),
    ("clip_out", "CLIP-out ↑", 3),
    ("l1", "L1 ↓", 3),
    ("dino", "DINO ↑", 3),
    ("leakage", "Leakage ↓", 4),
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class FeatureModels:
    """The CLIP and DINO models of the embedding metrics (None when not needed)."""

    clip: object | None = None
    tokenizer: object | None = None
    dino: object | None = None

    @classmethod
    def load(cls, metric_names, clip_id: str = CLIP_MODEL, dino_id: str = DINO_MODEL, device: str = "cpu"):
        from transformers import AutoTokenizer, CLIPModel, ViTModel

        models = cls()
        try:
            if {"clip-i", "clip-out"} & set(metric_names):
                models.clip = CLIPModel.from_pretrained(clip_id).to(device).eval()
                models.tokenizer = AutoTokenizer.from_pretrained(clip_id)
            if "dino" in metric_names:
                models.dino = ViTModel.from_pretrained(dino_id, add_pooling_layer=False).to(device).eval()
        except OSError as err:
            raise OSError(
                f"cannot load the metric models ({' '.join(str(err).split())[:300]}). Download them once with "
                f"`hf download {clip_id}` / `hf download {dino_id}`, pass local folders with --clip-model / "
                f"--dino-model, or leave those metrics out with --metrics l1,leakage"
            ) from None
        return models


def find_predictions(pred: Path) -> dict[str, dict]:
    """id or file key -> {"output": Path, "hold": Path | None} for the predictions in `pred`."""
    if not pred.is_dir():
        raise FileNotFoundError(f"prediction folder not found: {pred}")
    records = []
    if (pred / "results.jsonl").is_file():
        lines = (pred / "results.jsonl").read_text().splitlines()
        records += [json.loads(line) for line in lines if line.strip()]
    records += [json.loads(p.read_text()) for p in sorted((pred / "items").glob("*.json"))]
    found = {}
    for r in records:
        if r.get("status") == "ok" and r.get("output"):
            found[str(r["id"])] = {"output": pred / r["output"], "hold": pred / r["hold"] if r.get("hold") else None}
    if not found:
        for folder in (pred, pred / "images"):
            for p in sorted(folder.glob("*")):
                if p.suffix.lower() in IMAGE_SUFFIXES:
                    found.setdefault(p.stem, {"output": p, "hold": None})
    return found


def _edit_region(row: dict, root: Path, pred: dict, size: tuple[int, int]) -> np.ndarray | None:
    """bool [H, W] (True = may change) from the manifest mask, else from the recorded hold mask, else None."""
    if row.get("mask"):
        return open_mask(resolve_path(root, row["mask"], "mask"), size)
    if pred.get("hold") is not None and pred["hold"].is_file():
        return ~open_mask(pred["hold"], size, "hold mask")
    return None


def _pixel_metrics(item: Item, root: Path, pred: dict, names) -> tuple[dict, Image.Image, Image.Image | None]:
    """L1 and leakage of one item -> (values, output image, reference image or None)."""
    row = item.row
    out = open_image(pred["output"], "prediction").convert("RGB")
    ref = open_image(resolve_path(root, row["target"], "target")).convert("RGB") if row.get("target") else None
    values = {"id": item.id, "category": row.get("category", row.get("task"))}
    if "l1" in names and ref is not None:
        values["l1"] = metrics.l1(metrics.to_unit(out.resize(ref.size, Image.Resampling.BICUBIC)), metrics.to_unit(ref))
    if "leakage" in names:
        src = open_image(resolve_path(root, row.get("source"), "source")).convert("RGB")
        region = _edit_region(row, root, pred, src.size)
        if region is not None:
            out_src = metrics.to_unit(out.resize(src.size, Image.Resampling.BICUBIC))
            values["leakage"] = metrics.leakage(out_src, metrics.to_unit(src), region)
    return values, out, ref


def _embedding_metrics(rows: list[dict], outs, refs, captions, models: FeatureModels, names) -> None:
    """Fill clip_i / clip_out / dino of a chunk of rows in place (batched forward passes)."""
    with_ref = [i for i, r in enumerate(refs) if r is not None]
    with_cap = [i for i, c in enumerate(captions) if c]
    if models.clip is not None:
        if "clip-i" in names and with_ref:
            a = metrics.clip_image_features(models.clip, [outs[i] for i in with_ref])
            b = metrics.clip_image_features(models.clip, [refs[i] for i in with_ref])
            for i, v in zip(with_ref, metrics.cosine(a, b).tolist(), strict=True):
                rows[i]["clip_i"] = v
        if "clip-out" in names and with_cap:
            a = metrics.clip_image_features(models.clip, [outs[i] for i in with_cap])
            b = metrics.clip_text_features(models.clip, models.tokenizer, [captions[i] for i in with_cap])
            for i, v in zip(with_cap, metrics.cosine(a, b).tolist(), strict=True):
                rows[i]["clip_out"] = v
    if models.dino is not None and "dino" in names and with_ref:
        a = metrics.dino_features(models.dino, [outs[i] for i in with_ref])
        b = metrics.dino_features(models.dino, [refs[i] for i in with_ref])
        for i, v in zip(with_ref, metrics.cosine(a, b).tolist(), strict=True):
            rows[i]["dino"] = v


def evaluate_predictions(manifest: Path, pred: Path, models: FeatureModels, names=METRICS, batch_size: int = 16):
    """Per-item metric rows for one prediction folder, plus {"missing": [...], "invalid": [...]}."""
    items, found = read_manifest(manifest), find_predictions(pred)
    rows, missing, invalid = [], [], []
    usable = []
    for item in items:
        if item.row is None or not item.row.get("source"):
            invalid.append(item.id)
        elif (found.get(item.id) or found.get(item.key) or found.get(file_key(item.id))) is None:
            missing.append(item.id)
        else:
            usable.append(item)
    for start in range(0, len(usable), batch_size):
        chunk, outs, refs, caps = usable[start : start + batch_size], [], [], []
        for item in chunk:
            values, out, ref = _pixel_metrics(item, manifest.parent, found.get(item.id) or found[item.key], names)
            rows.append(values)
            outs.append(out)
            refs.append(ref)
            caps.append(item.row.get("output_caption"))
        with torch.inference_mode():
            _embedding_metrics(rows[start:], outs, refs, caps, models, names)
    return rows, {"missing": missing, "invalid": invalid}


def summarize(rows: list[dict]) -> dict:
    """Mean and count of every metric over the rows that have it (None when no row has it)."""
    out = {}
    for key, _, _ in COLUMNS:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
        out[f"n_{key}"] = len(values)
    return out


def _fmt(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(benchmark: str, methods: list[dict]) -> str:
    """The paper's Table 1 layout (one benchmark's column group) plus Leakage; per-category rows when present."""
    head = "| Method | N | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|---|---:|" + "---:|" * len(COLUMNS)
    lines = [f"**{benchmark}**", "", head, rule]
    for m in methods:
        cells = " | ".join(_fmt(m["overall"][k], d) for k, _, d in COLUMNS)
        lines.append(f"| {m['name']} | {m['n']} | {cells} |")
    for m in methods:
        if len(m["per_category"]) > 1:
            lines += ["", f"Per category, {m['name']}:", "", head.replace("Method", "Category"), rule]
            for cat, s in m["per_category"].items():
                cells = " | ".join(_fmt(s[k], d) for k, _, d in COLUMNS)
                lines.append(f"| {cat} | {s['n']} | {cells} |")
    return "\n".join(lines) + "\n"


def run_evaluate(
    manifest: Path,
    preds: list[Path],
    names: list[str],
    out: Path,
    models: FeatureModels,
    metric_names=METRICS,
    benchmark: str | None = None,
    batch_size: int = 16,
) -> dict:
    """Evaluate each prediction folder; write eval.json and eval.md to `out`; return the report."""
    methods = []
    for pred, name in zip(preds, names, strict=True):
        rows, problems = evaluate_predictions(manifest, pred, models, metric_names, batch_size)
        groups: dict[str, list[dict]] = {}
        for r in rows:
            if r.get("category") is not None:
                groups.setdefault(str(r["category"]), []).append(r)
        per_category = {c: {"n": len(g), **summarize(g)} for c, g in sorted(groups.items())}
        methods.append(
            {
                "name": name,
                "pred": str(pred),
                "n": len(rows),
                "overall": summarize(rows),
                "per_category": per_category,
                **problems,
                "items": rows,
            }
        )
    benchmark = benchmark or manifest.parent.name
    report = {"benchmark": benchmark, "manifest": str(manifest), "metrics": list(metric_names), "methods": methods}
    table = markdown_table(benchmark, methods)
    write_json_atomic(out / "eval.json", report)
    write_bytes_atomic(out / "eval.md", table.encode())
    return {**report, "table": table}


def module_argv(argv: list[str]) -> list[str]:
    """`python -m editmgt_core.evaluation.evaluate [world|convert] ARGS` -> `python -m editmgt_core`'s arguments."""
    command = {"world": "world-eval", "convert": "convert"}.get(argv[0] if argv else "")
    return [command, *argv[1:]] if command else ["evaluate", *argv]


if __name__ == "__main__":
    # The package's command line runs as a program, not imported: the core never imports its front end (cli/).
    import runpy

    sys.argv[1:] = module_argv(sys.argv[1:])
    runpy.run_module("editmgt_core", run_name="__main__", alter_sys=True)

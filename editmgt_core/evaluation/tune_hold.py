"""Choose region hold's default λ and grow on validation records: what each setting costs and buys.

    python -m editmgt_core tune-hold --manifest WORLD/manifest.jsonl --lam-values 0.05,0.1,0.2 --grow-values 1,2

Every record is prepared once and decoded with the hold off (λ = 0) and with each (λ, grow) setting, same seed. Per
setting: success (metrics.edit_success; a background edit against every rendering its instruction allows, as
world-eval judges it), its drop against λ = 0, change beyond one token of the edit mask (drift the
hold is there to stop; metrics.far_change) as a ratio to λ = 0's, the share of local edits that touch another object
(metrics.touches_other), and the held share of the image. The suggestion is the setting that cuts far change most
while success drops by at most --max-drop (default 1 point). Use a validation seed: neither the training seed nor the
evaluation seed.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

from editmgt_core.edit.editing import default_options, prepare, resolve_options, run
from editmgt_core.edit.files import open_image, open_mask
from editmgt_core.edit.manifests import read_manifest, resolve_path
from editmgt_core.evaluation import metrics
from editmgt_core.evaluation.world_eval import other_right_targets
from editmgt_core.model.loading import Editor
from editmgt_core.world.samples import GLOBAL_CATEGORIES


def _last(stream):
    *_, result = stream
    return result


def record_rows(editor: Editor, manifest: Path, settings: list[tuple[float, int]], limit: int | None, layers=None):
    """Per record {category, 'λ/grow' -> {ok, far, touched, held}} for settings of (λ, grow) pairs and the hold off
    ('0/0'); record i uses seed i."""
    items = [it for it in read_manifest(manifest) if it.row is not None][:limit]
    if not items:
        raise ValueError(f"{manifest} has no readable records")
    rows = []
    for it in items:
        row = it.row
        src_img = open_image(resolve_path(manifest.parent, row["source"], "source")).convert("RGB")
        tgt = metrics.to_unit(open_image(resolve_path(manifest.parent, row["target"], "target")).convert("RGB"))
        mask = open_mask(resolve_path(manifest.parent, row["mask"], "mask"), src_img.size)
        local = row.get("category") not in GLOBAL_CATEGORIES
        if not local:
            mask = np.ones_like(mask)
        base = resolve_options(editor, default_options(editor, seed=it.index, lam=0.0))
        if layers is not None:
            base = dataclasses.replace(base, layers=tuple(layers))
        prepared = prepare(editor, src_img, row["instruction"], base)
        src = metrics.to_unit(src_img)
        targets = [tgt, *(metrics.to_unit(t) for t in other_right_targets(row, src_img.size))]  # as world-eval judges
        cell = max(1, round(src_img.width / prepared.src_tokens.shape[-1]))
        others = metrics.other_objects(src, mask, cell) if local else None
        out = {"category": row.get("category", "unknown")}
        for lam, grow in [(0.0, 0), *settings]:
            result = _last(run(editor, prepared, dataclasses.replace(base, lam=lam, grow=grow)))
            pred = metrics.to_unit(result.image)
            r = {"ok": any(metrics.edit_success(pred, src, t, mask)[0] for t in targets), "held": result.held_fraction}
            if local:
                r["far"] = metrics.far_change(pred, src, mask, cell)
                r["touched"] = metrics.touches_other(pred, src, others)
            out[f"{lam:g}/{grow}"] = r
        rows.append(out)
    return rows


def _mean(values) -> float | None:
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarize(rows: list[dict], settings: list[tuple[float, int]], max_drop: float = 0.01) -> dict:
    """Per setting: success, drop, far-change ratio, touched, held; and the suggested (λ, grow)."""
    keys = ["0/0", *(f"{lam:g}/{grow}" for lam, grow in settings)]
    table = {}
    for key in keys:
        table[key] = {
            "success": _mean(r[key]["ok"] for r in rows),
            "far_change": _mean(r[key].get("far") for r in rows),
            "touched": _mean(r[key].get("touched") for r in rows),
            "held": _mean(r[key]["held"] for r in rows),
        }
    off = table["0/0"]
    for t in table.values():
        t["drop"] = off["success"] - t["success"]
        t["far_ratio"] = t["far_change"] / off["far_change"] if off["far_change"] else None
    ok = [k for k in keys[1:] if round(table[k]["drop"], 9) <= max_drop and table[k]["far_ratio"] is not None]
    best = min(ok, key=lambda k: table[k]["far_ratio"], default=None)
    return {"n": len(rows), "settings": table, "suggested": best, "max_drop": max_drop}


def markdown(summary: dict) -> str:
    head = "| λ / grow | success | drop (points) | change beyond 1 token | ratio to λ=0 | other object touched | held |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for key, t in summary["settings"].items():
        ratio = "–" if t["far_ratio"] is None else f"{t['far_ratio']:.2f}"
        mark = " **(suggested)**" if key == summary["suggested"] else ""
        lines.append(
            f"| {key}{mark} | {100 * t['success']:.1f}% | {100 * t['drop']:.1f} | {t['far_change']:.5f} | "
            f"{ratio} | {100 * (t['touched'] or 0):.1f}% | {100 * t['held']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def main(editor: Editor, manifest: str | Path, lam_values, grow_values, limit=None, max_drop=0.01, layers=None):
    """Run the records, print the table and the suggestion; returns the summary."""
    settings = [(float(lam), int(grow)) for lam in lam_values for grow in grow_values]
    if not settings or any(not 0 < lam <= 1 or grow < 0 for lam, grow in settings):
        raise ValueError("--lam-values must lie in (0, 1] and --grow-values be >= 0")
    rows = record_rows(editor, Path(manifest), settings, limit, layers)
    summary = summarize(rows, settings, max_drop)
    print(markdown(summary))
    print(
        f"suggested λ / grow: {summary['suggested'] or 'none within the drop limit'} ({summary['n']} records)",
        file=sys.stderr,
    )
    return summary

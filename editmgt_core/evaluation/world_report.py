"""World evaluation's report: the markdown tables (per category, the hold's effect, the acceptance checks, phrasing
sets, ambiguous instructions) and the bar chart that `world_eval.run_world_eval` writes, from its summary and rows.
"""

from __future__ import annotations

import numpy as np

from editmgt_core.evaluation.figures import bar_chart
from editmgt_core.world.samples import CATEGORIES

AMBIGUITY_OUTCOMES = ("one", "several", "other")


def column_mean(rows: list[dict], key: str) -> float | None:
    """Mean of rows[key] over the rows that have it; None when none has."""
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def _fmt(value, kind: str) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}%" if kind == "pct" else f"{value:.4f}" if kind == "leak" else f"{value:.3f}"


def markdown_table(summary: dict, lam: float, checks: dict | None = None) -> str:
    cols = [
        ("success_off", "Success λ=0", "pct"),
        ("success_on", f"Success λ={lam:g}", "pct"),
        ("success_vq", "Tokenizer ceiling", "pct"),
        ("leakage_off", "Leakage λ=0", "leak"),
        ("leakage_on", f"Leakage λ={lam:g}", "leak"),
        ("leakage_vq", "Leakage, target's tokens", "leak"),
        ("vq_floor", "VQ floor", "leak"),
        ("iou_on", f"IoU (λ={lam:g})", "iou"),
        ("iou_grid", "IoU, exact map on the attention grid", "iou"),
    ]
    if lam == 0:  # both runs are the same one: one column each
        cols = [c for c in cols if not c[0].endswith("_on")]
    lines = ["| Category | N | " + " | ".join(c[1] for c in cols) + " |", "|---|---:|" + "---:|" * len(cols)]
    rows = [*summary["categories"].items(), ("**overall**", summary["overall"])]
    for name, s in rows:
        lines.append(f"| {name} | {s['n']} | " + " | ".join(_fmt(s.get(k), kind) for k, _, kind in cols) + " |")
    if lam > 0:  # what the hold buys where it matters (local categories)
        lines += [
            "",
            f"| Category | Change beyond 1 token λ=0 | λ={lam:g} | Other object touched λ=0 | λ={lam:g} |",
            "|---|---:|---:|---:|---:|",
        ]
        hold_cols = [
            ("far_change_off", "leak"),
            ("far_change_on", "leak"),
            ("touched_off", "pct"),
            ("touched_on", "pct"),
        ]
        for name, s in rows:
            if s.get("far_change_off") is not None:
                lines.append(f"| {name} | " + " | ".join(_fmt(s.get(k), kind) for k, kind in hold_cols) + " |")
    if checks:
        lines += ["", "| Acceptance | Value | Target | Met |", "|---|---:|---:|:---:|"]
        for name, c in checks.items():
            met = "–" if c["pass"] is None else "yes" if c["pass"] else "no"
            value = "–" if c["value"] is None else f"{c['value']:.3f}"
            lines.append(f"| {name} | {value} | {c['target']} | {met} |")
    return "\n".join(lines) + "\n"


def shape_table(summary: dict, lam: float) -> str:
    """Both judges side by side per category: the pixel judge, the shape judge (shape_judge.py; global categories
    keep the pixel judge's verdict), each for the tokenizer ceiling too, and how often another object's silhouette
    changed. Empty when no row carried the scenes the shape judge needs."""
    if summary["overall"].get("shape_off") is None:
        return ""
    settings = [("off", "λ=0")] + ([("on", f"λ={lam:g}")] if lam else [])
    cols = [(f"success_{k}", f"Pixel judge {label}", "pct") for k, label in settings]
    cols += [(f"shape_{k}", f"Shape judge {label}", "pct") for k, label in settings]
    cols += [("success_vq", "Pixel judge, target's tokens", "pct"), ("shape_vq", "Shape judge, target's tokens", "pct")]
    cols += [(f"shape_iou_{k}", f"Silhouette IoU {label}", "iou") for k, label in settings]
    cols += [(f"others_changed_{k}", f"Other object changed {label}", "pct") for k, label in settings]
    cols += [("others_changed_vq", "Other object changed, target's tokens", "pct")]
    lines = ["", "| Category | N | " + " | ".join(c[1] for c in cols) + " |", "|---|---:|" + "---:|" * len(cols)]
    for name, st in [*summary["categories"].items(), ("**overall**", summary["overall"])]:
        lines.append(f"| {name} | {st['n']} | " + " | ".join(_fmt(st.get(k), kind) for k, _, kind in cols) + " |")
    return "\n".join(lines) + "\n"


def world_chart(summary: dict, lam: float, iou_threshold: float):
    """Bar chart: success, leakage (with the VQ floor) and IoU per category and overall, λ = 0 against λ."""
    groups = [*summary["categories"], "overall"]
    stats = [*summary["categories"].values(), summary["overall"]]
    series = lambda key: [s[key] for s in stats]
    off, on = "lam=0", f"lam={lam:g}"
    leakage = [
        (off, series("leakage_off")),
        (on, series("leakage_on")),
        ("target's tokens", series("leakage_vq")),
        ("VQ floor", series("vq_floor")),
    ]
    success = [(off, series("success_off")), (on, series("success_on")), ("tokenizer", series("success_vq"))]
    panels = [
        ("Success rate (tokenizer: the target's VQ round trip)", success, 1.0, "pct"),
        ("Leakage: mean |output - source| outside the edit mask", leakage, None, "leak"),
        (f"Localization IoU: map >= {iou_threshold:g} vs edit mask", [(on, series("iou_on"))], 1.0, "iou"),
    ]
    return bar_chart(groups, panels)


def _share(rows: list[dict], key: str, value) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(v == value for v in values) / len(values) if values else None


def phrasing_table(rows: list[dict], lam: float) -> str:
    """Success per category (columns) for each phrasing set (rows): seen and held-out phrasings side by side."""
    sets = list(dict.fromkeys(r["phrasing_set"] for r in rows if "phrasing_set" in r))
    if not sets:
        return ""
    cats = [c for c in CATEGORIES if any(r["category"] == c for r in rows)]
    settings = [("success_off", "λ=0")] + ([("success_on", f"λ={lam:g}")] if lam else [])
    head = "| Phrasing | Setting | N | overall | " + " | ".join(cats) + " |"
    lines = [
        "",
        "Success by phrasing set (the same records under each):",
        "",
        head,
        "|---|---|---:|---:|" + "---:|" * len(cats),
    ]
    for name in sets:
        group = [r for r in rows if r.get("phrasing_set") == name]
        for key, label in settings:
            cells = [_fmt(column_mean([r for r in group if r["category"] == c], key), "pct") for c in cats]
            overall = _fmt(column_mean(group, key), "pct")
            lines.append(f"| {name} | {label} | {len(group)} | {overall} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ambiguity_table(rows: list[dict], lam: float) -> str:
    """Outcome shares of ambiguous records (exactly one candidate edited, several changed, other) and the map."""
    amb = [r for r in rows if "ambiguity_off" in r]
    if not amb:
        return ""
    settings = [("off", "λ=0")] + ([("on", f"λ={lam:g}")] if lam else [])
    lines = [
        "",
        "Ambiguous instructions (words fit 2-3 objects; no single right answer):",
        "",
        "| Setting | N | exactly one candidate edited | several changed | other |",
        "|---|---:|---:|---:|---:|",
    ]
    for s, label in settings:
        cells = [_fmt(_share(amb, f"ambiguity_{s}", o), "pct") for o in AMBIGUITY_OUTCOMES]
        lines.append(f"| {label} | {len(amb)} | " + " | ".join(cells) + " |")
    if any("map_on_candidates" in r for r in amb):
        on_cands = _fmt(column_mean(amb, "map_on_candidates"), "pct")
        top_share = _fmt(column_mean(amb, "map_top_share"), "pct")
        lines += [
            "",
            f"Map (λ={lam:g}): share of its mass on the candidates {on_cands}; "
            f"the top candidate's share of the candidates' mass {top_share}; "
            f"top candidate = the one edited, where exactly one was: "
            f"{_fmt(_share(amb, 'map_points_at_edited', True), 'pct')}",
        ]
    return "\n".join(lines) + "\n"

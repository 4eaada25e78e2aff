"""A before/after sheet of the app's examples: each example edited by each model at its defaults, side by side.

    python -m editmgt_core.evaluation.examples_sheet --models OLD NEW --labels before after --seed 7 --out SHEET.png

Rows are the app's examples (`editmgt_core/assets/examples/examples.json`): the input, then one output per model,
each shown at `cell` pixels, nearest-neighbour (so a soft output looks soft), each with its instruction; the seed
and every other knob are the models' defaults, as a visitor clicking an example gets them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from editmgt_core import paths

from ..edit.editing import default_options, edit
from ..model.loading import load_editor
from .figures import font

EXAMPLES = paths.EXAMPLES


def outputs(model: str, examples: list[dict], seed: int) -> list[Image.Image]:
    """Each example edited by `model` at its defaults with `seed`."""
    editor = load_editor(model)
    options = default_options(editor, seed=seed)
    return [edit(editor, Image.open(EXAMPLES / ex["image"]), ex["instruction"], options).image for ex in examples]


def sheet(examples: list[dict], columns: list[tuple[str, list[Image.Image]]], cell: int = 256) -> Image.Image:
    """The grid: a header row of labels, then per example its instruction and one cell per column."""
    pad, text_h = 6, 20
    width = len(columns) * (cell + pad) + pad
    out = Image.new("RGB", (width, text_h + len(examples) * (cell + text_h + pad) + pad), "white")
    d, f = ImageDraw.Draw(out), font(14)
    for j, (label, _) in enumerate(columns):
        d.text((pad + j * (cell + pad) + 4, 3), label, fill="black", font=f)
    for i, ex in enumerate(examples):
        y = text_h + i * (cell + text_h + pad)
        d.text((pad, y + 2), ex["instruction"], fill="black", font=f)
        for j, (_, images) in enumerate(columns):
            out.paste(
                images[i].convert("RGB").resize((cell, cell), Image.Resampling.NEAREST),
                (pad + j * (cell + pad), y + text_h),
            )
    return out


def main(args: argparse.Namespace) -> Path:
    if len(args.models) != len(args.labels):
        raise ValueError(f"--labels needs one label per model: {len(args.models)} models, {len(args.labels)} labels")
    torch.set_num_threads(args.threads)
    examples = json.loads((EXAMPLES / "examples.json").read_text())
    columns = [("input", [Image.open(EXAMPLES / ex["image"]) for ex in examples])]
    columns += [
        (f"{label} (seed {args.seed})", outputs(m, examples, args.seed))
        for m, label in zip(args.models, args.labels, strict=True)
    ]
    sheet(examples, columns, args.cell).save(args.out, optimize=True)
    print(f"wrote {args.out}")
    return Path(args.out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Before/after sheet of the app's examples.")
    p.add_argument("--models", nargs="+", required=True, help="model folders, one column each")
    p.add_argument("--labels", nargs="+", required=True, help="a column label per model")
    p.add_argument("--seed", type=int, default=7, help="edit seed")
    p.add_argument("--cell", type=int, default=256, help="side of each picture in the sheet")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", required=True, help="PNG to write")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())

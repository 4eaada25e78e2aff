"""VQ decoders on the same world edits, judged by the pixel judge and the shape judge.

    python -m editmgt_core.evaluation.decoder_compare --model editmgt_core/assets/default-model \\
        --decoders base=OLD/vqvae \\
        --world-seed 555 --n 300 --out DIR

A decoder changes no token (the encoder and codebook are shared), so each record is edited once, at the model's
defaults (region hold at its λ, keep-pixels on) with seed `seed + index` as world-eval draws it, and the tokens are
decoded by the model's own decoder (`model`) and by each of `--decoders` (NAME=vqvae folders with the same
encoder and codebook). Each output is judged as world-eval judges it: the pixel judge at the record's size
(metrics.edit_success, background edits against every background their instruction allows) and the shape judge
at the output's own size (shape_judge, rendering the scenes at that size). The tokenizer ceiling is the target's own
tokens, decoded by each decoder and composited as an edit is. Writes decoder_compare.json (summary and rows) and
decoder_compare.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from editmgt_core import paths
from editmgt_core.edit.editing import output_image, prepare, resolve_options, run
from editmgt_core.edit.files import open_image, open_mask, write_bytes_atomic, write_json_atomic
from editmgt_core.edit.manifests import item_options, read_manifest, resolve_path
from editmgt_core.evaluation import metrics
from editmgt_core.evaluation.world_eval import at_size, other_right_targets, shape_columns, target_round_trip
from editmgt_core.evaluation.world_report import column_mean
from editmgt_core.model.encoders import VQTokenizer
from editmgt_core.model.loading import Editor, load_editor
from editmgt_core.world.dataset import write_dataset
from editmgt_core.world.samples import CATEGORIES, GLOBAL_CATEGORIES

COLUMNS = ("success", "shape", "shape_iou", "others_changed")  # per decoder, for the edit and the ceiling


def load_decoder(editor: Editor, folder: Path) -> VQTokenizer:
    """A decoder to compare (a vqvae folder) as a tokenizer; ValueError when its codebook differs from the model's."""
    from diffusers import VQModel

    from editmgt_core.model.upsampler import load_upsampler

    vq = VQModel.from_pretrained(folder, use_safetensors=True).to(editor.device)
    if not torch.equal(vq.quantize.embedding.weight, editor.vq.vq.quantize.embedding.weight.to(vq.device)):
        raise ValueError(f"{folder} has another codebook than the model's: its decoder would read other tokens")
    return VQTokenizer(vq, editor.vq.image_range, load_upsampler(folder))


def judged(row: dict, image, src, tgt, mask, suffix: str, equivalents) -> dict:
    """Both judges' columns for one output image (PIL, at any size)."""
    pred = at_size(image, (src.shape[1], src.shape[0]))
    ok = metrics.edit_success(pred, src, tgt, mask)[0] or any(
        metrics.edit_success(pred, src, t, mask)[0] for t in equivalents
    )
    return {f"success_{suffix}": ok, **shape_columns(row, image, ok, suffix)}


@torch.inference_mode()
def compare_record(editors: dict[str, Editor], item, root: Path, seed: int) -> dict:
    """Edit one record once and judge its tokens decoded by each editor's decoder (the editors share the rest)."""
    row, editor = item.row, editors["model"]
    src_img = open_image(resolve_path(root, row["source"], "source")).convert("RGB")
    tgt_img = open_image(resolve_path(root, row["target"], "target")).convert("RGB")
    src, tgt = metrics.to_unit(src_img), metrics.to_unit(tgt_img)
    mask = open_mask(resolve_path(root, row["mask"], "mask"), src_img.size)
    if row["category"] in GLOBAL_CATEGORIES:
        mask = np.ones_like(mask)
    options, pixels = item_options(editor, row, {"seed": seed + item.index})
    options = resolve_options(editor, options)
    prepared = prepare(editor, src_img, row["instruction"], options, pixels=pixels)
    *_, result = run(editor, prepared, options)
    keep = options.keep_pixels and not options.reference_compatible
    kept = (result.tokens == prepared.src_tokens[0].cpu()) if keep else None
    equivalents = [metrics.to_unit(t) for t in other_right_targets(row, src_img.size)]
    out = {"id": item.id, "category": row["category"], "lam": options.lam}
    for name, ed in editors.items():
        image = output_image(ed.vq.decode(result.tokens[None].to(ed.device)), prepared.image, kept, prepared.work_size)
        out.update(judged(row, image, src, tgt, mask, name, equivalents))
        ceiling = target_round_trip(ed, prepared, tgt_img, keep)
        out.update(judged(row, ceiling, src, tgt, mask, f"{name}_vq", equivalents))
        out[f"size_{name}"] = image.size[0]
    return out


def summary_table(rows: list[dict], decoders: list[str]) -> tuple[dict, str]:
    """Per category and overall: each decoder's column means (edit and ceiling); and the markdown table."""
    cats = [c for c in CATEGORIES if any(r["category"] == c for r in rows)]
    groups = [(c, [r for r in rows if r["category"] == c]) for c in cats] + [("overall", rows)]
    local = [r for r in rows if r["category"] not in GLOBAL_CATEGORIES]
    groups.append(("local categories", local))
    keys = [f"{col}_{d}{vq}" for col in COLUMNS for d in decoders for vq in ("", "_vq")]
    summary = {name: {"n": len(g), **{k: column_mean(g, k) for k in keys}} for name, g in groups}
    heads = [("success", "Pixel judge"), ("shape", "Shape judge"), ("others_changed", "Other object changed")]
    cols = [
        (f"{c}_{d}{vq}", f"{label}, {d}{' ceiling' if vq else ''}")
        for c, label in heads
        for vq in ("", "_vq")
        for d in decoders
    ]
    lines = ["| Category | N | " + " | ".join(h for _, h in cols) + " |", "|---|---:|" + "---:|" * len(cols)]
    fmt = lambda v: "–" if v is None else f"{100 * v:.1f}%"
    for name, s in summary.items():
        lines.append(f"| {name} | {s['n']} | " + " | ".join(fmt(s[k]) for k, _ in cols) + " |")
    return summary, "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    manifest = write_dataset(out / "world", args.n, args.world_seed, args.world_size)
    model = load_editor(args.model, device=args.device)
    editors = {name: dataclasses.replace(model, vq=load_decoder(model, Path(folder))) for name, folder in args.decoders}
    editors["model"] = model
    items = [it for it in read_manifest(manifest) if it.row is not None]
    rows = [
        compare_record(editors, it, manifest.parent, args.seed)
        for it in tqdm(items, desc="decoders", unit="record", file=sys.stderr, disable=args.quiet)
    ]
    summary, table = summary_table(rows, list(editors))
    report = {
        "model": str(args.model),
        "decoders": dict(args.decoders),
        "world_seed": args.world_seed,
        "summary": summary,
        "records": rows,
    }
    write_json_atomic(out / "decoder_compare.json", report)
    write_bytes_atomic(out / "decoder_compare.md", table.encode())
    print(f"world seed {args.world_seed}, {len(rows)} records, λ {rows[0]['lam']:g}\n{table}", end="")
    return report


def _named(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder or name == "model":
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=FOLDER (NAME not 'model')")
    return name, folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="VQ decoders on the same world edits, under both judges.")
    p.add_argument("--model", default=str(paths.BUNDLED_MODEL), help="model folder (its own decoder is 'model')")
    p.add_argument(
        "--decoders",
        nargs="+",
        type=_named,
        required=True,
        help="NAME=FOLDER: vqvae folders of the decoders to compare with the model's",
    )
    p.add_argument("--world-seed", type=int, required=True, help="world seed of the generated records")
    p.add_argument("--n", type=int, default=300, help="records")
    p.add_argument("--world-size", type=int, default=64, help="records' side in pixels")
    p.add_argument("--seed", type=int, default=0, help="record i is edited with seed + i")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="where the edits and decoders run: cpu, cuda ...")
    p.add_argument("--out", required=True, help="folder for the records and decoder_compare.json / .md")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())

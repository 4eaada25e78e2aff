"""Converters from the Emu Edit and MagicBrush test-set layouts to our manifest (see manifests.py for the format).

    python -m editmgt_core convert emu-edit --input DIR_OR_FILE --out DIR [--split test]
    python -m editmgt_core convert magicbrush --input DIR --out DIR

Emu Edit (`facebook/emu_edit_test_set` on the Hugging Face hub; splits validation and test): rows with columns image,
instruction, input_caption, output_caption, task, idx, as the hub's parquet files (`data/<split>-*.parquet`, read with
pyarrow) or as JSON Lines with the same columns and `image` a path relative to the file. Images are written to
`<out>/images/<idx>.png`. Emu Edit has no ground-truth edits: following its protocol, CLIP-I, L1 and DINO compare the
output with the input image, so `target` is the source image. The task becomes the category.

MagicBrush (the test zip: `test/edit_sessions.json`, `test/images/<img_id>/<img_id>-input.png`, `-output<k>.png`,
`-mask<k>.png`, optional `test/global_descriptions.json`): `edit_sessions.json` maps each img_id to its turns
[{"input", "mask", "instruction", "output"}, ...]; each turn becomes one item `<img_id>-<k>` in the single-turn
setting (the turn's ground-truth input is the source), category `turn<k>`. Masks mark the edit region as white paint
(or, in RGBA masks, as transparent pixels); they are rewritten as binary PNGs under `<out>/masks/`. Captions from
global_descriptions.json ({img_id: {file name: caption}}) fill input_caption / output_caption. Paths in the manifest
point at the original files, relative to the manifest.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..edit.files import encode_image, mask_image, open_image, write_bytes_atomic

EMU_COLUMNS = ("image", "instruction", "input_caption", "output_caption", "task", "idx")


def _emu_rows(src: Path, split: str | None) -> list[dict]:
    if src.suffix == ".jsonl":
        return [json.loads(line) for line in src.read_text().splitlines() if line.strip()]
    files = sorted(src.rglob("*.parquet")) if src.is_dir() else [src]
    if split is not None:
        files = [f for f in files if f.name.startswith(split) or f.parent.name == split]
    if not files:
        raise FileNotFoundError(f"no parquet files{f' for split {split!r}' if split else ''} under {src}")
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("reading the Emu Edit parquet files needs pyarrow: pip install pyarrow") from None
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def cell_image(cell, base: Path) -> Image.Image:
    """A dataset image cell: {"bytes": ...} or {"path": ...} (the hub's Image feature) or a path string."""
    if isinstance(cell, dict) and isinstance(cell.get("bytes"), bytes):
        image = Image.open(io.BytesIO(cell["bytes"]))
        image.load()
        return image
    path = cell.get("path") if isinstance(cell, dict) else cell
    if not isinstance(path, str):
        raise ValueError(f"cannot read an image from the cell {str(cell)[:80]!r}")
    return open_image(base / path)


def convert_emu_edit(src: str | Path, out: str | Path, split: str | None = None) -> Path:
    """Write `<out>/manifest.jsonl` and `<out>/images/` from the Emu Edit test set; returns the manifest path."""
    src, out = Path(src), Path(out)
    if not src.exists():
        raise FileNotFoundError(f"Emu Edit data not found: {src}")
    lines = []
    for n, row in enumerate(_emu_rows(src, split)):
        missing = [c for c in EMU_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"Emu Edit row {n} lacks the columns {missing}; expected {list(EMU_COLUMNS)}")
        image = cell_image(row["image"], src if src.is_dir() else src.parent).convert("RGB")
        path = f"images/{row['idx']}.png"
        write_bytes_atomic(out / path, encode_image(image, ".png"))
        item = {"id": str(row["idx"]), "source": path, "target": path, "instruction": row["instruction"]}
        item.update(input_caption=row["input_caption"], output_caption=row["output_caption"], category=row["task"])
        lines.append(json.dumps(item) + "\n")
    write_bytes_atomic(out / "manifest.jsonl", "".join(lines).encode())
    return out / "manifest.jsonl"


def magicbrush_mask(image: Image.Image) -> np.ndarray:
    """bool [H, W] edit region of a MagicBrush mask: transparent pixels of an RGBA mask with some transparency,
    else the white (all channels >= 250) paint."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
        if alpha.min() < 128 <= alpha.max():
            return alpha < 128
    return np.asarray(image.convert("RGB")).min(-1) >= 250


def convert_magicbrush(src: str | Path, out: str | Path) -> Path:
    """Write `<out>/manifest.jsonl` (and binary masks) from the MagicBrush test layout; returns the manifest path."""
    src, out = Path(src), Path(out)
    root = src if (src / "edit_sessions.json").is_file() else src / "test"
    if not (root / "edit_sessions.json").is_file():
        raise FileNotFoundError(f"no edit_sessions.json in {src} or {src / 'test'} (the MagicBrush test layout)")
    sessions = json.loads((root / "edit_sessions.json").read_text())
    captions_file = root / "global_descriptions.json"
    captions = json.loads(captions_file.read_text()) if captions_file.is_file() else {}
    out.mkdir(parents=True, exist_ok=True)
    rel = lambda p: os.path.relpath(p, out)
    lines = []
    for img_id, turns in sorted(sessions.items()):
        folder, caps = root / "images" / img_id, captions.get(img_id, {})
        for k, turn in enumerate(turns, 1):
            source, target = folder / turn["input"], folder / turn["output"]
            for p in (source, target):
                if not p.is_file():
                    raise FileNotFoundError(f"MagicBrush file missing: {p}")
            item_id = f"{img_id}-{k}"
            mask = magicbrush_mask(open_image(folder / turn["mask"], "MagicBrush mask"))
            write_bytes_atomic(out / "masks" / f"{item_id}.png", encode_image(mask_image(mask), ".png"))
            item = {"id": item_id, "source": rel(source), "target": rel(target), "mask": f"masks/{item_id}.png"}
            item.update(instruction=turn["instruction"], category=f"turn{k}", session=img_id, turn=k)
            if turn["input"] in caps:
                item["input_caption"] = caps[turn["input"]]
            if turn["output"] in caps:
                item["output_caption"] = caps[turn["output"]]
            lines.append(json.dumps(item) + "\n")
    write_bytes_atomic(out / "manifest.jsonl", "".join(lines).encode())
    return out / "manifest.jsonl"

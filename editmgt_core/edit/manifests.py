"""The manifest: a JSON Lines list of edits, read by `batch`, `evaluate`, `world-eval` and `tune-hold`.

Manifest (JSON Lines, one object per line; blank lines ignored; relative paths are relative to the manifest's folder):
  source        input image (required)
  instruction   the edit (required)
  id            name of the item (default: its 0-based position among the manifest's items, 6 digits)
  target, mask  ground truth for `evaluate` (carried into the results, not used for editing)
  brush         optional user mask (white = may edit), combined with the map per mask_mode
  steps, guidance_scale, gamma, lam, keywords, temperature, token_temperature, seed, layers, negative_prompt,
  mask_mode, grow, focus_gate, keep_pixels, reference_compatible, pixels
                per-item overrides of the batch's sampler knobs (lists for keywords / layers / temperature pairs)
Other keys (category, edit, captions, ...) are carried into the item's result unchanged.

Malformed lines and duplicate ids are not fatal: they become items with `error` set (the batch records them).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..model.loading import Editor
from ..sampler.sampling import SamplerOptions
from .editing import default_options

KNOBS = tuple(f.name for f in dataclasses.fields(SamplerOptions))
OVERRIDES = (*KNOBS, "pixels")  # item keys that change how the item is edited
TUPLE_KNOBS = ("keywords", "layers", "temperature")  # JSON lists -> tuples


@dataclass(frozen=True)
class Item:
    """One manifest line."""

    index: int  # 0-based position among the manifest's items (blank lines skipped)
    line: int  # 1-based line number in the file
    id: str  # the row's id, or the index as 6 digits
    key: str  # file-name stem for its outputs (the id made safe for file names)
    row: dict | None  # the parsed object; None when the line is malformed
    error: str | None  # why the line cannot be edited, found while reading (malformed, duplicate id)


def file_key(item_id: str) -> str:
    """A file-name stem for an id: characters other than letters, digits, '.', '_', '-' become '_'."""
    key = re.sub(r"[^A-Za-z0-9._-]", "_", item_id)[:200]
    return "_" + key if key.startswith(".") or not key else key


def read_manifest(path: str | Path) -> list[Item]:
    """Parse a manifest; malformed lines and duplicate ids become Items with `error` set."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    items: list[Item] = []
    first_line: dict[str, int] = {}
    for line_no, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        index, row, error = len(items), None, None
        try:
            row = json.loads(text)
            if not isinstance(row, dict):
                raise ValueError(f"expected a JSON object, got {type(row).__name__}")
        except ValueError as err:
            row, error = None, f"line {line_no}: malformed manifest line ({err})"
        item_id = str(row["id"]) if row is not None and row.get("id") is not None else f"{index:06d}"
        key = file_key(item_id)
        if key in first_line:
            error = error or f"line {line_no}: duplicate id {item_id!r} (first on line {first_line[key]})"
            key = f"{key}.line{line_no}"
        first_line.setdefault(key, line_no)
        items.append(Item(index, line_no, item_id, key, row, error))
    if not items:
        raise ValueError(f"manifest {path} has no items")
    return items


def resolve_path(root: Path, value, field: str) -> Path:
    """A manifest path field, relative to the manifest's folder unless absolute."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"'{field}' must be a non-empty path string; got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def item_options(editor: Editor, row: dict, base: dict) -> tuple[SamplerOptions, int | None]:
    """The batch's knobs `base` with the item's overrides on top -> (options, working pixel count or None)."""
    knobs = {**base, **{k: row[k] for k in OVERRIDES if k in row}}
    pixels = knobs.pop("pixels", None)
    if pixels is not None and (not isinstance(pixels, int) or isinstance(pixels, bool) or pixels < 64):
        raise ValueError(f"pixels={pixels!r}; allowed: an integer >= 64")
    for key in TUPLE_KNOBS:
        if isinstance(knobs.get(key), list):
            knobs[key] = tuple(knobs[key])
    return default_options(editor, **knobs), pixels

"""Manifests: ids, keys for file names, malformed lines and duplicate ids as items with an error."""

import json
from pathlib import Path

import pytest

from editmgt_core.edit.manifests import file_key, read_manifest


def write_manifest(folder: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    (folder / "m.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "m.jsonl"


def test_read_manifest_ids_errors_and_keys(tmp_path):
    rows = [{"source": "a.png", "instruction": "x"}, "", "{not json", {"id": "a/b c", "source": "a.png"}, "[1, 2]"]
    rows += [{"id": "a/b c", "source": "b.png"}]
    items = read_manifest(write_manifest(tmp_path, rows))
    assert [it.id for it in items] == ["000000", "000001", "a/b c", "000003", "a/b c"]  # blank line skipped
    assert items[2].key == "a_b_c" and items[2].error is None
    assert "malformed" in items[1].error and "line 3" in items[1].error
    assert "expected a JSON object" in items[3].error
    assert "duplicate id" in items[4].error and items[4].key != items[2].key
    assert file_key("..") == "_.." and file_key("") == "_"
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        read_manifest(tmp_path / "missing.jsonl")

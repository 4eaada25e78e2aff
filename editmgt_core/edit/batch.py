"""Batch editing from a manifest: resumable, a bad item never stops the batch, data-parallel under `accelerate launch`.

Manifest: JSON Lines, one edit per line (see manifests.py for the format).

Output folder:
  images/<id>.png    the edited image, its parameters in the PNG (see files.py)
  maps/<id>.png      the localization map on the token grid (white = edit), when computed (lam > 0)
  hold/<id>.png      the tokens held to the source (white), when region-hold was on
  items/<id>.json    the item's result record: written last, so its presence (status "ok") marks the item finished
  logs/rank<r>.log   one line per item a process finished: id, status, seconds (appended just before its record)
  results.jsonl      every record in manifest order, rebuilt atomically at the end of each run

Every file is written to a temporary name and renamed into place, so killing a batch at any moment leaves whole
files only; a re-run skips finished items and redoes failed or unfinished ones. Items are matched by id: to redo an
item with new settings, delete its items/<id>.json (or write to a new folder).

Data parallel: under a distributed launcher each process loads the model on its device and takes every P-th
unfinished item (the list is fixed between two barriers, so every item goes to exactly one process); the main process
merges results.jsonl after the last barrier. Launch P processes with
  accelerate launch --multi_gpu --num_processes P -m editmgt_core batch ...
(one process per GPU; on a machine without GPUs, or with `--device cpu`, the P processes run on the CPU and talk over
gloo; `--num_machines 1 --mixed_precision no --dynamo_backend no` silence accelerate's notes on its defaults), or with
`torchrun --nproc_per_node P -m editmgt_core batch ...`. Note that accelerate 1.x's
`accelerate launch --cpu --num_processes P` starts a single process unless MPI is set up (`--mpirun_hostfile`);
the batch then warns and runs everything in that one process.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from ..model.loading import Editor
from .editing import edit
from .files import (
    encode_image,
    map_image,
    mask_image,
    open_image,
    remove_stale_temporaries,
    save_image,
    write_bytes_atomic,
    write_json_atomic,
)
from .manifests import OVERRIDES, Item, item_options, read_manifest, resolve_path

BARRIER_TIMEOUT = timedelta(days=7)  # processes wait for each other at the end; shards may take long


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, (ValueError, OSError)) else f"{type(err).__name__}: {text}"


def run_item(editor: Editor, item: Item, root: Path, out: Path, base: dict, model: str = "") -> dict:
    """Edit one item and write its outputs; returns its result record (status 'ok' or 'error' with the reason)."""
    record = {"id": item.id, "index": item.index, "line": item.line}
    record.update({k: v for k, v in (item.row or {}).items() if k not in OVERRIDES and k != "id"})
    clock = time.perf_counter()
    try:
        if item.error:
            raise ValueError(item.error)
        row = item.row
        if "instruction" not in row:
            raise ValueError("'instruction' is missing")
        options, pixels = item_options(editor, row, base)
        image = open_image(resolve_path(root, row.get("source"), "source"), "source image")
        brush = None
        if row.get("brush") is not None:
            brush = open_image(resolve_path(root, row["brush"], "brush"), "brush").convert("L").resize(image.size)
        result = edit(editor, image, row["instruction"], options, user_mask=brush, pixels=pixels)
        outputs = {"output": f"images/{item.key}.png"}
        save_image(result.image, out / outputs["output"], {**result.parameters(), "id": item.id, "model": model})
        if result.scores is not None:
            outputs["map"] = f"maps/{item.key}.png"
            scores = result.scores.numpy()
            write_bytes_atomic(out / outputs["map"], encode_image(map_image(scores, scores.shape[::-1]), ".png"))
        if result.hold is not None:
            outputs["hold"] = f"hold/{item.key}.png"
            write_bytes_atomic(out / outputs["hold"], encode_image(mask_image(result.hold.numpy()), ".png"))
        record.update(
            status="ok",
            **outputs,
            parameters=result.parameters(),
            held_fraction=result.held_fraction,
            focus=result.focus,
            gated=result.gated,
        )
    except Exception as err:  # a bad item is recorded and the batch goes on
        record.update(status="error", error=one_line(err))
    record["seconds"] = round(time.perf_counter() - clock, 4)
    return record


def item_path(out: Path, item: Item) -> Path:
    return out / "items" / f"{item.key}.json"


def finished(out: Path, item: Item) -> bool:
    """True when the item has a result record with status 'ok' (failed and unfinished items are redone)."""
    try:
        return json.loads(item_path(out, item).read_text()).get("status") == "ok"
    except (OSError, ValueError):
        return False


def merge_results(out: Path, items: list[Item]) -> dict:
    """Rebuild results.jsonl from the item records (manifest order) and count them."""
    lines, counts = [], {"items": len(items), "ok": 0, "error": 0, "pending": 0}
    for item in items:
        try:
            record = json.loads(item_path(out, item).read_text())
        except (OSError, ValueError):
            counts["pending"] += 1
            continue
        counts["ok" if record.get("status") == "ok" else "error"] += 1
        lines.append(json.dumps(record) + "\n")
    write_bytes_atomic(out / "results.jsonl", "".join(lines).encode())
    return counts


def _log(out: Path, rank: int, record: dict) -> None:
    with open(out / "logs" / f"rank{rank}.log", "a") as f:
        f.write(f"{record['id']}\t{record['status']}\t{record['seconds']}\n")
        f.flush()
        os.fsync(f.fileno())


def process_state(device: str | None = None):
    """accelerate's PartialState for this process; CPU processes (no CUDA, or device 'cpu') join over gloo."""
    import torch
    from accelerate import PartialState

    cpu = device == "cpu" or not torch.cuda.is_available()
    state = PartialState(cpu=cpu, timeout=BARRIER_TIMEOUT)
    warning = launch_warning(state.num_processes, os.environ)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return state


def launch_warning(num_processes: int, environ) -> str | None:
    """A launcher asked for several processes (MASTER_ADDR set) but this one runs alone (no WORLD_SIZE)."""
    if num_processes == 1 and "MASTER_ADDR" in environ and "WORLD_SIZE" not in environ:
        return (
            "this batch runs in a single process although the launcher was asked for several: "
            "`accelerate launch --cpu` starts one process without MPI; use `accelerate launch --multi_gpu "
            "--num_processes P ...` (CPU processes when there is no GPU) or `torchrun --nproc_per_node P ...`"
        )
    return None


def run_batch(
    manifest: str | Path,
    out: str | Path,
    load: Callable[[str], Editor],
    *,
    base: dict | None = None,
    model: str = "",
    device: str | None = None,
    progress: bool = True,
    state=None,
) -> dict:
    """Edit every unfinished item of `manifest` into `out`, sharded over the processes of an accelerate launch.

    load(device) -> Editor is called only when this process has work. base: sampler knobs for every item (item
    overrides win). Returns the counts of results.jsonl on the main process ({} elsewhere).
    """
    from tqdm import tqdm

    state = state or process_state(device)
    manifest, out = Path(manifest), Path(out)
    items = read_manifest(manifest)
    if state.is_main_process:
        for sub in ("images", "maps", "hold", "items", "logs"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
    state.wait_for_everyone()
    pending = [item for item in items if not finished(out, item)]
    state.wait_for_everyone()  # nobody writes a result before every process has listed the same pending items
    mine = pending[state.process_index :: state.num_processes]
    if mine:
        # "cpu", not accelerate's "cpu:0", which safetensors refuses
        editor = load(device or ("cpu" if state.device.type == "cpu" else str(state.device)))
        bar = tqdm(mine, desc="batch", unit="item", disable=not (progress and state.is_main_process), file=sys.stderr)
        for item in bar:
            record = run_item(editor, item, manifest.parent, out, base or {}, model)
            record["rank"] = state.process_index
            # the log line first: the record is the item's finished marker, so a kill between the two leaves
            # an item that is logged and redone (two lines, both true), never one finished and unlogged
            _log(out, state.process_index, record)
            write_json_atomic(item_path(out, item), record)
    state.wait_for_everyone()
    if not state.is_main_process:
        return {}
    return {**merge_results(out, items), "skipped": len(items) - len(pending), "processes": state.num_processes}

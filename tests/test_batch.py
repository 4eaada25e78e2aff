"""Batch editing: per-item errors and overrides, resume after SIGKILL, 2-process accelerate run."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_model import make_model_folder

from editmgt_core.edit.batch import launch_warning, run_batch
from editmgt_core.edit.files import read_parameters
from editmgt_core.model.loading import load_editor

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--steps", "2", "--guidance-scale", "2", "--negative-prompt", "", "--quiet"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def editor(model):
    return load_editor(model)


def write_manifest(folder: Path, rows: list, n_images: int = 2) -> Path:
    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / "img" / f"{i}.png")
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    (folder / "m.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "m.jsonl"


def good(i: int, **extra) -> dict:
    return {"id": f"item{i:02d}", "source": f"img/{i % 2}.png", "instruction": "make the red circle blue", **extra}


class Loader:
    def __init__(self, editor):
        self.editor, self.calls = editor, 0

    def __call__(self, device):
        self.calls += 1
        return self.editor


def test_bad_items_are_recorded_and_the_batch_goes_on_then_resumes(tmp_path, editor):
    rows = [
        good(0, steps=3, lam=0.3, category="recolor"),
        {"id": "missing", "source": "img/nope.png", "instruction": "x"},
        "{broken",
        good(1, steps=0),  # bad override
        {"id": "no-text", "source": "img/0.png"},
        good(2, keywords=["red"], temperature=[1, 0]),
    ]
    manifest = write_manifest(tmp_path, rows)
    out = tmp_path / "out"
    load = Loader(editor)
    base = {"seed": 0, "steps": 2, "guidance_scale": 2.0, "negative_prompt": ""}
    summary = run_batch(manifest, out, load, base=base, progress=False)
    assert summary["ok"] == 2 and summary["error"] == 4 and summary["pending"] == 0 and load.calls == 1
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == ["item00", "missing", "000002", "item01", "no-text", "item02"]
    errors = {r["id"]: r["error"] for r in results if r["status"] == "error"}
    assert "source image not found" in errors["missing"] and "malformed" in errors["000002"]
    assert "steps=0" in errors["item01"] and "instruction" in errors["no-text"]
    first = results[0]
    assert first["parameters"]["steps"] == 3 and first["parameters"]["lam"] == 0.3 and first["category"] == "recolor"
    assert read_parameters(out / first["output"])["seed"] == 0
    assert (out / first["map"]).is_file() and (out / first["hold"]).is_file()
    assert 0 < first["focus"] < 1 and first["gated"] is False and results[-1]["focus"] is None  # lam 0: no focus
    assert results[-1]["parameters"]["keywords"] == ["red"] and "map" not in results[-1]  # lam 0: no map

    finished = [out / "items" / "item00.json", out / "items" / "item02.json", out / "images" / "item00.png"]
    stamps = [p.stat().st_mtime_ns for p in finished]
    summary = run_batch(manifest, out, load, base=base, progress=False)
    assert summary["skipped"] == 2 and summary["ok"] == 2 and load.calls == 2  # failed items are retried
    assert [p.stat().st_mtime_ns for p in finished] == stamps

    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:1]) + "\n")
    summary = run_batch(tmp_path / "m.jsonl", out, load, base=base, progress=False)
    assert summary == {**summary, "items": 1, "ok": 1, "skipped": 1} and load.calls == 2  # nothing to do: no load


def _run_counts(out: Path) -> dict:
    counts = {}
    for log in (out / "logs").glob("rank*.log"):
        for line in log.read_text().splitlines():
            counts[line.split("\t")[0]] = counts.get(line.split("\t")[0], 0) + 1
    return counts


def _batch_cmd(manifest, out, model) -> list:
    return ["batch", "--manifest", str(manifest), "--out", str(out), "--model", str(model), *FAST]


def test_killed_batch_resumes_without_redoing_or_corrupting(tmp_path, model):
    n = 12
    manifest = write_manifest(tmp_path, [good(i) for i in range(n)])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "editmgt_core", *_batch_cmd(manifest, out, model)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900  # generous: on a loaded machine model loading alone can take a minute
    while len(list((out / "items").glob("*.json"))) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    finished_early = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (out / "items").glob("*.json"))
    assert not finished_early or len(done) < n, "the batch finished before it could be killed; make items slower"
    assert 3 <= len(done) < n, f"only {len(done)} items finished before the deadline"
    for p in (out / "items").glob("*.json"):
        assert json.loads(p.read_text())["status"] == "ok"  # whole files only
    stamps = {p: p.stat().st_mtime_ns for d in ("items", "images") for p in (out / d).glob("*.*")}

    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{n} ok" in rerun.stdout and f"({len(done)} already done" in rerun.stdout
    for p, stamp in stamps.items():
        if p.parent.name == "items" or p.with_suffix(".json").name in done:
            assert p.stat().st_mtime_ns == stamp, f"{p.name} was redone"
    counts = _run_counts(out)
    assert sorted(counts) == [f"item{i:02d}" for i in range(n)] and set(counts.values()) == {1}
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == [f"item{i:02d}" for i in range(n)]
    assert not list(out.rglob("*.tmp"))
    for r in results:
        Image.open(out / r["output"]).load()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not installed")
def test_accelerate_two_processes_split_the_work(tmp_path, model):
    n = 6
    manifest = write_manifest(tmp_path, [good(i) for i in range(n)])
    out = tmp_path / "out"
    # accelerate 1.x: `--cpu --num_processes 2` starts one process (multi-CPU needs MPI); the multi-GPU launcher
    # (torchrun) starts two, which join over gloo on the CPU when no GPU is visible
    launch = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    cmd = [*launch, "-m", "editmgt_core", *_batch_cmd(manifest, out, model)]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"{n} ok" in run.stdout and "2 process(es)" in run.stdout
    assert run.stdout.count("batch:") == 1  # only the main process reports
    counts = _run_counts(out)
    assert sorted(counts) == [f"item{i:02d}" for i in range(n)] and set(counts.values()) == {1}
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == [f"item{i:02d}" for i in range(n)]
    assert sorted(r["rank"] for r in results) == [0, 0, 0, 1, 1, 1]
    assert {(out / "logs" / f"rank{r}.log").is_file() for r in (0, 1)} == {True}


def test_single_process_under_a_multi_process_launch_warns():
    assert "--multi_gpu" in launch_warning(1, {"MASTER_ADDR": "127.0.0.1"})  # accelerate launch --cpu, no MPI
    assert launch_warning(2, {"MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2"}) is None
    assert launch_warning(1, {}) is None

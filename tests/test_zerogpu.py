"""ZeroGPU start-up order and durations, with a stand-in `spaces` (tests/zerogpu_standin) in a fresh interpreter.

CUDA cannot be initialised on a CPU-only machine, so the driver patches torch.cuda.init / is_initialized to a flag:
"initialising CUDA" sets it, and the stand-in refuses to import once it is set, as the real package does.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATCH = """
import torch
state = {"cuda": False}
torch.cuda.init = lambda: state.update(cuda=True)
torch.cuda.is_initialized = lambda: state["cuda"]
"""


def run(body: str, tmp_path: Path, zero_gpu: bool = True):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "zerogpu_standin"), str(ROOT)])}
    env.pop("SPACES_ZERO_GPU", None)
    env.pop("EDITMGT_MODEL", None)
    if zero_gpu:
        env["SPACES_ZERO_GPU"] = "true"
    env["ZEROGPU_RECORD"] = str(tmp_path / "durations.jsonl")
    code = PATCH + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_app_imports_spaces_before_cuda_and_asks_for_durations_per_call(tmp_path):
    out = run(
        """
        import sys
        import app                                   # imports spaces first
        assert "spaces" in sys.modules and app.default_device() == "cuda"
        torch.cuda.init()                            # what placing the model on the GPU does at start-up
        import dataclasses, json
        from PIL import Image
        from editmgt_core.edit.editing import default_options, resolve_options
        editor = app.load(app.DEFAULT_MODEL, "cpu")  # no GPU here: the work itself runs on the CPU
        ctx = app.make_context(editor)
        image = Image.open(app.EXAMPLES / "recolor-yellow-circle.png")
        px = editor.settings.pixels
        for steps, pixels in ((2, None), (3, 96 * 96)):
            options = resolve_options(editor, dataclasses.replace(default_options(editor), steps=steps, seed=0))
            list(ctx.stream(image, "make the yellow circle blue", options, None, pixels))
        options = resolve_options(editor, dataclasses.replace(default_options(editor), steps=2, seed=0))
        list(ctx.sweep(image, "make the yellow circle blue", options, [0.0, 0.2, 0.4], [1.0, 1.5], None, None))
        expected = [app.gpu_seconds(2, px), app.gpu_seconds(3, 96 * 96), app.gpu_seconds(2, px, 6)]
        print(json.dumps(expected))
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    recorded = [json.loads(line) for line in (tmp_path / "durations.jsonl").read_text().splitlines()]
    assert recorded == json.loads(out.stdout.strip().splitlines()[-1])  # each call's own steps, size and grid


def test_durations_grow_with_the_work_and_fit_a_visitors_quota():
    import app

    edit = app.gpu_seconds(36, 1024 * 1024)  # the published model's demo settings
    assert 15 <= app.gpu_seconds(8, 512 * 512) < edit < app.gpu_seconds(64, 1024 * 1024) < 60
    assert edit < app.gpu_seconds(36, 1024 * 1024, cells=4) <= app.GPU_MAX_SECONDS
    assert app.gpu_seconds(64, 1024 * 1024, cells=20) == app.GPU_MAX_SECONDS


def test_the_stand_in_fails_like_the_real_one_when_cuda_came_first(tmp_path):
    out = run("torch.cuda.init()\nimport app\n", tmp_path)
    assert out.returncode != 0 and "CUDA has been initialized before importing the `spaces` package" in out.stderr


def test_off_zerogpu_an_installed_spaces_changes_nothing(tmp_path):
    """gradio imports `spaces` whenever it is installed; without SPACES_ZERO_GPU the app neither picks CUDA for it
    nor routes its work through spaces.GPU."""
    out = run(
        """
        import app
        from PIL import Image
        from editmgt_core.edit.editing import resolve_options
        assert app.default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
        editor = app.load(app.DEFAULT_MODEL, "cpu")
        ctx = app.make_context(editor)
        image = Image.open(app.EXAMPLES / "recolor-yellow-circle.png")
        options = resolve_options(editor, None)
        list(ctx.stream(image, "make the yellow circle blue", options, None, None))
        print("ok")
        """,
        tmp_path,
        zero_gpu=False,
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]
    assert not (tmp_path / "durations.jsonl").exists()  # nothing went through spaces.GPU

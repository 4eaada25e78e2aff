"""ZeroGPU start-up order, durations, Stop and call limits, with a stand-in `spaces` (tests/zerogpu_standin, which
behaves as the real package: a worker drives a generator to its end) in a fresh interpreter.

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


def run(body: str, tmp_path: Path, zero_gpu: bool = True, limit: int = 120):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "zerogpu_standin"), str(ROOT)])}
    env.pop("SPACES_ZERO_GPU", None)
    env.pop("EDITMGT_MODEL", None)
    if zero_gpu:
        env["SPACES_ZERO_GPU"] = "true"
    env["ZEROGPU_RECORD"] = str(tmp_path / "durations.jsonl")
    env["ZEROGPU_MAX_SECONDS"] = str(limit)
    code = PATCH + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )


def test_app_imports_spaces_before_cuda_and_asks_for_durations_per_call(tmp_path):
    out = run(
        """
        import sys
        import app as entry                          # the Space's app.py: imports spaces first
        from editmgt_core.app import server as app
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
    from editmgt_core.app import server as app

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
        from editmgt_core.app import server as app
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


def test_the_stand_in_drives_a_generator_to_its_end_in_a_worker_whatever_the_consumer_does(tmp_path):
    out = run(
        """
        import threading, spaces
        produced, seen = [], []
        def seconds(n, label=""):
            seen.append((n, label))
            return 20
        @spaces.GPU(duration=seconds)
        def count(n, label=""):
            for i in range(n):
                produced.append(threading.current_thread().name)
                yield i
        items = count(50, label="x")
        assert next(items) == 0
        items.close()                                     # the consumer stops after one item
        assert len(produced) == 50 and set(produced) == {"gpu"}, produced   # the worker ran it to the end
        assert seen == [(50, "x")] and spaces.RECORDED == [20]              # the duration saw the same arguments
        try:
            list(count(2, label=threading.Lock()))        # arguments cross pickled, as to a forked process
            raise SystemExit("an unpicklable argument crossed")
        except TypeError:
            pass
        @spaces.GPU(duration=121)
        def too_long():
            yield 1
        try:
            list(too_long())
            raise SystemExit("a call beyond the maximum ran")
        except RuntimeError as err:
            assert "larger than the maximum allowed" in str(err)
        print("ok")
        """,
        tmp_path,
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def test_stop_ends_the_gpu_work_within_a_step_and_the_next_edit_completes(tmp_path):
    """Stop after step 2 of a 64-step edit: the worker finishes the step it is in and no other (the transformer's
    calls are counted); the step in progress is held until Stop is pressed, so what the count shows is not a race."""
    out = run(
        """
        import dataclasses, threading, time
        from editmgt_core.app import server as app
        from PIL import Image
        from editmgt_core.edit.editing import default_options, resolve_options
        from editmgt_core.studio.streaming import Final, Frame
        editor = app.load(app.DEFAULT_MODEL, "cpu")
        ctx = app.make_context(editor)
        calls, runs = [], []
        def held(module, args):
            calls.append(threading.current_thread().name)
            if len(calls) == 4:                    # step 3: in progress when Stop comes
                deadline = time.monotonic() + 120  # a bound on a hang, not a timing
                while not runs[0].board.stopped(runs[0].run) and time.monotonic() < deadline:
                    time.sleep(0.001)
        editor.transformer.register_forward_pre_hook(held)
        image = Image.open(app.EXAMPLES / "recolor-yellow-circle.png")
        options = resolve_options(editor, dataclasses.replace(default_options(editor), steps=64, seed=555))
        items = ctx.stream(image, "make the yellow circle blue", options, None, None)
        runs.append(items)
        for item in items:
            if isinstance(item, Frame) and item.step == 2:
                break
        at_stop = item.step + 1                    # steps 0-2 done; step 3 (held) may have begun or not
        items.close()                              # Stop
        second = list(ctx.stream(image, "make the yellow circle blue", dataclasses.replace(options, steps=2),
                                 None, None))
        assert isinstance(second[-1], Final) and len([f for f in second if isinstance(f, Frame)]) == 2
        after_stop = len(calls) - 2 - at_stop      # less the second edit's two steps, run after the first ended
        assert at_stop == 3 and after_stop <= 1, (at_stop, after_stop)
        assert set(calls) == {"gpu"}               # every step ran on the worker
        print("ok", at_stop, after_stop)
        """,
        tmp_path,
    )
    assert out.returncode == 0 and "ok 3" in out.stdout, out.stderr[-3000:]


def test_a_sweep_beyond_a_calls_limit_runs_as_several_calls(tmp_path):
    out = run(
        """
        import dataclasses, json
        from editmgt_core.app import server as app
        from PIL import Image
        from editmgt_core.edit.editing import default_options, resolve_options
        from editmgt_core.studio.streaming import Cell, CellStep
        from editmgt_core.studio import gpu_calls
        gpu_calls.GPU_MAX_SECONDS = 20             # with the stand-in's ZEROGPU_MAX_SECONDS=20: six cells need 22 s
        editor = app.load(app.DEFAULT_MODEL, "cpu")
        ctx = app.make_context(editor)
        image = Image.open(app.EXAMPLES / "recolor-yellow-circle.png")
        options = resolve_options(editor, dataclasses.replace(default_options(editor), steps=2, seed=777))
        items = list(ctx.sweep(image, "make the yellow circle blue", options, [0.0, 0.2, 0.4], [1.0, 1.5], None, None))
        cells = [i for i in items if isinstance(i, Cell)]
        assert [(c.index, c.gamma, c.lam) for c in cells] == [(0, 1.0, 0.0), (1, 1.0, 0.2), (2, 1.0, 0.4),
                                                               (3, 1.5, 0.0), (4, 1.5, 0.2), (5, 1.5, 0.4)]
        assert {i.cells for i in items if isinstance(i, CellStep)} == {6}
        print(json.dumps(app.gpu_need(2, editor.settings.pixels, 6)))
        """,
        tmp_path,
        limit=20,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) > 20  # one call would have been refused
    recorded = [json.loads(line) for line in (tmp_path / "durations.jsonl").read_text().splitlines()]
    assert len(recorded) == 2 and all(s <= 20 for s in recorded)  # one call per γ row, each within the limit

"""The page's edit runs (app_edit) called directly on a tiny model: one run on screen from start to end, Stop in
each phase, refusals and bad input in the status with the previous result kept, a restore of a whole run that Edit
reproduces, and the saved files' hashes and brush copy."""

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_studio import picture
from tiny_model import make_model_folder

from editmgt_core.app import handlers
from editmgt_core.app import runs as app_edit
from editmgt_core.app import server as app
from editmgt_core.edit import files as files_module
from editmgt_core.edit.files import read_parameters
from editmgt_core.model.loading import load_editor

pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")


@pytest.fixture(scope="module")
def editor(tmp_path_factory):
    return load_editor(make_model_folder(tmp_path_factory.mktemp("tiny")))


def edit_knobs(**changes) -> dict:
    knobs = dict(
        keywords=["circle"],
        gamma=1.1,
        lam=0.3,
        steps=3,
        guidance_scale=2.0,
        seed=7,
        randomize=False,
        negative_prompt="",
        layers="1, s0",
        temperature_start=2.0,
        temperature_end=0.0,
        resolution=32,
        mask_mode="union",
    )
    return knobs | changes


def page_edit(ctx, value, instruction="make the circle red", history=(), shown=None, **knobs) -> list[dict]:
    """One press of Edit as the page runs it: begin (the run shown as queued), then the streamed edit."""
    run = app_edit.begin(None)["run"]
    return list(app_edit.run_edit(ctx, run, value, instruction, list(history), shown, **knobs))


def test_ui_handlers(editor, tmp_path):
    ctx = app.make_context(editor, frame_interval=0.0, out_dir=tmp_path, preview_side=64)
    layer = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    layer.paste((255, 0, 0, 200), (0, 0, 16, 32))
    value = {"background": picture(32, 32).convert("RGBA"), "layers": [layer], "composite": None}
    updates = page_edit(ctx, value, **edit_knobs(), view="attention")
    assert len(updates) == 4  # cleared, steps 1 and 2 live, 3 with the result
    assert set(updates[1]) == {"canvas", "overlay", "status"} and set(updates[-1]) == set(app.EDIT_OUTPUTS)
    cleared = updates[0]
    assert cleared["status"].startswith("**Encoding** the 32x32 image") and cleared["result"] is None
    assert cleared["changed"] is None and cleared["files"] is None and cleared["used_seed"] == ""
    assert cleared["frames"] == []  # no result, files, seed or frames of before
    final = updates[-1]
    before, after = final["result"]
    files, seed, frames, shown, history = (final[k] for k in ("files", "used_seed", "frames", "shown", "history"))
    assert seed == "7" and len(frames) == 3 and len(history) == 1 and before.size == after.size == (32, 32)
    record = read_parameters(files[0])
    assert record["keywords"] == ["circle"] and Path(files[1]).suffix == ".json"
    assert record["mask_sha256"] and record["source_sha256"] and "/" not in record["model"]  # no server path
    sidecar = json.loads(Path(files[1]).read_text())  # the JSON keeps the brush itself: the edit can be made again
    saved_mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(sidecar["mask_png"].split(",")[1])))) > 127
    assert files_module.mask_sha256(saved_mask) == record["mask_sha256"]
    assert app_edit.replay(frames, 2)[2].startswith("**Step 2/3**")
    assert app_edit.use_as_input(shown)["background"] is shown["image"]
    typed = app_edit.chips("make the Circle red", ["circle", "dog"], "make the circle red")[0]
    assert typed.value == ["Circle"]  # typed
    replaced = app_edit.chips("make the circle blue", ["circle"], "make the square red")[0]
    assert replaced.value == []  # a new instruction
    restored = app_edit.restore(None, history, type("Select", (), {"index": 0})())
    assert set(restored) <= set(app.RESTORE_OUTPUTS)
    assert restored["instruction"] == "make the circle red" and restored["seed"] == 7 and restored["randomize"] is False
    assert restored["image_in"]["background"] is history[0]["source"] and history[0]["source"] is before  # the input
    assert restored["result"] == (before, history[0]["image"]) and "Restored" in restored["status"]
    assert restored["mask_mode"] == "union" and restored["resolution"] == 32 and restored["layers"] == "1, s0"
    assert restored["view"] == "attention" and restored["files"] == files and restored["frames"] == frames
    stroke = restored["image_in"]["layers"][0]  # the brush comes back as the stroke the edit used
    assert np.array_equal(np.asarray(stroke.getchannel("A")) > 0, np.asarray(layer.getchannel("A")) > 0)
    again = page_edit(ctx, restored["image_in"], **{**edit_knobs(), "seed": restored["seed"]})[-1]
    assert np.array_equal(np.asarray(again["result"][1]), np.asarray(after))  # Edit after a restore: the same pixels
    sweep = list(
        handlers.run_sweep(ctx, handlers.RUNS.begin(), value, "make the circle red", "0, 1", "", **edit_knobs())
    )
    assert sweep[-2]["grid"].count("<img") == 2 and sweep[-1]["used_seed"] == "7"
    assert sweep[-2]["grid"].count("<tr>") == 2  # a header row and one row per γ


def test_refusals_and_bad_input_replace_the_status_and_keep_the_previous_result(editor, tmp_path):
    ctx = app.make_context(editor, frame_interval=0.0, out_dir=tmp_path, preview_side=64)
    value = {"background": picture(32, 32).convert("RGBA"), "layers": [], "composite": None}
    done = page_edit(ctx, value, **edit_knobs(keywords=[], layers=""))[-1]
    shown = done["shown"]
    for bad_value, instruction, knobs, expected in [
        (None, "make it red", {}, "No image"),
        ({"background": picture(1, 1), "layers": []}, "make it red", {}, "at least 8x8"),
        (value, "make it red", {"keywords": ["dog"]}, "'dog' are not words of the instruction"),
        (value, "make it red", {"layers": "1 -> 2"}, "ttention layers '1 -> 2'"),
    ]:
        (update,) = page_edit(ctx, bad_value, instruction, shown=shown, **edit_knobs(keywords=[], layers="") | knobs)
        assert update["status"].startswith("**Not edited**") and expected in update["status"], update["status"]
        assert "&gt;" not in update["status"] and "previous result" in update["status"]
        assert update["shown"] is shown and update["used_seed"] == "7"  # every panel: the previous run's


def test_stop_marks_end_the_run_with_the_previous_result(editor, tmp_path):
    ctx = app.make_context(editor, frame_interval=0.0, out_dir=tmp_path, preview_side=64)
    value = {"background": picture(32, 32).convert("RGBA"), "layers": [], "composite": None}
    shown = page_edit(ctx, value, **edit_knobs(keywords=[], layers=""))[-1]["shown"]
    run = app_edit.begin(None)["run"]
    updates = app_edit.run_edit(
        ctx, run, value, "make it blue", [], shown, **edit_knobs(keywords=[], layers="", steps=20)
    )
    assert next(updates)["status"].startswith("**Encoding**")
    assert next(updates)["status"].startswith("**Step 1/20**")
    assert app_edit.stop(run, "**Step 1/20** · 3% held", shown).startswith("**Stopping** at step 1/20")
    (last,) = list(updates)
    assert last["status"].startswith("**Stopped** at step 1/20") and "previous result again" in last["status"]
    assert last["shown"] is shown and last["used_seed"] == "7"
    queued = app_edit.begin(run)["run"]  # stopped before it started: it never runs
    assert app_edit.stop(queued, "**Queued**", shown).startswith("**Stopped** at its place in the queue")
    (only,) = app_edit.run_edit(ctx, queued, value, "make it blue", [], shown, **edit_knobs())
    assert only["status"].startswith("**Stopped** at its place in the queue") and only["shown"] is shown
    superseded = app_edit.begin(queued)["run"]
    app_edit.begin(superseded)  # Edit pressed again: the earlier run shows nothing more
    assert list(app_edit.run_edit(ctx, superseded, value, "make it blue", [], shown, **edit_knobs())) == [
        {"status": app_edit.SKIP}
    ]


def test_a_gated_edit_says_why_nothing_was_held(editor, tmp_path):
    ctx = app.make_context(editor, frame_interval=0.0, out_dir=tmp_path, preview_side=64)
    value = {"background": picture(32, 32).convert("RGBA"), "layers": [], "composite": None}
    knobs = dict(
        keywords=[],
        gamma=1.0,
        lam=0.5,
        steps=2,
        guidance_scale=2.0,
        seed=3,
        randomize=False,
        negative_prompt="",
        layers="",
        temperature_start=2.0,
        temperature_end=0.0,
        resolution=32,
        mask_mode="replace",
        grow=1,
        keep_pixels=True,
    )
    off = page_edit(ctx, value, **{**knobs, "lam": 0.0})[-1]
    assert "region hold off (λ = 0): the map shows" in off["frames"][-1][2]  # the replay frames' status: a map at λ = 0
    held = page_edit(ctx, value, **knobs, focus_gate=0.0)[-1]
    assert "whole-image" not in held["status"] and "0% held" not in held["status"]
    gated = page_edit(ctx, value, **knobs, focus_gate=1.0)[-1]
    status = gated["status"]
    assert "0% held" in status and "whole-image edit (focus 0." in status and "< gate 1;" in status
    record = json.loads(Path(gated["files"][1]).read_text())
    assert record["gated"] is True and 0 < record["focus"] < 1 and record["focus_gate"] == 1.0

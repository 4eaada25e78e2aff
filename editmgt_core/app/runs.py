"""The page's edit runs: Edit begins a run (queued, then encoding, decoding step k/N) that ends done, stopped,
refused or failed; Stop, the history and the replay scrubber act on the run the page shows. Every panel is drawn
from one run's record (`show`): a finished run's record is what the history keeps, so a restore brings back every
panel and every control of that run. `editmgt_core.studio.page_state` keeps the runs' marks and status lines.
"""

from __future__ import annotations

import contextlib
import logging
import time

import gradio as gr
import numpy as np
from PIL import Image

from editmgt_core.app import controls as knob_controls
from editmgt_core.app.handlers import RUNS, SKIP, Context, domain_notices, editor_image, gate_note, plain, user_message
from editmgt_core.model import entries
from editmgt_core.studio import domain, page_state, render, streaming, validate

HISTORY = 12  # results kept per session
BRUSH = (255, 45, 122, 153)  # the brush colour (app: #ff2d7a at 0.6) for a restored stroke
log = logging.getLogger("editmgt.app")


def begin(run):
    """Edit pressed (an unqueued event, before the edit's own queued one): a new run, shown as queued; the page's
    previous run, if still going, is stopped and shows nothing more."""
    return {"run": RUNS.begin(run), "status": page_state.queued()}


def stop(run, status, shown):
    """Stop pressed: mark the page's run; the run's handler ends it between steps with the final status. A run
    still queued ends here."""
    marks = RUNS.stop(run, page_state.where_stopped(status))
    if marks is None:
        return SKIP
    if marks.stopped == page_state.QUEUED:
        return page_state.stopped(page_state.QUEUED, shown and page_state.describe(shown["parameters"]))
    return page_state.stopping(marks.stopped)


def live(ctx: Context, frame: streaming.Frame, preview: Image.Image, base: Image.Image) -> dict:
    """The live panel for one step: reveal canvas over the latest decoded preview, attention overlay, status."""
    status = f"**Step {frame.step + 1}/{frame.num_steps}** · {frame.held_fraction:.0%} of tokens held"
    if frame.scores is None:
        status += " · no attention map"
    elif frame.hold is None:
        status += " · region hold off (λ = 0): the map shows where the model attends"
    status += gate_note(frame)
    overlay = render.attention_overlay(base, frame.scores, frame.hold, ctx.preview_side)
    return {"canvas": render.reveal_canvas(preview, frame.revealed, ctx.preview_side), "overlay": overlay,
            "status": status}  # fmt: skip


def cached(shown: dict) -> tuple[bytes, bytes, str]:
    """A live panel as the replay scrubber keeps it: (canvas JPEG, overlay JPEG, status)."""
    return render.jpeg(shown["canvas"]), render.jpeg(shown["overlay"]), shown["status"]


def show(record: dict | None, status: str) -> dict:
    """Every result panel drawn from one run's record (None: empty panels), with `status`."""
    if record is None:
        return {"canvas": None, "overlay": None, "status": status, "result": None, "changed": None, "files": None,
                "scrubber": gr.Slider(visible=False), "used_seed": "", "frames": [], "shown": None}  # fmt: skip
    frames = record["frames"]
    canvas, overlay, _ = frames[-1]
    return {
        "canvas": render.from_jpeg(canvas),
        "overlay": render.from_jpeg(overlay),
        "status": status,
        "result": (record["source"], record["image"]),
        "changed": render.change_heatmap(record["source"], record["image"]),
        "scrubber": gr.Slider(1, len(frames), len(frames), step=1, visible=len(frames) > 1),
        "files": record["files"],
        "used_seed": str(record["parameters"]["seed"]),
        "frames": frames,
        "shown": record,
    }


def previous(shown: dict | None) -> str | None:
    return shown and page_state.describe(shown["parameters"])


def ended(run: str, shown: dict | None, status: str) -> dict:
    """A run that made no result (stopped, refused, failed): the page shows the previous result again, or nothing
    of this run; superseded runs show nothing at all."""
    RUNS.end(run)
    return {"status": SKIP} if RUNS.get(run).superseded else show(shown, status)  # (gradio takes {} as one value)


def checked(ctx: Context, value, instruction, strict, values) -> tuple:
    """The edit's inputs checked -> (image, mask, options, pixels, notices); ValueError otherwise."""
    image, notice, mask = editor_image(value)
    validate.check_instruction(instruction)
    validate.check_keywords(values.get("keywords"), instruction)
    options, pixels = validate.request(ctx.editor, **values)
    return image, mask, options, pixels, [notice] * bool(notice) + domain_notices(ctx, image, instruction, pixels,
                                                                                  strict)  # fmt: skip


def run_edit(ctx: Context, run, value, instruction, history, shown, strict=False, view=None, **values):
    """Stream the page's run `run` into the live panels; yields {output name: value}. It ends in one state: done
    (every panel from this run), stopped, refused or failed (the previous result back, and the status says so)."""
    try:
        yield from stream_run(ctx, run, value, instruction, history, shown, strict, view, values)
    finally:  # however it ends (a closed page included), Stop no longer finds it running
        RUNS.end(run)


def history_record(ctx: Context, final, frames: list, mask, controls: dict, instruction: str, history: list) -> dict:
    """A finished run as the history keeps it: every panel's content and every control, to restore it whole."""
    reads = entries.reads_words(final.parameters["layers"] or ctx.editor.settings.attention_layers)
    number = (history[-1]["number"] + 1) if history else 1
    record = {"image": final.image, "source": final.source, "parameters": final.parameters, "frames": frames}
    record |= {"files": ctx.save(final), "controls": controls, "instruction": instruction, "mask": mask}
    return record | {"number": number, "reads_words": reads}


def stream_run(ctx: Context, run, value, instruction, history, shown, strict, view, values: dict):
    clock, marks = time.perf_counter(), RUNS.start(run)
    if marks.stopped:  # stopped while queued, or superseded before it started
        yield ended(run, shown, page_state.stopped(page_state.QUEUED, previous(shown)))
        return
    try:
        image, mask, options, pixels, notices = checked(ctx, value, instruction, strict, values)
    except ValueError as err:
        say = page_state.refused if isinstance(err, domain.OutOfDomainError) else page_state.failed
        yield ended(run, shown, say(user_message(err), previous(shown)))
        return
    for text in notices:
        gr.Warning(plain(text), duration=None if "trained" in text else 10)
    warn = "".join(f"\n\n⚠ {text}" for text in notices)
    items = ctx.stream(image, instruction, options, mask, pixels)  # decoding starts now, in the background
    frames, pace, frame, final = [], streaming.FrameClock(ctx.frame_interval), None, None
    base = render.fit(image, ctx.preview_side)
    preview = render.dim(base)  # until a preview is decoded every token is undecided
    status = f"**Encoding** the {image.width}x{image.height} image and the instruction…{warn}"
    yield show(None, status) | {"canvas": preview, "overlay": base}
    try:
        with contextlib.closing(items):
            for item in items:
                if marks.stopped:
                    break
                if isinstance(item, streaming.Final):
                    final = item
                    continue
                frame, preview = item, item.preview or preview
                if item.step == item.num_steps - 1:  # shown below with the result: the last step decoded
                    continue
                shown_now = live(ctx, item, preview, base)
                frames.append(cached(shown_now))
                if pace.due(force=item.step == 0):  # throttled; the first at once
                    yield shown_now | {"status": shown_now["status"] + warn}
    except Exception as err:  # noqa: BLE001 (any failure ends the run with a readable status, not a stack)
        if not isinstance(err, ValueError):
            log.exception("edit failed")
        yield ended(run, shown, page_state.failed(user_message(err), previous(shown)))
        return
    if final is None:
        yield ended(run, shown, page_state.stopped(marks.stopped or page_state.ENCODING, previous(shown)))
        return
    RUNS.end(run)
    frames.append(cached(live(ctx, frame, final.image, base)))
    controls = {**values, "seed": final.parameters["seed"], "randomize": False, "view": view}
    record = history_record(ctx, final, frames, mask, controls, instruction, history)
    p, took = final.parameters, time.perf_counter() - clock
    status = f"**Done** · {p['steps']} steps in {took:.1f} s · seed {p['seed']} · {final.held_fraction:.0%} held"
    history = [*history, record][-HISTORY:]
    yield show(record, status + gate_note(final) + warn) | {"history": history, "gallery": gallery_items(history)}


def replay(frames, k):
    """Show cached frame k (1-based) of the shown run; nothing is recomputed."""
    if not frames:
        return SKIP, SKIP, SKIP
    canvas, overlay, status = frames[min(max(int(k), 1), len(frames)) - 1]
    return render.from_jpeg(canvas), render.from_jpeg(overlay), f"{status} · replay"


def restore(run, history, evt: gr.SelectData) -> dict:
    """A history entry back on the page, whole: every panel from its record and every control as it was set for
    it (the seed it used, randomize off), the input with its brush stroke; Edit then reproduces it exactly. The
    page's running edit, if any, is stopped."""
    RUNS.supersede(run)
    record = history[evt.index]
    p, controls = record["parameters"], dict(record["controls"])
    view = controls.pop("view", None)
    controls["keywords"] = gr.CheckboxGroup(choices=validate.words(record["instruction"]),
                                            value=list(controls.get("keywords") or ()),
                                            interactive=record["reads_words"])  # fmt: skip
    status = f"**Restored** result #{record['number']} ({page_state.describe(p)}): every panel and setting is that " \
        "run's. Press **Edit** to run it again (same seed, same result)."  # fmt: skip
    inputs = {"image_in": editor_value(record["source"], record.get("mask")), "instruction": record["instruction"],
              "typed": record["instruction"]}  # fmt: skip
    return controls | inputs | ({"view": view} if view else {}) | show(record, status)


def use_as_input(shown):
    if not shown:
        raise gr.Error("Nothing to use yet: run an edit first.")
    return editor_value(shown["image"])


def editor_value(image: Image.Image, mask: np.ndarray | None = None) -> dict:
    """An image (and a brush stroke: bool [H, W] at its size) as the image editor takes it."""
    layers = []
    if mask is not None:
        stroke = np.zeros((*mask.shape, 4), np.uint8)
        stroke[mask] = BRUSH
        layers = [Image.fromarray(stroke, "RGBA")]
    return {"background": image, "layers": layers, "composite": image}


def gallery_items(history: list[dict]) -> list[tuple[Image.Image, str]]:
    """The history's thumbnails, each captioned with its number first (captions are cut to the thumbnail)."""
    return [(h["image"], f"#{h['number']} · seed {h['parameters']['seed']} · {h['instruction']}") for h in history]


def keywords_info(recipe: tuple, layers: str):
    """The keyword chips: live only when the map reads the instruction's words (attention entries); an empty
    layers box means the model's recipe. The info line says why they are off."""
    try:
        words = entries.reads_words(entries.from_text(layers) if layers.strip() else recipe)
    except ValueError:
        return SKIP  # the edit itself reports a bad entry
    return gr.CheckboxGroup(interactive=words, info=knob_controls.keywords_help(words))


def chips(instruction, chosen, previous=None):
    """Keyword chips: the instruction's words; ticks survive typing but not a new instruction
    (validate.keep_keywords). Returns (chips, the instruction as the next call's `previous`)."""
    kept = validate.keep_keywords(previous, instruction, chosen)
    return gr.CheckboxGroup(choices=validate.words(instruction), value=kept), instruction or ""

"""EditMGT Studio's handlers: what the app's buttons and the /edit and /sweep API endpoints run. Each takes the
shared Context and plain values, checks them (`editmgt_core.studio.studio_inputs`), runs the streamed edit or
sweep (`editmgt_core.studio.streaming`) and renders what it yields (`editmgt_core.studio.studio_render`); `app.py` lays
out the page and wires these to its components.
"""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

import app_knobs
from editmgt_core.edit import knobs
from editmgt_core.edit.editing import resolve_options, to_rgb
from editmgt_core.model import entries
from editmgt_core.model.loading import Editor
from editmgt_core.studio import domain, streaming, studio_inputs, studio_render

HISTORY = 12  # results kept per session
# Uploads up to this are edited and returned at their own resolution (a 12 MP photo comes back at 12 MP: the edit is
# composited onto it, edit/composite.py); the page refuses larger ones with a message, and so does the server.
FULL_RESOLUTION_PIXELS = 16_000_000
SKIP = gr.skip()
NO_IMAGE = ("no image: upload, paste or capture an image first (an uploaded file that shows nothing here could not "
            "be decoded as an image: use PNG, JPEG, WebP, BMP, GIF or TIFF)")  # fmt: skip
log = logging.getLogger("editmgt.app")


@contextlib.contextmanager
def user_errors():
    """Bad input -> gr.Error with a readable message (no traceback); the session stays usable."""
    try:
        yield
    except gr.Error:
        raise
    except (ValueError, OSError) as err:
        text = str(err) or type(err).__name__
        text = text[0].upper() + text[1:] if re.match(r"[a-z]+ ", text) else text  # not 'lam=5; ...'
        raise gr.Error(html.escape(text, quote=False), print_exception=False) from None
    except Exception as err:
        log.exception("edit failed")
        text = f"The edit failed ({type(err).__name__}: {err}). Try other settings."
        raise gr.Error(html.escape(text, quote=False)) from None


def by_name(handler: Callable, ui: dict) -> Callable:
    """A handler that returns or yields {name: value} as gradio takes it, {component: value}; ui: the components by
    name. Outputs it leaves out keep their value. Closing the stream (Stop) closes the handler's generator."""
    if not inspect.isgeneratorfunction(handler):
        return functools.wraps(handler)(lambda *args, **kw: {ui[k]: v for k, v in handler(*args, **kw).items()})

    @functools.wraps(handler)
    def stream(*args, **kw):
        with contextlib.closing(handler(*args, **kw)) as updates:
            for update in updates:
                yield {ui[k]: v for k, v in update.items()}

    return stream


# ---------------------------------------------------------------------------------------------------- context


@dataclass(frozen=True)
class Context:
    """What the handlers share: the editor and its (possibly ZeroGPU-wrapped) generators."""

    editor: Editor
    stream: Callable[..., Iterator]  # (image, instruction, options, mask, pixels[, previews]) -> Frame..., Final
    sweep: Callable[..., Iterator]  # (image, instruction, options, lams, gammas, mask, pixels) -> CellStep | Cell
    preview_side: int
    frame_interval: float  # seconds between live frames sent to the browser
    out_dir: Path  # downloads (PNG + JSON)
    check: Callable[..., list[str]] = lambda *args: []  # (image, instruction, pixels) -> out-of-domain notices

    def save(self, final: streaming.Final) -> list[str]:
        studio_render.prune(self.out_dir)
        return [str(p) for p in studio_render.save_result(final, self.out_dir)]


# ---------------------------------------------------------------------------------------------------- UI handlers


def full_resolution(image: Image.Image | None) -> tuple[Image.Image, str | None]:
    """An upload as upright RGB at its own resolution (results come back at this size), after the input checks;
    ValueError beyond FULL_RESOLUTION_PIXELS. The notice is None: nothing is downscaled."""
    checked, notice = studio_inputs.check_image(image)  # the limits; its downscaled copy serves only big uploads
    if notice is None:
        return checked, None
    if image.width * image.height > FULL_RESOLUTION_PIXELS:
        raise ValueError(f"the image is {image.width}x{image.height} ({image.width * image.height / 1e6:.0f} "
                         f"megapixels); images up to {FULL_RESOLUTION_PIXELS / 1e6:.0f} megapixels are edited at "
                         "their own resolution: downscale it first")  # fmt: skip
    return to_rgb(image), None


def editor_image(value) -> tuple[Image.Image, str | None, object]:
    """gr.ImageEditor value -> (RGB image at its own resolution, within the limits; a notice or None; brush mask at
    its size or None)."""
    if not value or value.get("background") is None:
        raise ValueError(NO_IMAGE)
    image, notice = full_resolution(value["background"])
    return image, notice, studio_inputs.brush_mask(value.get("layers"), image.size)


def domain_notices(ctx: Context, image: Image.Image, instruction: str, pixels, strict) -> list[str]:
    """Out-of-domain notices for an edit's inputs (strict: a ValueError instead, shown as an error)."""
    notices = ctx.check(image, instruction, pixels)
    if strict and notices:
        raise domain.OutOfDomainError("strict mode: " + " ".join(notices))
    return notices


def gate_note(item: streaming.Frame | streaming.Final) -> str:
    if not item.gated:
        return ""
    gate = item.parameters["focus_gate"] if isinstance(item, streaming.Final) else None
    limit = f" < gate {gate:g}" if gate is not None else ""
    return (f" · nothing held by the map: the instruction reads as a whole-image edit (focus {item.focus:.3f}{limit};"
            " lower the focus gate to hold anyway)")  # fmt: skip


def live(ctx: Context, frame: streaming.Frame, preview: Image.Image, base: Image.Image) -> dict:
    """The live panel for one step: reveal canvas over the latest decoded preview, attention overlay, status."""
    status = f"**Step {frame.step + 1}/{frame.num_steps}** · {frame.held_fraction:.0%} of tokens held"
    if frame.scores is None:
        status += " · no attention map"
    elif frame.hold is None:
        status += " · region hold off (λ = 0): the map shows where the model attends"
    status += gate_note(frame)
    overlay = studio_render.attention_overlay(base, frame.scores, frame.hold, ctx.preview_side)
    return {"canvas": studio_render.reveal_canvas(preview, frame.revealed, ctx.preview_side), "overlay": overlay,
            "status": status}  # fmt: skip


def cached(shown: dict) -> tuple[bytes, bytes, str]:
    """A live panel as the replay scrubber keeps it: (canvas JPEG, overlay JPEG, status)."""
    return studio_render.jpeg(shown["canvas"]), studio_render.jpeg(shown["overlay"]), shown["status"]


def run_edit(ctx: Context, value, instruction, history, strict=False, **knobs):
    """Stream an edit into the live panel; yields {output name: value} (build_app's EDIT_OUTPUTS; the others keep
    their value). The first update clears the previous result's panels, so nothing on screen belongs to another
    run."""
    clock = time.perf_counter()
    with user_errors():
        image, notice, mask = editor_image(value)
        studio_inputs.check_instruction(instruction)
        options, pixels = studio_inputs.request(ctx.editor, **knobs)
        notices = [notice] * bool(notice) + domain_notices(ctx, image, instruction, pixels, strict)
    for text in notices:
        gr.Warning(text, duration=None if "trained" in text else 10)
    warn = "".join(f"\n\n⚠ {text}" for text in notices)
    items = ctx.stream(image, instruction, options, mask, pixels)  # decoding starts now, in the background
    frames, sent = [], 0.0
    base, frame, final = studio_render.fit(image, ctx.preview_side), None, None
    preview = studio_render.dim(base)  # until a preview is decoded every token is undecided
    status = f"**Encoding** the {image.width}x{image.height} image and the instruction…{warn}"
    yield {"canvas": preview, "overlay": base, "status": status, "result": None, "changed": None,
           "scrubber": gr.Slider(visible=False), "files": None, "used_seed": None, "frames": []}  # fmt: skip
    with user_errors(), contextlib.closing(items):
        for item in items:
            if isinstance(item, streaming.Final):
                final = item
                continue
            frame, preview = item, item.preview or preview
            if item.step == item.num_steps - 1:  # shown below with the result: the last step decoded
                continue
            shown = live(ctx, item, preview, base)
            frames.append(cached(shown))
            if item.step == 0 or time.monotonic() - sent >= ctx.frame_interval:  # throttled; the first at once
                sent = time.monotonic()
                yield shown | {"status": shown["status"] + warn}
        shown = live(ctx, frame, final.image, base)
        frames.append(cached(shown))
        files = ctx.save(final)
    p = final.parameters
    history = [*history, {"image": final.image, "source": final.source, "parameters": p}][-HISTORY:]
    took = time.perf_counter() - clock
    status = f"**Done** · {p['steps']} steps in {took:.1f} s · seed {p['seed']} · {final.held_fraction:.0%} held"
    n = len(frames)
    yield shown | {
        "status": status + gate_note(final) + warn,
        "result": (final.source, final.image),
        "changed": studio_render.change_heatmap(final.source, final.image),
        "scrubber": gr.Slider(1, n, n, step=1, visible=n > 1),
        "files": files,
        "used_seed": p["seed"],
        "frames": frames,
        "last": {"image": final.image, "parameters": p},
        "history": history,
        "gallery": gallery_items(history),
    }


def replay(frames, k):
    """Show cached frame k (1-based) of the last run; nothing is recomputed."""
    if not frames:
        return SKIP, SKIP, SKIP
    canvas, overlay, status = frames[min(max(int(k), 1), len(frames)) - 1]
    return studio_render.from_jpeg(canvas), studio_render.from_jpeg(overlay), f"{status} · replay"


def chips(instruction, chosen, previous=None):
    """Keyword chips: the instruction's words; ticks survive typing but not a new instruction
    (studio_inputs.keep_keywords). Returns (chips, the instruction as the next call's `previous`)."""
    kept = studio_inputs.keep_keywords(previous, instruction, chosen)
    return gr.CheckboxGroup(choices=studio_inputs.words(instruction), value=kept), instruction or ""


def stopped(status):
    """Stop pressed: say at which step the run ended (the cancelled handler yields nothing more)."""
    return studio_inputs.stopped_status(status) or SKIP


def keyword_chips_state(recipe: tuple, layers: str):
    """Keyword chips are live only when the map reads the instruction's words (attention entries); an empty layers
    box means the model's recipe."""
    try:
        words = entries.reads_words(entries.from_text(layers) if layers.strip() else recipe)
    except ValueError:
        return SKIP  # the edit itself reports a bad entry
    info = knobs.KNOBS["keywords"].help if words else "The predicted-change map does not read words: keywords have no "\
        "effect."  # fmt: skip
    return gr.CheckboxGroup(interactive=words, info=info)


def use_as_input(last):
    if not last:
        raise gr.Error("Nothing to use yet: run an edit first.")
    return editor_value(last["image"])


def restore(history, evt: gr.SelectData) -> dict:
    """A history entry back into the inputs: the image it was made from and its parameters in the controls (by
    knob name; a knob the entry lacks keeps its control's value), its result beside it in the before/after panel;
    Edit then reproduces it (the seed is restored)."""
    entry = history[evt.index]
    p = entry["parameters"]
    t0, t1 = knobs.temperature_pair(p["temperature"])
    controls = {k: p[k] for k in app_knobs.SHOWN if k in p}  # an older entry lacks newer knobs: they stay
    controls |= {"randomize": False, "layers": app_knobs.layers_text(p["layers"]), "temperature_start": t0,
                 "temperature_end": t1}  # fmt: skip
    controls["keywords"] = gr.CheckboxGroup(choices=studio_inputs.words(p["instruction"]), value=list(p["keywords"]))
    source = entry.get("source", entry["image"])  # (entries saved before sources were kept restore their result)
    status = f"Restored the input and settings of '{p['instruction'][:60]}' (seed {p['seed']}); its result is in " \
        "**Before / after**. Press **Edit** to run it again."  # fmt: skip
    return controls | {"image_in": editor_value(source), "instruction": p["instruction"],
                       "result": (source, entry["image"]), "status": status, "typed": p["instruction"]}  # fmt: skip


def run_sweep(ctx: Context, value, instruction, lam_values, gamma_values, strict=False, **knobs):
    """Threshold exploration in the UI; yields {output name: value} (grid, table, sweep_status, used_seed)."""
    with user_errors():
        image, notice, mask = editor_image(value)
        studio_inputs.check_instruction(instruction)
        options, pixels = studio_inputs.request(ctx.editor, **knobs)
        options = resolve_options(ctx.editor, options)  # one seed for every cell, shown below
        lams, gammas = studio_inputs.sweep_grid(lam_values, gamma_values, options.gamma)
        notices = [notice] * bool(notice) + domain_notices(ctx, image, instruction, pixels, strict)
    brush = studio_inputs.brush_note(mask, options) if len(lams) > 1 else None
    for text in [*notices, *[brush] * bool(brush)]:
        gr.Warning(text)
    warn = "".join(f"\n\n⚠ {text}" for text in [*[brush] * bool(brush), *notices])
    yield {"grid": [], "table": [], "sweep_status": f"**Encoding** the image and the instruction…{warn}"}
    cells, last = [], 0.0
    with user_errors(), contextlib.closing(ctx.sweep(image, instruction, options, lams, gammas, mask, pixels)) as items:
        for item in items:  # closed on Stop: the GPU work ends within a step
            if isinstance(item, streaming.Cell):
                cells.append(item)
                status = f"Cell {item.index + 1} done (λ={item.lam:g}, γ={item.gamma:g}) · {len(cells)} finished"
                yield {"grid": cell_gallery(cells), "table": cell_rows(cells), "sweep_status": status + warn}
            elif time.monotonic() - last >= ctx.frame_interval:
                last = time.monotonic()
                yield {"sweep_status": cell_step_status(item) + warn}
    yield {"sweep_status": f"**Done** · {len(cells)} cells · seed {options.seed}{warn}", "used_seed": options.seed}


# ---------------------------------------------------------------------------------------------------- API handlers


def api_request(ctx: Context, image, instruction, mask, knobs: dict):
    """-> (image, warnings: the downscale, mask and out-of-domain notices, mask or None, options, pixels)."""
    if not image:
        raise ValueError("no image: pass an image file")
    strict = knobs.pop("strict", False)
    original = studio_inputs.open_upload(image)
    img, notice = full_resolution(original)
    studio_inputs.check_instruction(instruction)
    user_mask, mask_notice = None, None
    if mask:
        user_mask, mask_notice = studio_inputs.mask_from_image(studio_inputs.open_upload(mask), img.size, original.size)
    options, pixels = studio_inputs.request(ctx.editor, **knobs)
    warnings = [t for t in (notice, mask_notice) if t] + domain_notices(ctx, img, instruction, pixels, strict)
    return img, warnings, user_mask, options, pixels


def api_edit(ctx: Context, image, instruction, mask=None, **knobs):
    """Edit an image. Streams progress, (None, {step, num_steps, held_fraction, preview}) with preview a JPEG data
    URL when one was decoded at that step (else null), then the result: (the edited PNG with every parameter in its
    metadata, {done: true, ...the parameters (seed included), held_fraction, warnings, notice}). The first update,
    {step: 0, num_steps, warnings, preview: null}, comes before the first decoding step: the run has started. Then
    the first step, every step with a preview, and the others at most once per frame interval (0.1 s: on a 2-core
    CPU each update holds the edit up by about 3 ms; a GPU step of the published model takes longer than that, so
    every step comes). warnings: downscale, mask and out-of-domain notices (also in that first
    update); strict=True refuses out-of-domain inputs instead; previews=False sends no preview images (every
    step's preview is null)."""
    with user_errors():
        previews = bool(knobs.pop("previews", True))
        img, warnings, user_mask, options, pixels = api_request(ctx, image, instruction, mask, knobs)
        items = ctx.stream(img, instruction, options, user_mask, pixels, previews)  # decoding starts now
        yield None, {"step": 0, "num_steps": options.steps, "held_fraction": 0.0, "preview": None,
                     "warnings": warnings}  # fmt: skip
        sent = 0.0
        with contextlib.closing(items):
            for item in items:
                if isinstance(item, streaming.Frame):
                    due = item.step == 0 or time.monotonic() - sent >= ctx.frame_interval
                    if not (due or item.preview):
                        continue
                    sent = time.monotonic()
                    preview = None if item.preview is None else studio_render.data_url(item.preview)
                    yield None, {"step": item.step + 1, "num_steps": item.num_steps, "preview": preview,
                                 "held_fraction": item.held_fraction}  # fmt: skip
                else:
                    info = {"held_fraction": item.held_fraction, "timings": item.timings, "warnings": warnings,
                            "notice": " ".join(warnings) or None}  # fmt: skip
                    yield ctx.save(item)[0], {"done": True, **item.parameters, **info}


def api_sweep(ctx: Context, image, instruction, mask=None, lam_values="0, 0.2", gamma_values="", **knobs):
    """Threshold exploration: one edit per (γ, λ) cell, all with one seed; the image and text are encoded once.
    Streams as cells finish: (gallery of (image, label)), {seed, cells: [{index, lam, gamma, held_fraction,
    change_outside}], done, warnings (as /edit's, plus a brush that makes λ irrelevant), notice})."""
    knobs.pop("previews", None)  # /edit's: a sweep streams finished cells, no previews
    with user_errors():
        img, warnings, user_mask, options, pixels = api_request(ctx, image, instruction, mask, knobs)
        options = resolve_options(ctx.editor, options)
        lams, gammas = studio_inputs.sweep_grid(lam_values, gamma_values, options.gamma)
        brush = studio_inputs.brush_note(user_mask, options) if len(lams) > 1 else None
        warnings += [brush] * bool(brush)
        cells = []
        # closed when the client goes: the GPU work ends within a step
        with contextlib.closing(ctx.sweep(img, instruction, options, lams, gammas, user_mask, pixels)) as items:
            for item in items:
                if isinstance(item, streaming.Cell):
                    cells.append(item)
                    done = len(cells) == len(lams) * len(gammas)
                    summary = {"seed": options.seed, "cells": [c.summary() for c in cells], "done": done}
                    yield cell_gallery(cells), {**summary, "warnings": warnings, "notice": " ".join(warnings) or None}


# ---------------------------------------------------------------------------------------------------- small helpers


def editor_value(image: Image.Image) -> dict:
    return {"background": image, "layers": [], "composite": image}


def gallery_items(history: list[dict]) -> list[tuple[Image.Image, str]]:
    return [(h["image"], f"{h['parameters']['instruction'][:40]} · seed {h['parameters']['seed']}") for h in history]


def cell_gallery(cells: list[streaming.Cell]) -> list[tuple[Image.Image, str]]:
    return [(c.result.image, c.label) for c in cells]


def cell_step_status(s: streaming.CellStep) -> str:
    return f"**Cell {s.index + 1}/{s.cells}** (λ={s.lam:g}, γ={s.gamma:g}) · step {s.step + 1}/{s.num_steps}"


def cell_rows(cells: list[streaming.Cell]) -> list[list]:
    return [[c.lam, c.gamma, round(100 * c.result.held_fraction, 1), round(c.change_outside, 2)] for c in cells]

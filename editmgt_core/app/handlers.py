"""EditMGT Studio's handlers: the /edit and /sweep API endpoints, the page's threshold exploration, and what the
page's handlers share (the Context, the run marks, input checks, readable errors). Each takes the shared Context and
plain values, checks them (`editmgt_core.studio.validate`), runs the streamed edit or sweep
(`editmgt_core.studio.streaming`) and renders what it yields (`editmgt_core.studio.render`). The page's edit
runs are in `runs.py`; `layout.py` lays out the page and wires these to its components.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from editmgt_core.edit.editing import resolve_options, to_rgb
from editmgt_core.model.loading import Editor
from editmgt_core.studio import domain, page_state, render, streaming, validate

# Uploads up to this are edited and returned at their own resolution (a 12 MP photo comes back at 12 MP: the edit is
# composited onto it, edit/composite.py); the page refuses larger ones with a message, and so does the server.
FULL_RESOLUTION_PIXELS = 16_000_000
SKIP = gr.skip()
NO_IMAGE = (
    "no image: upload, paste or capture an image first (an uploaded file that shows nothing here could not "
    "be decoded as an image: use PNG, JPEG, WebP, BMP, GIF or TIFF)"
)
RUNS = page_state.Runs()  # the page's runs (edits and sweeps): Stop marks them, their handlers read the marks
log = logging.getLogger("editmgt.app")


def user_message(err: Exception) -> str:
    """An exception as one readable sentence for the page: bad input says what to change; anything else that the
    edit failed and to try other settings."""
    if not isinstance(err, (ValueError, OSError)):
        return f"The edit failed ({type(err).__name__}: {err}). Try other settings."
    text = str(err) or type(err).__name__
    return text[0].upper() + text[1:] if re.match(r"[a-z]+ ", text) else text  # not 'lam=5; ...'


def plain(text: str) -> str:
    """Markdown code spans as quotes, for toasts (they show text as it is)."""
    return re.sub(r"`([^`]*)`", r"'\1'", text)


@contextlib.contextmanager
def user_errors():
    """Bad input -> gr.Error with a readable message (no traceback); the session stays usable (the API's errors)."""
    try:
        yield
    except gr.Error:
        raise
    except (ValueError, OSError) as err:
        raise gr.Error(plain(user_message(err)), print_exception=False) from None
    except Exception as err:
        log.exception("edit failed")
        raise gr.Error(plain(user_message(err))) from None


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
        render.prune(self.out_dir)
        return [str(p) for p in streaming.save_result(final, self.out_dir)]


# ---------------------------------------------------------------------------------------------------- UI handlers


def full_resolution(image: Image.Image | None) -> tuple[Image.Image, str | None]:
    """An upload as upright RGB at its own resolution (results come back at this size), after the input checks;
    ValueError beyond FULL_RESOLUTION_PIXELS. The notice is None: nothing is downscaled."""
    checked, notice = validate.check_image(image)  # the limits; its downscaled copy serves only big uploads
    if notice is None:
        return checked, None
    if image.width * image.height > FULL_RESOLUTION_PIXELS:
        raise ValueError(
            f"the image is {image.width}x{image.height} ({image.width * image.height / 1e6:.0f} "
            f"megapixels); images up to {FULL_RESOLUTION_PIXELS / 1e6:.0f} megapixels are edited at "
            "their own resolution: downscale it first"
        )
    return to_rgb(image), None


def editor_image(value) -> tuple[Image.Image, str | None, object]:
    """gr.ImageEditor value -> (RGB image at its own resolution, within the limits; a notice or None; brush mask at
    its size or None)."""
    if not value or value.get("background") is None:
        raise ValueError(NO_IMAGE)
    image, notice = full_resolution(value["background"])
    return image, notice, validate.brush_mask(value.get("layers"), image.size)


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
    return (
        f" · nothing held by the map: the instruction reads as a whole-image edit (focus {item.focus:.3f}{limit};"
        " lower the focus gate to hold anyway)"
    )


def begin_sweep(run):
    """Explore pressed (unqueued, before the sweep's own event): a new run, shown as queued."""
    return {"sweep_run": RUNS.begin(run), "sweep_status": page_state.queued()}


def stop_sweep(run, status):
    """Stop pressed on the sweep: mark its run; the sweep ends between steps and says where."""
    marks = RUNS.stop(run, page_state.where_stopped(status))
    return SKIP if marks is None else validate.stopped_status(status) or page_state.stopping(marks.stopped)


def run_sweep(ctx: Context, run, value, instruction, lam_values, gamma_values, strict=False, view=None, **values):
    """Threshold exploration in the UI; yields {output name: value} (grid, table, sweep_status, used_seed). Bad
    input and refusals end it with the reason in its status; Stop ends it between steps with the finished cells."""
    marks = RUNS.start(run)
    if marks.stopped:
        RUNS.end(run)
        again = f"**Stopped** {page_state.QUEUED}. Press **Explore** to run again."
        yield {"sweep_status": SKIP if marks.superseded else again}
        return
    try:
        image, notice, mask = editor_image(value)
        validate.check_instruction(instruction)
        validate.check_keywords(values.get("keywords"), instruction)
        options, pixels = validate.request(ctx.editor, **values)
        options = resolve_options(ctx.editor, options)  # one seed for every cell, shown below
        lams, gammas = validate.sweep_grid(lam_values, gamma_values, options.gamma)
        notices = [notice] * bool(notice) + domain_notices(ctx, image, instruction, pixels, strict)
    except ValueError as err:
        RUNS.end(run)
        say = "Refused" if isinstance(err, domain.OutOfDomainError) else "Not explored"
        yield {"sweep_status": f"**{say}** · {user_message(err)}", "grid": "", "table": []}
        return
    brush = validate.brush_note(mask, options) if len(lams) > 1 else None
    for text in [*notices, *[brush] * bool(brush)]:
        gr.Warning(plain(text))
    warn = "".join(f"\n\n⚠ {text}" for text in [*[brush] * bool(brush), *notices])
    yield {"grid": "", "table": [], "sweep_status": f"**Encoding** the image and the instruction…{warn}"}
    cells, status, clock = [], "", streaming.FrameClock(ctx.frame_interval)
    try:
        with contextlib.closing(ctx.sweep(image, instruction, options, lams, gammas, mask, pixels)) as items:
            for item in items:
                if marks.stopped:
                    break
                if isinstance(item, streaming.Cell):
                    cells.append(item)
                    status = f"Cell {item.index + 1} done (λ={item.lam:g}, γ={item.gamma:g}) · {len(cells)} finished"
                    yield {
                        "grid": render.sweep_table(cells, lams, gammas),
                        "table": cell_rows(cells),
                        "sweep_status": status + warn,
                    }
                elif clock.due():
                    status = cell_step_status(item)
                    yield {"sweep_status": status + warn}
    except Exception as err:  # noqa: BLE001 (the status says what failed; the page goes on)
        RUNS.end(run)
        yield {"sweep_status": f"**Not explored** · {user_message(err)}"}
        return
    RUNS.end(run)
    if marks.stopped:
        kept = f"**Stopped** {marks.stopped}: {len(cells)} cells finished, kept. Press **Explore** to run again."
        yield {"sweep_status": SKIP if marks.superseded else validate.stopped_status(status) or kept}
        return
    yield {"sweep_status": f"**Done** · {len(cells)} cells · seed {options.seed}{warn}", "used_seed": str(options.seed)}


# ---------------------------------------------------------------------------------------------------- API handlers


def api_request(ctx: Context, image, instruction, mask, values: dict):
    """-> (image, warnings: the downscale, mask and out-of-domain notices, mask or None, options, pixels)."""
    if not image:
        raise ValueError("no image: pass an image file")
    strict = values.pop("strict", False)
    original = validate.open_upload(image)
    img, notice = full_resolution(original)
    validate.check_instruction(instruction)
    validate.check_keywords(values.get("keywords"), instruction)
    user_mask, mask_notice = None, None
    if mask:
        user_mask, mask_notice = validate.mask_from_image(validate.open_upload(mask), img.size, original.size)
    options, pixels = validate.request(ctx.editor, **values)
    warnings = [t for t in (notice, mask_notice) if t] + domain_notices(ctx, img, instruction, pixels, strict)
    return img, warnings, user_mask, options, pixels


def api_edit(ctx: Context, image, instruction, mask=None, **values):
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
        previews = bool(values.pop("previews", True))
        img, warnings, user_mask, options, pixels = api_request(ctx, image, instruction, mask, values)
        items = ctx.stream(img, instruction, options, user_mask, pixels, previews)  # decoding starts now
        yield None, {"step": 0, "num_steps": options.steps, "held_fraction": 0.0, "preview": None, "warnings": warnings}
        clock = streaming.FrameClock(ctx.frame_interval)
        with contextlib.closing(items):
            for item in items:
                if isinstance(item, streaming.Frame):
                    if not clock.due(force=item.step == 0 or item.preview is not None):
                        continue
                    preview = None if item.preview is None else render.data_url(item.preview)
                    yield (
                        None,
                        {
                            "step": item.step + 1,
                            "num_steps": item.num_steps,
                            "preview": preview,
                            "held_fraction": item.held_fraction,
                        },
                    )
                else:
                    info = {
                        "held_fraction": item.held_fraction,
                        "timings": item.timings,
                        "warnings": warnings,
                        "notice": " ".join(warnings) or None,
                    }
                    yield ctx.save(item)[0], {"done": True, **item.parameters, **info}


def api_sweep(ctx: Context, image, instruction, mask=None, lam_values=None, gamma_values="", **values):
    """Threshold exploration: one edit per (γ, λ) cell, all with one seed; the image and text are encoded once.
    Streams as cells finish: (gallery of (image, label)), {seed, cells: [{index, lam, gamma, held_fraction,
    change_outside}], done, warnings (as /edit's, plus a brush that makes λ irrelevant), notice})."""
    values.pop("previews", None)  # /edit's: a sweep streams finished cells, no previews
    with user_errors():
        img, warnings, user_mask, options, pixels = api_request(ctx, image, instruction, mask, values)
        options = resolve_options(ctx.editor, options)
        lams, gammas = validate.sweep_grid(lam_values or validate.SWEEP_LAMS, gamma_values, options.gamma)
        brush = validate.brush_note(user_mask, options) if len(lams) > 1 else None
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


def cell_gallery(cells: list[streaming.Cell]) -> list[tuple[Image.Image, str]]:
    return [(c.result.image, c.label) for c in cells]


def cell_step_status(s: streaming.CellStep) -> str:
    return f"**Cell {s.index + 1}/{s.cells}** (λ={s.lam:g}, γ={s.gamma:g}) · step {s.step + 1}/{s.num_steps}"


SWEEP_COLUMNS = ["λ", "γ", "% of tokens held", "Δ outside hold (0-255)"]


def cell_rows(cells: list[streaming.Cell]) -> list[list]:
    return [[c.lam, c.gamma, round(100 * c.result.held_fraction, 1), round(c.change_outside, 2)] for c in cells]

"""EditMGT Studio: a Gradio Blocks editor that streams every decoding step of an instruction-driven edit.

    python app.py [--model PATH_OR_HUB_ID] [--host 127.0.0.1] [--port 7860] [--device cpu]

A thin UI over `editmgt_core.studio` (limits, the streamed edit and the λ/γ sweep as CPU data, rendering); the
handlers below only route values. Named API endpoints `/edit` and `/sweep` take a file, text and numbers (README).
On a Hugging Face ZeroGPU Space (SPACES_ZERO_GPU set) `spaces` is imported before anything can touch CUDA, the GPU
work runs inside `spaces.GPU` with a duration estimated per call, and only PIL images, numpy arrays and plain values
cross back. EDITMGT_MODEL (a Space variable `deploy-space` writes) names the model a GPU run loads by default; on
the CPU the bundled model stays the default.
"""

from __future__ import annotations

import os

ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")  # as `spaces` itself reads it
if ZERO_GPU:
    import spaces  # first: it refuses to start once CUDA is initialised

import argparse
import contextlib
import functools
import html
import inspect
import json
import logging
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gradio as gr
import torch
from PIL import Image

import app_knobs
from editmgt_core import domain, entries, knobs, studio
from editmgt_core.config import COMPILE_HELP, COMPILE_MODES, DTYPE_CHOICES, DTYPE_HELP
from editmgt_core.editing import default_options, resolve_options
from editmgt_core.loading import Editor, ModelNotFoundError, cpu_warning, load_editor

ROOT = Path(__file__).resolve().parent
DEFAULT_MODEL = ROOT / "assets" / "default-model"
EXAMPLES = ROOT / "assets" / "examples"
HISTORY = 12  # results kept per session
KNOBS = app_knobs.SHOWN  # the UI's controls (editmgt_core/knobs.py), named as studio.request takes them
SKIP = gr.skip()
# what each handler that returns {name: value} may update (build_app names the components)
EDIT_OUTPUTS = ("canvas", "overlay", "status", "result", "changed", "scrubber", "files", "used_seed", "frames", "last",
                "history", "gallery")  # fmt: skip
SWEEP_OUTPUTS = ("grid", "table", "sweep_status", "used_seed")
RESTORE_OUTPUTS = ("image_in", "instruction", *KNOBS, "result", "status", "typed")
log = logging.getLogger("editmgt.app")

HELP = {  # the controls that are not knobs (the knobs' help is in editmgt_core/knobs.py)
    "instruction": "What to change, in one sentence, e.g. 'make the red circle blue'.",
    "map": "What the map shows and holds by. Attention: where the instruction's words point (keywords choose the "
    "words). Predicted change: where the model is about to change the image (keywords do not matter). The model's "
    "map: the mix calibrated for this model.",
    "lams": "λ values, comma-separated: one cell per value.",
    "gammas": "γ values, comma-separated: one row of cells per value; empty = the γ slider's value.",
}
NO_IMAGE = ("no image: upload, paste or capture an image first (an uploaded file that shows nothing here could not "
            "be decoded as an image: use PNG, JPEG, WebP, BMP, GIF or TIFF)")  # fmt: skip
SWEEP_HELP = (
    "One instruction and seed, several λ (and γ) values side by side: how much is held against how much changes "
    "outside the held region. Uses the image and settings on the left; the image and text are encoded once."
)


# Uploads are prepared in the browser before the image editor sees them: decoded once, downscaled to the side the
# model can use (a 4000x3000 photo would otherwise be re-encoded at full size in the page and sent as tens of MB,
# which can exceed the upload limit and leave the page waiting), refused with a visible note when undecodable or
# beyond the pixel limit. `element` is the note under the editor (gr.HTML js_on_load).
UPLOAD_JS = """
const note = element.querySelector('#upload-note');
const SIDE = Number(note.dataset.side), LIMIT = Number(note.dataset.pixels);
const say = (text, bad) => { note.textContent = text; note.dataset.kind = bad ? 'error' : (text ? 'info' : '');
  note.style.cssText = bad ? 'color:#b91c1c;font-weight:600;padding:4px 0' : 'padding:4px 0'; };
// file -> the file to hand on (downscaled to SIDE when larger), or null after saying why it was refused
const prepare = async (file) => {
  const name = file.name || 'the pasted image';
  say(`Reading ${name} (${(file.size / 1e6).toFixed(1)} MB)…`);
  let bitmap;
  try { bitmap = await createImageBitmap(file, {imageOrientation: 'from-image'}); } catch (err) {
    say(`${name} could not be decoded as an image: use PNG, JPEG, WebP, BMP or GIF.`, true); return null;
  }
  const w = bitmap.width, h = bitmap.height;
  if (w * h > LIMIT) {
    say(`${name} is ${w}x${h} (${(w * h / 1e6).toFixed(0)} megapixels); the limit is ${LIMIT / 1e6} megapixels.`,
        true);
    return null;
  }
  const scale = Math.min(1, SIDE / Math.max(w, h));
  if (scale === 1) { say(''); return file; }
  const cw = Math.max(1, Math.round(w * scale)), ch = Math.max(1, Math.round(h * scale));
  const canvas = new OffscreenCanvas(cw, ch);
  canvas.getContext('2d').drawImage(bitmap, 0, 0, cw, ch);
  const blob = await canvas.convertToBlob({type: 'image/png'});
  say(`${name} is ${w}x${h}: downscaled to ${cw}x${ch} in the browser (the model edits far fewer pixels).`);
  return new File([blob], (file.name || 'pasted').replace(/\\.[^.]*$/, '') + '.png', {type: 'image/png'});
};
const inEditor = (target) => target instanceof Element && target.closest('#image-in');
const handOn = (file) => { const files = new DataTransfer(); files.items.add(file); return files; };
document.addEventListener('change', async (event) => {
  const input = event.target;
  if (!(input instanceof HTMLInputElement) || input.type !== 'file' || !inEditor(input)) return;
  if (input.dataset.prepared) { delete input.dataset.prepared; return; }
  const file = input.files && input.files[0];
  if (!file) return;
  event.stopImmediatePropagation();
  const out = await prepare(file);
  if (!out) { input.value = ''; return; }
  input.files = handOn(out).files;
  input.dataset.prepared = '1';
  input.dispatchEvent(new Event('change', {bubbles: true}));
}, true);
// a file dropped on the editor takes the same path: stopped here, prepared, dropped again
const prepared = new WeakSet();
document.addEventListener('drop', async (event) => {
  if (prepared.has(event) || !inEditor(event.target)) return;
  const file = [...((event.dataTransfer && event.dataTransfer.files) || [])][0];
  if (!file) return;
  event.preventDefault();
  event.stopImmediatePropagation();
  const out = await prepare(file);
  if (!out) return;
  const init = {bubbles: true, cancelable: true, composed: true, dataTransfer: handOn(out)};
  const again = new DragEvent('drop', init);
  prepared.add(again);
  event.target.dispatchEvent(again);
}, true);
// the editor's paste button reads the clipboard itself: its images are prepared on the way (a refused one reads as
// an empty clipboard, with the note saying why)
const clipboard = navigator.clipboard;
if (clipboard && clipboard.read && !clipboard.read.prepared) {
  const read = clipboard.read.bind(clipboard);
  clipboard.read = async (...args) => {
    const items = await read(...args), kept = [];
    for (const item of items) {
      const type = item.types.find((t) => t.startsWith('image/'));
      if (!type) { kept.push(item); continue; }
      const out = await prepare(new File([await item.getType(type)], 'the pasted image', {type}));
      if (out) kept.push(new ClipboardItem({[out.type]: out}));
    }
    return kept;
  };
  clipboard.read.prepared = true;
}
"""


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


# ZeroGPU durations: a visitor's quota must cover the duration asked for, so ask for what a call needs. Per step at
# 1024x1024 working pixels: 2.7x the 0.19 s an fp32 step of the 1B model took on an H200, for the previews decoded
# during the edit and a smaller GPU slice (docs/published-model.md).
GPU_STEP_SECONDS = 0.5
GPU_START_SECONDS = 10  # text encoders, VQ encode and decode, hand-over
GPU_MAX_SECONDS = 300  # the most one call may ask for


def gpu_seconds(steps: int, pixels: int, cells: int = 1) -> int:
    """Seconds to ask ZeroGPU for: `cells` edits of `steps` steps at `pixels` working pixels (at least 15 s)."""
    need = GPU_START_SECONDS + cells * (steps * GPU_STEP_SECONDS * max(pixels, 64 * 64) / 2**20 + 2)
    return int(min(GPU_MAX_SECONDS, max(15, round(need))))


def gpu_wrapper():
    """On ZeroGPU: (fn, duration) -> spaces.GPU(duration=duration)(fn), duration a number or a function of fn's
    arguments; identity elsewhere."""
    if not ZERO_GPU:
        return lambda fn, duration: fn
    return lambda fn, duration: spaces.GPU(duration=duration)(fn)


@dataclass(frozen=True)
class Context:
    """What the handlers share: the editor and its (possibly ZeroGPU-wrapped) generators."""

    editor: Editor
    stream: Callable[..., Iterator]  # (image, instruction, options, mask, pixels) -> Frame..., Final
    sweep: Callable[..., Iterator]  # (image, instruction, options, lams, gammas, mask, pixels) -> CellStep | Cell
    preview_side: int
    frame_interval: float  # seconds between live frames sent to the browser
    out_dir: Path  # downloads (PNG + JSON)
    check: Callable[..., list[str]] = lambda *args: []  # (image, instruction, pixels) -> out-of-domain notices

    def save(self, final: studio.Final) -> list[str]:
        studio.prune(self.out_dir)
        return [str(p) for p in studio.save_result(final, self.out_dir)]


# ---------------------------------------------------------------------------------------------------- UI handlers


def editor_image(value) -> tuple[Image.Image, str | None, object]:
    """gr.ImageEditor value -> (RGB image within the limits, downscale notice, brush mask at its size or None)."""
    if not value or value.get("background") is None:
        raise ValueError(NO_IMAGE)
    image, notice = studio.check_image(value["background"])
    return image, notice, studio.brush_mask(value.get("layers"), image.size)


def domain_notices(ctx: Context, image: Image.Image, instruction: str, pixels, strict) -> list[str]:
    """Out-of-domain notices for an edit's inputs (strict: a ValueError instead, shown as an error)."""
    notices = ctx.check(image, instruction, pixels)
    if strict and notices:
        raise domain.OutOfDomainError("strict mode: " + " ".join(notices))
    return notices


def gate_note(item: studio.Frame | studio.Final) -> str:
    if not item.gated:
        return ""
    gate = item.parameters["focus_gate"] if isinstance(item, studio.Final) else None
    limit = f" < gate {gate:g}" if gate is not None else ""
    return (f" · nothing held by the map: the instruction reads as a whole-image edit (focus {item.focus:.3f}{limit};"
            " lower the focus gate to hold anyway)")  # fmt: skip


def live(ctx: Context, frame: studio.Frame, preview: Image.Image, base: Image.Image) -> dict:
    """The live panel for one step: reveal canvas over the latest decoded preview, attention overlay, status."""
    status = f"**Step {frame.step + 1}/{frame.num_steps}** · {frame.held_fraction:.0%} of tokens held"
    if frame.scores is None:
        status += " · no attention map"
    elif frame.hold is None:
        status += " · region hold off (λ = 0): the map shows where the model attends"
    status += gate_note(frame)
    overlay = studio.attention_overlay(base, frame.scores, frame.hold, ctx.preview_side)
    return {"canvas": studio.reveal_canvas(preview, frame.revealed, ctx.preview_side), "overlay": overlay,
            "status": status}  # fmt: skip


def cached(shown: dict) -> tuple[bytes, bytes, str]:
    """A live panel as the replay scrubber keeps it: (canvas JPEG, overlay JPEG, status)."""
    return studio.jpeg(shown["canvas"]), studio.jpeg(shown["overlay"]), shown["status"]


def run_edit(ctx: Context, value, instruction, history, strict=False, **knobs):
    """Stream an edit into the live panel; yields {output name: value} (build_app's EDIT_OUTPUTS; the others keep
    their value). The first update clears the previous result's panels, so nothing on screen belongs to another
    run."""
    clock = time.perf_counter()
    with user_errors():
        image, notice, mask = editor_image(value)
        studio.check_instruction(instruction)
        options, pixels = studio.request(ctx.editor, **knobs)
        notices = [notice] * bool(notice) + domain_notices(ctx, image, instruction, pixels, strict)
    for text in notices:
        gr.Warning(text, duration=None if "trained" in text else 10)
    warn = "".join(f"\n\n⚠ {text}" for text in notices)
    items = ctx.stream(image, instruction, options, mask, pixels)  # decoding starts now, in the background
    frames, sent = [], 0.0
    base, frame, final = studio.fit(image, ctx.preview_side), None, None
    preview = studio.dim(base)  # until a preview is decoded every token is undecided
    status = f"**Encoding** the {image.width}x{image.height} image and the instruction…{warn}"
    yield {"canvas": preview, "overlay": base, "status": status, "result": None, "changed": None,
           "scrubber": gr.Slider(visible=False), "files": None, "used_seed": None, "frames": []}  # fmt: skip
    with user_errors(), contextlib.closing(items):
        for item in items:
            if isinstance(item, studio.Final):
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
        "changed": studio.change_heatmap(final.source, final.image),
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
    return studio.from_jpeg(canvas), studio.from_jpeg(overlay), f"{status} · replay"


def chips(instruction, chosen, previous=None):
    """Keyword chips: the instruction's words; ticks survive typing but not a new instruction (studio.keep_keywords).
    Returns (chips, the instruction as the next call's `previous`)."""
    kept = studio.keep_keywords(previous, instruction, chosen)
    return gr.CheckboxGroup(choices=studio.words(instruction), value=kept), instruction or ""


def stopped(status):
    """Stop pressed: say at which step the run ended (the cancelled handler yields nothing more)."""
    return studio.stopped_status(status) or SKIP


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
    controls = {k: p[k] for k in KNOBS if k in p}  # (entries saved before a knob existed keep the control's value)
    controls |= {"randomize": False, "layers": app_knobs.layers_text(p["layers"]), "temperature_start": t0,
                 "temperature_end": t1}  # fmt: skip
    controls["keywords"] = gr.CheckboxGroup(choices=studio.words(p["instruction"]), value=list(p["keywords"]))
    source = entry.get("source", entry["image"])  # (entries saved before sources were kept restore their result)
    status = f"Restored the input and settings of '{p['instruction'][:60]}' (seed {p['seed']}); its result is in " \
        "**Before / after**. Press **Edit** to run it again."  # fmt: skip
    return controls | {"image_in": editor_value(source), "instruction": p["instruction"],
                       "result": (source, entry["image"]), "status": status, "typed": p["instruction"]}  # fmt: skip


def sweep_grid(lam_values, gamma_values, gamma) -> tuple[tuple[float, ...], tuple[float, ...]]:
    lams = studio.parse_values(lam_values, "λ values", *studio.LIMITS["lam"])
    gammas = (gamma,)
    if str(gamma_values or "").strip():
        gammas = studio.parse_values(gamma_values, "γ values", *studio.LIMITS["gamma"])
    if len(lams) * len(gammas) > studio.MAX_CELLS:
        raise ValueError(f"{len(lams)} λ x {len(gammas)} γ values = {len(lams) * len(gammas)} cells; "
                         f"at most {studio.MAX_CELLS}")  # fmt: skip
    return lams, gammas


def run_sweep(ctx: Context, value, instruction, lam_values, gamma_values, strict=False, **knobs):
    """Threshold exploration in the UI; yields {output name: value} (grid, table, sweep_status, used_seed)."""
    with user_errors():
        image, notice, mask = editor_image(value)
        studio.check_instruction(instruction)
        options, pixels = studio.request(ctx.editor, **knobs)
        options = resolve_options(ctx.editor, options)  # one seed for every cell, shown below
        lams, gammas = sweep_grid(lam_values, gamma_values, options.gamma)
        notices = [notice] * bool(notice) + domain_notices(ctx, image, instruction, pixels, strict)
    brush = studio.brush_note(mask, options) if len(lams) > 1 else None
    for text in [*notices, *[brush] * bool(brush)]:
        gr.Warning(text)
    warn = "".join(f"\n\n⚠ {text}" for text in [*[brush] * bool(brush), *notices])
    yield {"grid": [], "table": [], "sweep_status": f"**Encoding** the image and the instruction…{warn}"}
    cells, last = [], 0.0
    with user_errors():
        for item in ctx.sweep(image, instruction, options, lams, gammas, mask, pixels):
            if isinstance(item, studio.Cell):
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
    original = studio.open_image(image)
    img, notice = studio.check_image(original)
    studio.check_instruction(instruction)
    user_mask, mask_notice = (None, None) if not mask else studio.mask_image(studio.open_image(mask), img.size,
                                                                              original.size)  # fmt: skip
    options, pixels = studio.request(ctx.editor, **knobs)
    warnings = [t for t in (notice, mask_notice) if t] + domain_notices(ctx, img, instruction, pixels, strict)
    return img, warnings, user_mask, options, pixels


def api_edit(ctx: Context, image, instruction, mask=None, **knobs):
    """Edit an image. Streams one update per decoding step, (None, {step, num_steps, held_fraction, preview}) with
    preview a JPEG data URL when one was decoded at that step (else null), then the result: (the edited PNG with
    every parameter in its metadata, {done: true, ...the parameters (seed included), held_fraction, warnings,
    notice}). The first update, {step: 0, num_steps, warnings, preview: null}, comes before the first decoding step:
    the run has started. warnings: downscale, mask and out-of-domain notices (also in that first update);
    strict=True refuses out-of-domain inputs instead."""
    with user_errors():
        img, warnings, user_mask, options, pixels = api_request(ctx, image, instruction, mask, knobs)
        items = ctx.stream(img, instruction, options, user_mask, pixels)  # decoding starts now, in the background
        yield None, {"step": 0, "num_steps": options.steps, "held_fraction": 0.0, "preview": None,
                     "warnings": warnings}  # fmt: skip
        with contextlib.closing(items):
            for item in items:
                if isinstance(item, studio.Frame):
                    preview = None if item.preview is None else studio.data_url(item.preview)
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
    with user_errors():
        img, warnings, user_mask, options, pixels = api_request(ctx, image, instruction, mask, knobs)
        options = resolve_options(ctx.editor, options)
        lams, gammas = sweep_grid(lam_values, gamma_values, options.gamma)
        brush = studio.brush_note(user_mask, options) if len(lams) > 1 else None
        warnings += [brush] * bool(brush)
        cells = []
        for item in ctx.sweep(img, instruction, options, lams, gammas, user_mask, pixels):
            if isinstance(item, studio.Cell):
                cells.append(item)
                done = len(cells) == len(lams) * len(gammas)
                summary = {"seed": options.seed, "cells": [c.summary() for c in cells], "done": done}
                yield cell_gallery(cells), {**summary, "warnings": warnings, "notice": " ".join(warnings) or None}


# ---------------------------------------------------------------------------------------------------- small helpers


def editor_value(image: Image.Image) -> dict:
    return {"background": image, "layers": [], "composite": image}


def header(editor: Editor) -> str:
    known = domain.domain_of(editor).get("trained_on")
    scope = f" It was trained on {known} only: other images and instructions get a warning." if known else ""
    return ("# EditMGT Studio\nInstruction-driven image editing with a masked generative transformer: watch the edit "
            "being decoded token by token, see where the model attends, and hold everything else. "
            f"Model: {editor.settings.name}.{scope}")  # fmt: skip


def examples() -> list[list[str]]:
    listing = EXAMPLES / "examples.json"
    if not listing.is_file():
        return []
    return [[str(EXAMPLES / e["image"]), e["instruction"]] for e in json.loads(listing.read_text())]


def gallery_items(history: list[dict]) -> list[tuple[Image.Image, str]]:
    return [(h["image"], f"{h['parameters']['instruction'][:40]} · seed {h['parameters']['seed']}") for h in history]


def cell_gallery(cells: list[studio.Cell]) -> list[tuple[Image.Image, str]]:
    return [(c.result.image, c.label) for c in cells]


def cell_step_status(s: studio.CellStep) -> str:
    return f"**Cell {s.index + 1}/{s.cells}** (λ={s.lam:g}, γ={s.gamma:g}) · step {s.step + 1}/{s.num_steps}"


def cell_rows(cells: list[studio.Cell]) -> list[list]:
    return [[c.lam, c.gamma, round(100 * c.result.held_fraction, 1), round(c.change_outside, 2)] for c in cells]


# ---------------------------------------------------------------------------------------------------- layout


def input_panel(editor: Editor) -> tuple[gr.ImageEditor, gr.Textbox, dict]:
    """Image, instruction and the knobs' controls (app_knobs), named as `studio.request` takes them."""
    image = gr.ImageEditor(
        label="Image (optional: brush where the edit may happen)", type="pil", image_mode="RGBA",
        layers=False, transforms=(), brush=gr.Brush(colors=[("#ff2d7a", 0.6)], color_mode="fixed"), height=420,
        elem_id="image-in",
    )  # fmt: skip
    limits = f'data-side="{studio.browser_side(editor)}" data-pixels="{studio.HARD_PIXELS}"'
    gr.HTML(f'<div id="upload-note" {limits} role="status"></div>', js_on_load=UPLOAD_JS, padding=False)
    instruction = gr.Textbox(label="Instruction", info=HELP["instruction"], lines=2, elem_id="instruction")
    views = entries.map_views(editor.settings.attention_layers, editor.settings.reference_band)
    view = gr.Radio(list(views), value=next(iter(views)), label="Map", info=HELP["map"], elem_id="map-view")
    k = app_knobs.input_controls(editor)
    view.change(lambda v: app_knobs.layers_text(views[v]), view, k["layers"], queue=False, show_progress="hidden")
    chips_state = partial(keyword_chips_state, editor.settings.attention_layers)
    k["layers"].change(chips_state, k["layers"], k["keywords"], queue=False, show_progress="hidden")
    return image, instruction, k


def build_app(editor: Editor, *, concurrency: int = 1, max_queue: int = 16, **context) -> gr.Blocks:
    """The Blocks app over one loaded editor. concurrency: edits running at once (they share one device); max_queue:
    requests waiting beyond that; context: `make_context`'s keywords (preview size and budget, frame interval)."""
    Image.MAX_IMAGE_PIXELS = studio.HARD_PIXELS  # PIL refuses bombs beyond 2x this, in gradio's own decoding too
    ctx = make_context(editor, **context)
    private = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
    gpu = {"concurrency_id": "gpu", "show_progress": "minimal"}

    with gr.Blocks(title="EditMGT Studio", delete_cache=(3600, 3600)) as demo:
        frames_state = gr.State([])  # per session: (canvas JPEG, overlay JPEG, status) of each step of the last run
        last_state = gr.State(None)  # per session: the last result {"image", "parameters"}
        history_state = gr.State([])  # per session: earlier results, newest last
        typed_state = gr.State("")  # per session: the instruction as the keyword chips last saw it
        gr.Markdown(header(editor))
        with gr.Row():
            with gr.Column(scale=2):
                image_in, instruction, knobs = input_panel(editor)
                with gr.Row():
                    run_btn = gr.Button("Edit", variant="primary", elem_id="run")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
            with gr.Column(scale=3), gr.Tabs():
                with gr.Tab("Edit"):
                    status = gr.Markdown("Upload an image, describe the edit, press **Edit**.", elem_id="status")
                    with gr.Row():
                        canvas = gr.Image(label="Token reveal (this step's tokens outlined)", type="pil",
                                          format="jpeg", interactive=False, elem_id="live-canvas")  # fmt: skip
                        overlay = gr.Image(label="Attention map (hold region outlined)", type="pil", format="jpeg",
                                           interactive=False, elem_id="live-overlay")  # fmt: skip
                    scrubber = gr.Slider(1, 2, 1, step=1, label="Replay step", visible=False, elem_id="scrubber")
                    with gr.Row():
                        result = gr.ImageSlider(label="Before / after", type="pil", format="png", elem_id="result")
                        changed = gr.Image(label="What changed", type="pil", format="png", interactive=False)
                    with gr.Row():
                        files = gr.File(label="Download: PNG (parameters in metadata) + JSON", file_count="multiple")
                        with gr.Column():
                            used_seed = gr.Number(None, label="Seed used", interactive=False, elem_id="used-seed")
                            use_btn = gr.Button("Use as input", elem_id="use-as-input")
                    gallery = gr.Gallery(label="History (click to restore)", columns=6, height=200, elem_id="history",
                                         allow_preview=False, fit_columns=False, object_fit="contain")  # fmt: skip
                with gr.Tab("Threshold exploration"):
                    gr.Markdown(SWEEP_HELP)
                    with gr.Row():
                        lam_values = gr.Textbox("0, 0.1, 0.2, 0.4", label="λ values", info=HELP["lams"])
                        gamma_values = gr.Textbox("", label="γ values", info=HELP["gammas"])
                    with gr.Row():
                        sweep_btn = gr.Button("Explore", variant="primary", elem_id="sweep")
                        sweep_stop = gr.Button("Stop", variant="stop")
                    sweep_status = gr.Markdown("")
                    grid = gr.Gallery(label="Cells", columns=4, fit_columns=False, object_fit="contain", elem_id="grid")
                    table = gr.Dataframe(headers=["λ", "γ", "% held", "Δ outside hold"], interactive=False)
        gr.Examples(examples(), inputs=[image_in, instruction], label="Examples (click one)", cache_examples=False)
        with gr.Column(visible=False):
            api_knobs = app_knobs.api_controls(editor)
            a_image, a_mask = gr.File(label="image"), gr.File(label="mask (white = may edit)")
            a_instruction, a_lams, a_gammas = gr.Textbox(label="instruction"), gr.Textbox("0, 0.2"), gr.Textbox("")
            a_result, a_info = gr.Image(label="image", type="pil", format="png"), gr.JSON(label="info")
            a_grid, a_cells = gr.Gallery(label="cells", format="png"), gr.JSON(label="summary")
            a_edit, a_sweep = gr.Button(), gr.Button()

        ui = {"canvas": canvas, "overlay": overlay, "status": status, "result": result, "changed": changed,
              "scrubber": scrubber, "files": files, "used_seed": used_seed, "frames": frames_state, "last": last_state,
              "history": history_state, "gallery": gallery, "image_in": image_in, "instruction": instruction,
              "typed": typed_state, "grid": grid, "table": table, "sweep_status": sweep_status, **knobs}  # fmt: skip
        run_event = run_btn.click(by_name(partial(run_edit, ctx), ui), [image_in, instruction, history_state],
                                  [ui[n] for n in EDIT_OUTPUTS], inputs_kwargs=knobs, api_visibility="private",
                                  **gpu)  # fmt: skip
        sweep_event = sweep_btn.click(
            by_name(partial(run_sweep, ctx), ui), [image_in, instruction, lam_values, gamma_values],
            [ui[n] for n in SWEEP_OUTPUTS], inputs_kwargs=knobs, api_visibility="private", **gpu,
        )  # fmt: skip
        for btn in (stop_btn, sweep_stop):
            btn.click(None, cancels=[run_event, sweep_event])
        stop_btn.click(stopped, status, status, **private)
        sweep_stop.click(stopped, sweep_status, sweep_status, **private)
        scrubber.input(replay, [frames_state, scrubber], [canvas, overlay, status], **private)
        instruction.change(chips, [instruction, knobs["keywords"], typed_state], [knobs["keywords"], typed_state],
                           **private)  # fmt: skip
        use_btn.click(use_as_input, last_state, image_in, **private)
        gallery.select(by_name(restore, ui), history_state, [ui[n] for n in RESTORE_OUTPUTS], **private)
        a_edit.click(partial(api_edit, ctx), [a_image, a_instruction, a_mask], [a_result, a_info],
                     inputs_kwargs=api_knobs, api_name="edit", **gpu)  # fmt: skip
        a_sweep.click(partial(api_sweep, ctx), [a_image, a_instruction, a_mask, a_lams, a_gammas], [a_grid, a_cells],
                      inputs_kwargs=api_knobs, api_name="sweep", **gpu)  # fmt: skip
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    return demo


def make_context(
    editor: Editor,
    *,
    preview_side: int = studio.PREVIEW_SIDE,
    preview_budget: float = studio.PREVIEW_BUDGET,
    frame_interval: float = 0.1,
    out_dir: Path | None = None,
) -> Context:
    """The handlers' context; the edit and sweep generators are wrapped for ZeroGPU when `spaces` is importable.
    preview_budget: share of an edit's time spent decoding previews; frame_interval: a live frame goes to the browser
    at most this often (every step is still cached for the scrubber)."""

    def stream(image, instruction, options, mask, pixels):  # runs on the GPU worker under ZeroGPU
        kw = {"user_mask": mask, "pixels": pixels, "preview_side": preview_side, "preview_budget": preview_budget}
        yield from studio.stream(editor, image, instruction, options, **kw)

    def sweep(image, instruction, options, lams, gammas, mask, pixels):  # runs on the GPU worker under ZeroGPU
        yield from studio.sweep(editor, image, instruction, options, lams, gammas, user_mask=mask, pixels=pixels)

    def stream_seconds(image, instruction, options, mask, pixels):  # ZeroGPU duration of one stream(...) call
        return gpu_seconds(options.steps, pixels or editor.settings.pixels)

    def sweep_seconds(image, instruction, options, lams, gammas, mask, pixels):
        return gpu_seconds(options.steps, pixels or editor.settings.pixels, len(lams) * max(1, len(gammas or ())))

    def check(image, instruction, pixels):  # a VQ round trip: on the GPU worker under ZeroGPU too
        return [n.text for n in domain.check(editor, image, instruction, pixels=pixels)]

    on_gpu = gpu_wrapper()
    gpu_stream, gpu_sweep = on_gpu(stream, stream_seconds), on_gpu(sweep, sweep_seconds)
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="editmgt-studio-"))
    return Context(
        editor,
        lambda *args: studio.prefetch(gpu_stream(*args)),  # the sampler runs ahead while a step is rendered and sent
        lambda *args: studio.prefetch(gpu_sweep(*args)),
        preview_side,
        frame_interval,
        out_dir,
        on_gpu(check, 30) if domain.domain_of(editor) else lambda *args: [],
    )


# ---------------------------------------------------------------------------------------------------- entry point


def default_device() -> str:
    """cuda on a ZeroGPU Space (SPACES_ZERO_GPU: `spaces` lends a GPU per call) or when there is one, else cpu."""
    return "cuda" if ZERO_GPU or torch.cuda.is_available() else "cpu"


def default_model(device: str) -> str:
    """EDITMGT_MODEL on a GPU (a Space on GPU hardware edits photos with the published model); the bundle otherwise."""
    chosen = os.environ.get("EDITMGT_MODEL", "").strip()
    if chosen and not device.startswith("cpu"):
        return chosen
    if chosen:
        log.warning("EDITMGT_MODEL=%s is ignored on the CPU; the bundled model is loaded (--model overrides)", chosen)
    return str(DEFAULT_MODEL)


def load(
    model: str | Path,
    device: str,
    dtype: str = "fp32",
    offload: bool = False,
    fallback: bool = False,
    compile: str = "off",
) -> Editor:
    """load_editor, or one clear message (no traceback) when the model is missing or broken. fallback: when `model`
    (a default from EDITMGT_MODEL) cannot be loaded, say why and load the bundle instead (a Space that is offline)."""
    if Path(model).expanduser().resolve() == DEFAULT_MODEL and not DEFAULT_MODEL.is_dir():
        raise SystemExit(
            f"EditMGT Studio: the bundled default model is missing ({DEFAULT_MODEL}). Export it with "
            "`python -m editmgt_core.train --vq runs/vq/vqvae --out runs/editmgt --export assets/default-model`, "
            "or pass another model folder or hub id with --model."
        )
    try:
        editor = load_editor(model, device=device, dtype=dtype, offload=offload, compile=compile)
    except torch.cuda.OutOfMemoryError:
        raise SystemExit(
            f"EditMGT Studio: the model {str(model)!r} does not fit in {device}'s memory at {dtype}; try "
            "--dtype bf16 (half the memory), then --offload (text encoders on the CPU between edits)"
        ) from None
    except (ModelNotFoundError, ValueError, OSError) as err:
        if fallback and Path(str(model)).resolve() != DEFAULT_MODEL:
            log.warning("cannot load %s (%s); loading the bundled model instead", model, err)
            return load(DEFAULT_MODEL, device, dtype, offload, compile=compile)
        raise SystemExit(f"EditMGT Studio: cannot load the model {str(model)!r}: {err}") from None
    warning = cpu_warning(editor, default_options(editor).steps)
    if warning:
        log.warning("EditMGT Studio: %s", warning)
    return editor


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, **kwargs):
    """Serve the app; binds loopback unless told otherwise (Spaces set GRADIO_SERVER_NAME=0.0.0.0)."""
    kwargs = {"max_file_size": "25mb", "allowed_paths": [str(EXAMPLES)], "show_error": True, **kwargs}
    return demo.launch(server_name=host, server_port=port, **kwargs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="EditMGT Studio: live instruction-driven image editing in the browser.")
    p.add_argument(
        "--model",
        help="model folder or hub id, e.g. WeiChow/EditMGT (default: EDITMGT_MODEL on a GPU, else the bundled one)",
    )
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), help="address to bind")
    p.add_argument("--port", type=int, default=None, help="port (default: GRADIO_SERVER_PORT, else 7860 and up)")
    p.add_argument("--device", help="torch device (default: cuda when available or on ZeroGPU, else cpu)")
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default="fp32", help=DTYPE_HELP)
    p.add_argument("--compile", choices=("off", *COMPILE_MODES), default="off", help=COMPILE_HELP)
    p.add_argument(
        "--offload",
        action="store_true",
        help="keep the text encoders on the CPU between edits (the published model on a 16 GB card)",
    )
    p.add_argument("--concurrency", type=int, default=1, help="edits running at once (default 1)")
    return p.parse_args(argv)


def make_demo(args: argparse.Namespace) -> gr.Blocks:
    """The app over the model `args` name (without --model: EDITMGT_MODEL on a GPU, else the bundle)."""
    device = args.device or default_device()
    model = args.model or default_model(device)
    editor = load(model, device, args.dtype, args.offload, fallback=args.model is None, compile=args.compile)
    return build_app(editor, concurrency=args.concurrency)


def main(argv: list[str] | None = None) -> None:
    """`editmgt app [options]`: build the app and serve it."""
    args = parse_args(argv)
    launch(make_demo(args), args.host, args.port)


# `demo` is a plain attribute of the running script: `python app.py` is what a Space runs, and `gradio app.py`
# (reload mode) runs it too and reads `demo` from that __main__ module. `import app` (the tests, `editmgt app`)
# builds nothing: a demo made at import would load a model on every import.
if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    args = parse_args()
    demo = make_demo(args)
    launch(demo, args.host, args.port)

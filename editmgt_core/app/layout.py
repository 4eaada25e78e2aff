"""EditMGT Studio's page: a desktop-style layout and its events.

On a laptop screen (1280x800) the first view holds the image, the instruction, Edit and Stop on the left and the
status with the live canvas on the right; the knobs sit below them in collapsible groups, the results below the
canvas. Ctrl/Cmd+Enter edits and Esc stops (PAGE_JS). Edit first shows the run as queued (an unqueued event), then
streams the edit on the GPU queue, whose position shows in the status while it waits.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import gradio as gr

from editmgt_core.app import controls as knob_controls
from editmgt_core.app import runs
from editmgt_core.app.handlers import (
    FULL_RESOLUTION_PIXELS,
    SWEEP_COLUMNS,
    Context,
    api_edit,
    api_sweep,
    begin_sweep,
    by_name,
    run_sweep,
    stop_sweep,
)
from editmgt_core.model import entries
from editmgt_core.model.loading import Editor
from editmgt_core.studio import domain, validate

KNOBS = knob_controls.SHOWN  # the UI's controls (editmgt_core/edit/knobs.py), named as validate.request takes them
# what each handler that returns {name: value} may update
SHOW_OUTPUTS = ("canvas", "overlay", "status", "result", "changed", "scrubber", "files", "used_seed", "frames", "shown")
EDIT_OUTPUTS = (*SHOW_OUTPUTS, "history", "gallery")
SWEEP_OUTPUTS = ("grid", "table", "sweep_status", "used_seed")
RESTORE_OUTPUTS = ("image_in", "instruction", "typed", "view", *KNOBS, *SHOW_OUTPUTS)
IDLE = "Upload an image (or click an example), describe the edit, press **Edit** (Ctrl+Enter). **Stop** (Esc) ends it."
# the upload note's js_on_load: uploads prepared in the browser
UPLOAD_JS = (Path(__file__).resolve().parent / "upload.js").read_text()
FULL_RESOLUTION_SIDE = 1 << 16  # the page downscales nothing up to FULL_RESOLUTION_PIXELS (no side limit of its own)
SWEEP_HELP = (
    "One instruction and seed, several λ (and γ) values side by side: how much is held against how much changes "
    "outside the held region. Uses the image and settings on the left; the image and text are encoded once."
)
# Keyboard shortcuts and the page's few styles, run once per page load; SHOW_RUN brings the status line and the
# live canvas into view when Edit is pressed (after scrolling down to an example, say).
PAGE_JS = """() => {
  const css = `#status {min-height: 3.2em} .sweep-grid {border-collapse: collapse} .sweep-grid th, .sweep-grid td
    {border: 1px solid var(--border-color-primary); padding: 4px; text-align: center; vertical-align: top}
    .sweep-grid img {max-width: 176px; display: block; margin: 0 auto} .sweep-grid td div {font-size: 0.85em}
    .sweep-legend {font-size: 0.85em; margin-top: 6px}`;
  const style = document.createElement('style'); style.textContent = css; document.head.appendChild(style);
  document.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
      e.preventDefault(); document.querySelector('#run')?.click();
    } else if (e.key === 'Escape') {
      document.querySelector('#stop')?.click(); document.querySelector('#sweep-stop')?.click();
    }
  }, true);
}"""

SHOW_RUN = "() => document.querySelector('#status')?.scrollIntoView({block: 'nearest'})"


def map_help(views: dict) -> str:
    """The Map picker's help: the maps this model offers, each once."""
    change = "where the model is about to change the image (keywords do not matter)"
    own = (
        f"the predicted change, {change}"
        if views.get("model's map") == ("change",)
        else "the mix calibrated for this model"
    )
    says = {
        "model's map": own,
        "attention": "where the instruction's words point (keywords choose the words)",
        "predicted change": change,
    }
    return "What the map shows and holds by. " + ". ".join(f"{v[0].upper()}{v[1:]}: {says[v]}" for v in views) + "."


def header(editor: Editor) -> str:
    """One line on what this is and which model is loaded (its name says what it is for)."""
    scope = " Other images and instructions get a warning." if domain.domain_of(editor).get("trained_on") else ""
    return (
        f"**EditMGT Studio** · instruction-driven image editing, decoded token by token · Model: "
        f"{editor.settings.name}.{scope}"
    )


def input_panel(editor: Editor, examples: list) -> dict:
    """Left column: the image, the instruction, Edit and Stop, the examples, then the knobs in collapsible groups."""
    image = gr.ImageEditor(
        label="Image (optional: brush where the edit may happen)",
        type="pil",
        image_mode="RGBA",
        layers=False,
        transforms=(),
        brush=gr.Brush(colors=[("#ff2d7a", 0.6)], color_mode="fixed"),
        height=330,
        format="png",  # lossless: a restored input is edited again pixel for pixel
        elem_id="image-in",
    )
    # the page hands uploads on at their own size (results come back at it) and refuses larger ones with a note
    limits = f'data-side="{FULL_RESOLUTION_SIDE}" data-pixels="{FULL_RESOLUTION_PIXELS}"'
    gr.HTML(f'<div id="upload-note" {limits} role="status"></div>', js_on_load=UPLOAD_JS, padding=False)
    instruction = gr.Textbox(
        label="Instruction",
        placeholder="What to change, e.g. 'make the red circle blue'",
        lines=2,
        elem_id="instruction",
    )
    with gr.Row():
        run_btn = gr.Button("Edit (Ctrl+Enter)", variant="primary", elem_id="run")
        stop_btn = gr.Button("Stop (Esc)", variant="stop", elem_id="stop")
    if examples:
        gr.Examples(
            examples,
            inputs=[image, instruction],
            label="Examples (click one)",
            cache_examples=False,
            elem_id="examples",
        )
    views = entries.map_views(editor.settings.attention_layers, editor.settings.reference_band)
    with gr.Accordion("Map, hold and decoding", open=True):
        view = gr.Radio(list(views), value=next(iter(views)), label="Map", info=map_help(views), elem_id="map-view")
        k = knob_controls.input_controls(editor, "main")
    with gr.Accordion("Advanced", open=False):
        k |= knob_controls.input_controls(editor, "advanced")
    k |= knob_controls.input_controls(editor, "end")
    quiet = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}  # page events, not API
    # a user's pick, not a restore
    view.input(lambda v: knob_controls.layers_text(views[v]), view, k["layers"], **quiet)
    k["layers"].change(
        partial(runs.keywords_info, editor.settings.attention_layers), k["layers"], k["keywords"], **quiet
    )
    return {"image_in": image, "instruction": instruction, "view": view, **k, "run_btn": run_btn, "stop_btn": stop_btn}


def edit_tab() -> dict:
    """The Edit tab: status, live canvas and map, the replay scrubber, the result, downloads and history."""
    status = gr.Markdown(IDLE, elem_id="status")
    with gr.Row():
        canvas = gr.Image(
            label="Token reveal (this step's tokens outlined)",
            type="pil",
            format="jpeg",
            height=300,
            interactive=False,
            elem_id="live-canvas",
        )
        overlay = gr.Image(
            label="Attention map (hold region outlined)",
            type="pil",
            format="jpeg",
            height=300,
            interactive=False,
            elem_id="live-overlay",
        )
    scrubber = gr.Slider(1, 2, 1, step=1, label="Replay step", visible=False, elem_id="scrubber")
    with gr.Row():
        result = gr.ImageSlider(label="Before / after", type="pil", format="png", elem_id="result")
        changed = gr.Image(label="What changed", type="pil", format="png", interactive=False, elem_id="changed")
    with gr.Row():
        files = gr.File(label="Download: PNG (parameters in metadata) + JSON", file_count="multiple", elem_id="files")
        with gr.Column():
            used_seed = gr.Textbox(
                "", label="Seed used", placeholder="no edit yet", interactive=False, elem_id="used-seed"
            )
            use_btn = gr.Button("Use as input", elem_id="use-as-input")
    gallery = gr.Gallery(
        label="History (click to restore a whole run)",
        columns=6,
        height=200,
        elem_id="history",
        allow_preview=False,
        fit_columns=False,
        object_fit="contain",
    )
    return {
        "status": status,
        "canvas": canvas,
        "overlay": overlay,
        "scrubber": scrubber,
        "result": result,
        "changed": changed,
        "files": files,
        "used_seed": used_seed,
        "use_btn": use_btn,
        "gallery": gallery,
    }


def sweep_tab() -> dict:
    """The Threshold exploration tab: λ and γ values, the cells as a table (a row per γ, a column per λ)."""
    gr.Markdown(SWEEP_HELP)
    with gr.Row():
        lam_values = gr.Textbox(
            validate.SWEEP_LAMS,
            label="λ values",
            info="λ values, comma-separated: one column per value.",
            elem_id="lam-values",
        )
        gamma_values = gr.Textbox(
            "",
            label="γ values",
            info="γ values, comma-separated: one row per value; empty = the γ slider's value.",
            elem_id="gamma-values",
        )
    with gr.Row():
        sweep_btn = gr.Button("Explore", variant="primary", elem_id="sweep")
        sweep_stop = gr.Button("Stop", variant="stop", elem_id="sweep-stop")
    sweep_status = gr.Markdown("", elem_id="sweep-status")
    grid = gr.HTML("", elem_id="grid")
    table = gr.Dataframe(headers=SWEEP_COLUMNS, interactive=False, elem_id="sweep-table")
    return {
        "lam_values": lam_values,
        "gamma_values": gamma_values,
        "sweep_btn": sweep_btn,
        "sweep_stop": sweep_stop,
        "sweep_status": sweep_status,
        "grid": grid,
        "table": table,
    }


def wire_ui(ctx: Context, ui: dict) -> None:
    """The page's events. Edit and Explore first show their run as queued (unqueued), then stream on the GPU queue,
    its position on their status; Stop, replay, chips, reuse and restore are unqueued and instant."""
    private = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
    gpu = {"concurrency_id": "gpu", "show_progress": "minimal", "api_visibility": "private", "trigger_mode": "multiple"}
    kw = {**{name: ui[name] for name in KNOBS}, "view": ui["view"]}
    edit_in = [ui[n] for n in ("run", "image_in", "instruction", "history", "shown")]
    ui["run_btn"].click(None, js=SHOW_RUN)
    begun = ui["run_btn"].click(by_name(runs.begin, ui), ui["run"], [ui["run"], ui["status"]], **private)
    begun.then(
        by_name(partial(runs.run_edit, ctx), ui),
        edit_in,
        [ui[n] for n in EDIT_OUTPUTS],
        inputs_kwargs=kw,
        show_progress_on=[ui["status"]],
        **gpu,
    )
    sweep_in = [ui[n] for n in ("sweep_run", "image_in", "instruction", "lam_values", "gamma_values")]
    swept = ui["sweep_btn"].click(
        by_name(begin_sweep, ui), ui["sweep_run"], [ui["sweep_run"], ui["sweep_status"]], **private
    )
    swept.then(
        by_name(partial(run_sweep, ctx), ui),
        sweep_in,
        [ui[n] for n in SWEEP_OUTPUTS],
        inputs_kwargs=kw,
        show_progress_on=[ui["sweep_status"]],
        **gpu,
    )
    ui["stop_btn"].click(runs.stop, [ui["run"], ui["status"], ui["shown"]], ui["status"], **private)
    ui["sweep_stop"].click(stop_sweep, [ui["sweep_run"], ui["sweep_status"]], ui["sweep_status"], **private)
    ui["scrubber"].input(
        runs.replay, [ui["frames"], ui["scrubber"]], [ui["canvas"], ui["overlay"], ui["status"]], **private
    )
    words = [ui["instruction"], ui["keywords"], ui["typed"]]
    ui["instruction"].change(runs.chips, words, [ui["keywords"], ui["typed"]], **private)
    ui["use_btn"].click(runs.use_as_input, ui["shown"], ui["image_in"], **private)
    ui["gallery"].select(
        by_name(runs.restore, ui), [ui["run"], ui["history"]], [ui[n] for n in RESTORE_OUTPUTS], **private
    )


def api_endpoints(ctx: Context, editor: Editor) -> None:
    """The named endpoints /edit and /sweep over hidden components: plain files, text and numbers."""
    gpu = {"concurrency_id": "gpu", "show_progress": "minimal"}
    with gr.Column(visible=False):
        knobs = knob_controls.api_controls(editor)
        image, mask = gr.File(label="image"), gr.File(label="mask (white = may edit)")
        instruction, lams, gammas = gr.Textbox(label="instruction"), gr.Textbox(validate.SWEEP_LAMS), gr.Textbox("")
        result, info = gr.Image(label="image", type="pil", format="png"), gr.JSON(label="info")
        grid, cells = gr.Gallery(label="cells", format="png"), gr.JSON(label="summary")
        edit_btn, sweep_btn = gr.Button(), gr.Button()
    edit_btn.click(
        partial(api_edit, ctx), [image, instruction, mask], [result, info], inputs_kwargs=knobs, api_name="edit", **gpu
    )
    sweep_btn.click(
        partial(api_sweep, ctx),
        [image, instruction, mask, lams, gammas],
        [grid, cells],
        inputs_kwargs=knobs,
        api_name="sweep",
        **gpu,
    )

"""EditMGT Studio: a Gradio Blocks editor that streams every decoding step of an instruction-driven edit.

    python app.py [--model PATH_OR_HUB_ID] [--host 127.0.0.1] [--port 7860] [--device cpu]

A thin UI: this file lays out the page and wires it to the handlers in `app_handlers.py`, which route values through
the studio modules (`editmgt_core/studio/`): `studio_inputs` (limits and checks), `streaming` (the streamed edit and
the λ/γ sweep as CPU data) and `studio_render` (pictures and saved results); `app_knobs.py` makes the knobs' controls.
Named API endpoints `/edit` and `/sweep` take a file, text and numbers (README).
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
import json
import logging
import tempfile
from functools import partial
from pathlib import Path

import gradio as gr
import torch
from PIL import Image

import app_handlers
import app_knobs
from app_handlers import (
    Context,
    api_edit,
    api_sweep,
    by_name,
    chips,
    keyword_chips_state,
    replay,
    restore,
    run_edit,
    run_sweep,
    stopped,
    use_as_input,
)
from editmgt_core.edit.editing import default_options
from editmgt_core.model import entries
from editmgt_core.model.config import add_runtime_args
from editmgt_core.model.loading import Editor, ModelNotFoundError, cpu_warning, load_editor
from editmgt_core.studio import domain, gpu_calls, streaming, studio_inputs, studio_render
from editmgt_core.studio.compute import ComputeThread
from editmgt_core.studio.gpu_calls import GPU_MAX_SECONDS, gpu_need, gpu_seconds  # noqa: F401 (ZeroGPU durations)

ROOT = Path(__file__).resolve().parent
DEFAULT_MODEL = ROOT / "assets" / "default-model"
EXAMPLES = ROOT / "assets" / "examples"
# Uploads are prepared in the browser before the image editor sees them: decoded once, refused with a visible note
# when undecodable or beyond the full-resolution pixel limit, else handed on at their own size (the result comes
# back at it). The script runs as the note's gr.HTML js_on_load (`element` is the note).
UPLOAD_JS = (ROOT / "assets" / "upload.js").read_text()
# Full resolution: the page downscales nothing up to app_handlers.FULL_RESOLUTION_PIXELS (no side limit of its own),
# and a 16 MP picture sent on as PNG by the image editor can take 50 MB.
FULL_RESOLUTION_SIDE = 1 << 16
MAX_FILE_SIZE = "100mb"
KNOBS = app_knobs.SHOWN  # the UI's controls (editmgt_core/edit/knobs.py), named as studio_inputs.request takes them
# what each handler that returns {name: value} may update (build_app names the components)
EDIT_OUTPUTS = ("canvas", "overlay", "status", "result", "changed", "scrubber", "files", "used_seed", "frames", "last",
                "history", "gallery")  # fmt: skip
SWEEP_OUTPUTS = ("grid", "table", "sweep_status", "used_seed")
RESTORE_OUTPUTS = ("image_in", "instruction", *KNOBS, "result", "status", "typed")
log = logging.getLogger("editmgt.app")

HELP = {  # the controls that are not knobs (the knobs' help is in editmgt_core/edit/knobs.py)
    "instruction": "What to change, in one sentence, e.g. 'make the red circle blue'.",
    "map": "What the map shows and holds by. Attention: where the instruction's words point (keywords choose the "
    "words). Predicted change: where the model is about to change the image (keywords do not matter). The model's "
    "map: the mix calibrated for this model.",
    "lams": "λ values, comma-separated: one cell per value.",
    "gammas": "γ values, comma-separated: one row of cells per value; empty = the γ slider's value.",
}
SWEEP_HELP = (
    "One instruction and seed, several λ (and γ) values side by side: how much is held against how much changes "
    "outside the held region. Uses the image and settings on the left; the image and text are encoded once."
)


# ---------------------------------------------------------------------------------------------------- ZeroGPU



def gpu_wrapper():
    """On ZeroGPU: (fn, duration) -> spaces.GPU(duration=duration)(fn), duration a number or a function of fn's
    arguments; identity elsewhere."""
    if not ZERO_GPU:
        return lambda fn, duration: fn
    return lambda fn, duration: spaces.GPU(duration=duration)(fn)


def make_context(
    editor: Editor,
    *,
    preview_side: int = studio_render.PREVIEW_SIDE,
    preview_budget: float = streaming.PREVIEW_BUDGET,
    frame_interval: float = 0.1,
    out_dir: Path | None = None,
    compute: ComputeThread | None = None,
) -> Context:
    """The handlers' context; the edit and sweep generators are wrapped for ZeroGPU when `spaces` is importable.
    preview_budget: share of an edit's time spent decoding previews; frame_interval: a live frame goes to the browser
    at most this often, and a preview is decoded at most this often (every step is still cached for the scrubber,
    over the latest preview). Closing a stream or sweep (Stop) ends its GPU work within one decoding step
    (gpu_calls.StopBoard, made here before any GPU worker exists). compute: the thread the model runs on (the one
    it was loaded on; default a new one)."""
    compute = compute or ComputeThread()
    board = gpu_calls.StopBoard()

    def stream(image, instruction, options, mask, pixels, previews, run):  # on the GPU worker under ZeroGPU
        kw = {"user_mask": mask, "pixels": pixels, "preview_side": preview_side, "preview_interval": frame_interval,
              "preview_budget": preview_budget if previews else 0.0}  # no more previews than the screen shows
        yield from gpu_calls.until_stopped(streaming.stream(editor, image, instruction, options, **kw), board, run)

    def sweep(image, instruction, options, lams, gammas, mask, pixels, run):  # on the GPU worker under ZeroGPU
        cells = streaming.sweep(editor, image, instruction, options, lams, gammas, user_mask=mask, pixels=pixels)
        yield from gpu_calls.until_stopped(cells, board, run)

    def stream_seconds(image, instruction, options, mask, pixels, previews, run):  # ZeroGPU duration of a stream
        return gpu_seconds(options.steps, pixels or editor.settings.pixels)

    def sweep_seconds(image, instruction, options, lams, gammas, mask, pixels, run):
        return gpu_seconds(options.steps, pixels or editor.settings.pixels, len(lams) * max(1, len(gammas or ())))

    def check(image, instruction, pixels):  # a VQ round trip: on the GPU worker under ZeroGPU too
        return [n.text for n in domain.check(editor, image, instruction, pixels=pixels)]

    on_gpu = gpu_wrapper()
    gpu_stream, gpu_sweep = on_gpu(stream, stream_seconds), on_gpu(sweep, sweep_seconds)

    def start_stream(image, instruction, options, mask, pixels, previews=True):  # the sampler runs ahead (prefetch)
        args = (image, instruction, options, mask, pixels, previews)
        return gpu_calls.start(board, compute.prefetch, gpu_stream, *args)

    def start_sweep(image, instruction, options, lams, gammas, mask, pixels):
        steps, px = options.steps, pixels or editor.settings.pixels
        fits = lambda cells: gpu_calls.gpu_need(steps, px, cells) <= gpu_calls.GPU_MAX_SECONDS  # noqa: E731
        args = (image, instruction, options, lams, gammas, mask, pixels)
        return gpu_calls.start_sweep(board, compute.prefetch, gpu_sweep, fits, *args)

    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="editmgt-studio-"))
    return Context(
        editor,
        start_stream,
        start_sweep,
        preview_side,
        frame_interval,
        out_dir,
        partial(compute.call, on_gpu(check, 30)) if domain.domain_of(editor) else lambda *args: [],
    )


# ---------------------------------------------------------------------------------------------------- layout


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



def input_panel(editor: Editor) -> dict:
    """Image, instruction and the knobs' controls (app_knobs), by name (the knobs named as studio_inputs.request
    takes them)."""
    image = gr.ImageEditor(
        label="Image (optional: brush where the edit may happen)", type="pil", image_mode="RGBA",
        layers=False, transforms=(), brush=gr.Brush(colors=[("#ff2d7a", 0.6)], color_mode="fixed"), height=420,
        elem_id="image-in",
    )  # fmt: skip
    # the page hands uploads on at their own size (results come back at it) and refuses larger ones with a note
    limits = f'data-side="{FULL_RESOLUTION_SIDE}" data-pixels="{app_handlers.FULL_RESOLUTION_PIXELS}"'
    gr.HTML(f'<div id="upload-note" {limits} role="status"></div>', js_on_load=UPLOAD_JS, padding=False)
    instruction = gr.Textbox(label="Instruction", info=HELP["instruction"], lines=2, elem_id="instruction")
    views = entries.map_views(editor.settings.attention_layers, editor.settings.reference_band)
    view = gr.Radio(list(views), value=next(iter(views)), label="Map", info=HELP["map"], elem_id="map-view")
    k = app_knobs.input_controls(editor)
    quiet = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}  # page events, not API
    view.change(lambda v: app_knobs.layers_text(views[v]), view, k["layers"], **quiet)
    chips_state = partial(keyword_chips_state, editor.settings.attention_layers)
    k["layers"].change(chips_state, k["layers"], k["keywords"], **quiet)
    with gr.Row():
        run_btn = gr.Button("Edit", variant="primary", elem_id="run")
        stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
    return {"image_in": image, "instruction": instruction, **k, "run_btn": run_btn, "stop_btn": stop_btn}


def edit_tab() -> dict:
    """The Edit tab: the live panels, the replay scrubber, the result, downloads and history, by name."""
    status = gr.Markdown("Upload an image, describe the edit, press **Edit**.", elem_id="status")
    with gr.Row():
        canvas = gr.Image(label="Token reveal (this step's tokens outlined)", type="pil", format="jpeg",
                          interactive=False, elem_id="live-canvas")  # fmt: skip
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
    return {"status": status, "canvas": canvas, "overlay": overlay, "scrubber": scrubber, "result": result,
            "changed": changed, "files": files, "used_seed": used_seed, "use_btn": use_btn,
            "gallery": gallery}  # fmt: skip


def sweep_tab() -> dict:
    """The Threshold exploration tab: λ and γ values, the cells and their table, by name."""
    gr.Markdown(SWEEP_HELP)
    with gr.Row():
        lam_values = gr.Textbox("0, 0.1, 0.2, 0.4", label="λ values", info=HELP["lams"])
        gamma_values = gr.Textbox("", label="γ values", info=HELP["gammas"])
    with gr.Row():
        sweep_btn = gr.Button("Explore", variant="primary", elem_id="sweep")
        sweep_stop = gr.Button("Stop", variant="stop", elem_id="sweep-stop")
    sweep_status = gr.Markdown("", elem_id="sweep-status")
    grid = gr.Gallery(label="Cells", columns=4, fit_columns=False, object_fit="contain", elem_id="grid")
    table = gr.Dataframe(headers=["λ", "γ", "% held", "Δ outside hold"], interactive=False)
    return {"lam_values": lam_values, "gamma_values": gamma_values, "sweep_btn": sweep_btn, "sweep_stop": sweep_stop,
            "sweep_status": sweep_status, "grid": grid, "table": table}  # fmt: skip


def wire_ui(ctx: Context, ui: dict) -> None:
    """The page's events: Edit and Explore stream on the GPU queue; Stop, replay, chips, reuse and restore are
    private and instant."""
    private = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
    gpu = {"concurrency_id": "gpu", "show_progress": "minimal", "api_visibility": "private"}
    knobs = {name: ui[name] for name in KNOBS}
    # trigger_mode "once": a second click on Edit while an edit runs is ignored, not queued behind it
    run_event = ui["run_btn"].click(by_name(partial(run_edit, ctx), ui), [ui[n] for n in ("image_in", "instruction",
                                    "history")], [ui[n] for n in EDIT_OUTPUTS], inputs_kwargs=knobs,
                                    trigger_mode="once", **gpu)  # fmt: skip
    sweep_inputs = [ui[n] for n in ("image_in", "instruction", "lam_values", "gamma_values")]
    # "once" here too would keep a stopped sweep pending in gradio 6.31's page, and Explore would not run again
    sweep_event = ui["sweep_btn"].click(by_name(partial(run_sweep, ctx), ui), sweep_inputs,
                                        [ui[n] for n in SWEEP_OUTPUTS], inputs_kwargs=knobs,
                                        trigger_mode="multiple", **gpu)  # fmt: skip
    for btn in (ui["stop_btn"], ui["sweep_stop"]):
        btn.click(None, cancels=[run_event, sweep_event])
    ui["stop_btn"].click(stopped, ui["status"], ui["status"], **private)
    ui["sweep_stop"].click(stopped, ui["sweep_status"], ui["sweep_status"], **private)
    ui["scrubber"].input(replay, [ui["frames"], ui["scrubber"]], [ui["canvas"], ui["overlay"], ui["status"]], **private)
    ui["instruction"].change(chips, [ui["instruction"], ui["keywords"], ui["typed"]], [ui["keywords"], ui["typed"]],
                             **private)  # fmt: skip
    ui["use_btn"].click(use_as_input, ui["last"], ui["image_in"], **private)
    ui["gallery"].select(by_name(restore, ui), ui["history"], [ui[n] for n in RESTORE_OUTPUTS], **private)


def api_endpoints(ctx: Context, editor: Editor) -> None:
    """The named endpoints /edit and /sweep over hidden components: plain files, text and numbers."""
    gpu = {"concurrency_id": "gpu", "show_progress": "minimal"}
    with gr.Column(visible=False):
        knobs = app_knobs.api_controls(editor)
        image, mask = gr.File(label="image"), gr.File(label="mask (white = may edit)")
        instruction, lams, gammas = gr.Textbox(label="instruction"), gr.Textbox("0, 0.2"), gr.Textbox("")
        result, info = gr.Image(label="image", type="pil", format="png"), gr.JSON(label="info")
        grid, cells = gr.Gallery(label="cells", format="png"), gr.JSON(label="summary")
        edit_btn, sweep_btn = gr.Button(), gr.Button()
    edit_btn.click(partial(api_edit, ctx), [image, instruction, mask], [result, info], inputs_kwargs=knobs,
                   api_name="edit", **gpu)  # fmt: skip
    sweep_btn.click(partial(api_sweep, ctx), [image, instruction, mask, lams, gammas], [grid, cells],
                    inputs_kwargs=knobs, api_name="sweep", **gpu)  # fmt: skip


def build_app(editor: Editor, *, concurrency: int = 1, max_queue: int = 16, **context) -> gr.Blocks:
    """The Blocks app over one loaded editor. concurrency: edits running at once (they share one device); max_queue:
    requests waiting beyond that; context: `make_context`'s keywords (preview size and budget, frame interval)."""
    Image.MAX_IMAGE_PIXELS = studio_inputs.HARD_PIXELS  # PIL refuses bombs beyond 2x this, in gradio's own decoding
    ctx = make_context(editor, **context)
    with gr.Blocks(title="EditMGT Studio", delete_cache=(3600, 3600)) as demo:
        ui = {  # per session
            "frames": gr.State([]),  # (canvas JPEG, overlay JPEG, status) of each step of the last run
            "last": gr.State(None),  # the last result {"image", "parameters"}
            "history": gr.State([]),  # earlier results, newest last
            "typed": gr.State(""),  # the instruction as the keyword chips last saw it
        }
        gr.Markdown(header(editor))
        with gr.Row():
            with gr.Column(scale=2):
                ui |= input_panel(editor)
            with gr.Column(scale=3), gr.Tabs():
                with gr.Tab("Edit"):
                    ui |= edit_tab()
                with gr.Tab("Threshold exploration"):
                    ui |= sweep_tab()
        gr.Examples(examples(), inputs=[ui["image_in"], ui["instruction"]], label="Examples (click one)",
                    cache_examples=False)  # fmt: skip
        api_endpoints(ctx, editor)
        wire_ui(ctx, ui)
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    calm_queue(demo)
    return demo


QUEUE_POLL = 0.01  # seconds between the queue's looks for work (gradio: 0.001 outside Windows)
PROGRESS_POLL = 0.05  # seconds between its looks for progress to send (gradio: 0.01)


def calm_queue(demo: gr.Blocks) -> None:
    """Let gradio's queue look for work every 10 ms instead of every millisecond. Its loop wakes the server's event
    loop 1,000 times a second, busy or idle, and on a 2-core machine each wake-up stalls the edit's OpenMP team:
    edits took about 30% longer once the server had started (docs/studio.md). A request now waits at most 10 ms
    more to start. The poll intervals are attributes of gradio's queue object, not API: when a gradio release
    renames them this leaves the queue as it is (tests/test_app.py notices)."""
    queue = getattr(demo, "_queue", None)
    for name, seconds in (("sleep_when_free", QUEUE_POLL), ("progress_update_sleep_when_free", PROGRESS_POLL)):
        if isinstance(getattr(queue, name, None), float):
            setattr(queue, name, seconds)


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


def space_revision(model: str) -> str | None:
    """EDITMGT_REVISION (a Space variable `deploy-space` writes) for the hub model EDITMGT_MODEL names, else None."""
    chosen = os.environ.get("EDITMGT_MODEL", "").strip()
    return (os.environ.get("EDITMGT_REVISION", "").strip() or None) if chosen and model == chosen else None


def load(
    model: str | Path,
    device: str,
    dtype: str = "fp32",
    offload: bool = False,
    fallback: bool = False,
    compile: str = "off",
    revision: str | None = None,
    compute: ComputeThread | None = None,
) -> Editor:
    """load_editor, or one clear message (no traceback) when the model is missing or broken. fallback: when `model`
    (a default from EDITMGT_MODEL) cannot be loaded, say why and load the bundle instead (a Space that is offline).
    compute: the thread the app will run the model on (load it there: one OpenMP team in the process)."""
    compute = compute or ComputeThread()
    if Path(model).expanduser().resolve() == DEFAULT_MODEL and not DEFAULT_MODEL.is_dir():
        raise SystemExit(
            f"EditMGT Studio: the bundled default model is missing ({DEFAULT_MODEL}). Export it with "
            "`python -m editmgt_core.world.train --vq runs/vq/vqvae --out runs/editmgt --export assets/default-model`, "
            "or pass another model folder or hub id with --model."
        )
    try:
        # on the compute thread, where the edits run (compute: one thread's OpenMP team in the process)
        editor = compute.call(load_editor, model, device=device, dtype=dtype, offload=offload, compile=compile,
                              revision=revision)  # fmt: skip
    except torch.cuda.OutOfMemoryError:
        raise SystemExit(
            f"EditMGT Studio: the model {str(model)!r} does not fit in {device}'s memory at {dtype}; try "
            "--dtype bf16 (half the memory), then --offload (text encoders on the CPU between edits)"
        ) from None
    except (ModelNotFoundError, ValueError, OSError) as err:
        if fallback and Path(str(model)).resolve() != DEFAULT_MODEL:
            log.warning("cannot load %s (%s); loading the bundled model instead", model, err)
            return load(DEFAULT_MODEL, device, dtype, offload, compile=compile, compute=compute)
        raise SystemExit(f"EditMGT Studio: cannot load the model {str(model)!r}: {err}") from None
    warning = cpu_warning(editor, default_options(editor).steps)
    if warning:
        log.warning("EditMGT Studio: %s", warning)
    return editor


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, **kwargs):
    """Serve the app; binds loopback unless told otherwise (Spaces set GRADIO_SERVER_NAME=0.0.0.0)."""
    kwargs = {"max_file_size": MAX_FILE_SIZE, "allowed_paths": [str(EXAMPLES)], "show_error": True, **kwargs}
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
    add_runtime_args(p)
    p.add_argument("--concurrency", type=int, default=1, help="edits running at once (default 1)")
    return p.parse_args(argv)


def make_demo(args: argparse.Namespace) -> gr.Blocks:
    """The app over the model `args` name (without --model: EDITMGT_MODEL on a GPU, else the bundle)."""
    device = args.device or default_device()
    model = args.model or default_model(device)
    compute = ComputeThread()  # the model is loaded and run on this one thread
    editor = load(model, device, args.dtype, args.offload, fallback=args.model is None, compile=args.compile,
                  revision=args.revision or space_revision(model), compute=compute)  # fmt: skip
    return build_app(editor, concurrency=args.concurrency, compute=compute)


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

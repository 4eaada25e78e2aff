"""EditMGT Studio: a Gradio Blocks editor that streams every decoding step of an instruction-driven edit.

    editmgt app [--model PATH_OR_HUB_ID] [--host 127.0.0.1] [--port 7860] [--device cpu]   (or: python app.py ...)

A thin UI: this module builds and serves the app (the page's layout and events are in `layout`, the page's edit runs
in `runs`, the API and sweep handlers in `handlers`), which route values through the studio modules
(`editmgt_core/studio/`): `validate` (limits and checks), `streaming` (the streamed edit and the λ/γ sweep as CPU
data, saved results), `render` (pictures) and `page_state` (the page's runs); `controls` makes the knobs' controls.
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
import socket
import tempfile
from functools import partial
from pathlib import Path

import gradio as gr
import torch
from PIL import Image

from editmgt_core import paths
from editmgt_core.app import layout as page
from editmgt_core.app.handlers import Context
from editmgt_core.edit.editing import default_options
from editmgt_core.edit.files import public_model
from editmgt_core.model.config import add_runtime_args
from editmgt_core.model.loading import Editor, ModelNotFoundError, cpu_warning, load_editor
from editmgt_core.studio import domain, gpu_calls, render, streaming, validate
from editmgt_core.studio.compute import ComputeThread
from editmgt_core.studio.gpu_calls import GPU_MAX_SECONDS, gpu_need, gpu_seconds  # noqa: F401 (ZeroGPU durations)

DEFAULT_MODEL, EXAMPLES = paths.BUNDLED_MODEL, paths.EXAMPLES
MAX_FILE_SIZE = "100mb"  # a 16 MP picture sent on as PNG by the image editor can take 50 MB
EDIT_OUTPUTS, RESTORE_OUTPUTS = page.EDIT_OUTPUTS, page.RESTORE_OUTPUTS  # (the page's: layout.py)
log = logging.getLogger("editmgt.app")

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
    preview_side: int = render.PREVIEW_SIDE,
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
        budget = preview_budget if previews else 0.0  # no more previews than the screen shows
        kw = dict(user_mask=mask, pixels=pixels, preview_side=preview_side, preview_interval=frame_interval)
        kw["preview_budget"] = budget
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
    checks = partial(compute.call, on_gpu(check, 30)) if domain.domain_of(editor) else lambda *args: []
    return Context(editor, start_stream, start_sweep, preview_side, frame_interval, out_dir, checks)


# ---------------------------------------------------------------------------------------------------- layout


def examples() -> list[list[str]]:
    listing = EXAMPLES / "examples.json"
    if not listing.is_file():
        return []
    return [[str(EXAMPLES / e["image"]), e["instruction"]] for e in json.loads(listing.read_text())]


def build_app(editor: Editor, *, concurrency: int = 1, max_queue: int = 16, **context) -> gr.Blocks:
    """The Blocks app over one loaded editor (the page: layout.py). concurrency: edits running at once (they share
    one device); max_queue: requests waiting beyond that; context: `make_context`'s keywords (preview size and
    budget, frame interval)."""
    Image.MAX_IMAGE_PIXELS = validate.HARD_PIXELS  # PIL refuses bombs beyond 2x this, in gradio's own decoding
    ctx = make_context(editor, **context)
    with gr.Blocks(title="EditMGT Studio", delete_cache=(3600, 3600)) as demo:
        ui = {  # per session
            "frames": gr.State([]),  # (canvas JPEG, overlay JPEG, status) of each step of the shown run
            "shown": gr.State(None),  # the record of the run every result panel shows (runs.show)
            "history": gr.State([]),  # finished runs' records, newest last
            "typed": gr.State(""),  # the instruction as the keyword chips last saw it
            "run": gr.State(None),  # the page's edit run (handlers.RUNS)
            "sweep_run": gr.State(None),  # the page's sweep run
        }
        gr.Markdown(page.header(editor), elem_id="header")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=420):
                ui |= page.input_panel(editor, examples())
            with gr.Column(scale=3), gr.Tabs():
                with gr.Tab("Edit"):
                    ui |= page.edit_tab()
                with gr.Tab("Threshold exploration"):
                    ui |= page.sweep_tab()
        page.api_endpoints(ctx, editor)
        page.wire_ui(ctx, ui)
        demo.load(None, js=page.PAGE_JS)
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
            "`python -m editmgt_core.train.mgt --vq runs/vq/vqvae --out runs/editmgt --export "
            f"{DEFAULT_MODEL}`, "
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
    """Serve the app; binds loopback unless told otherwise (Spaces set GRADIO_SERVER_NAME=0.0.0.0). A port asked
    for (--port or GRADIO_SERVER_PORT) that is busy is an error; without one, a busy 7860 (another studio, most
    likely) moves to the next free port and the log says so."""
    asked = port or int(os.environ.get("GRADIO_SERVER_PORT") or 0) or None
    if asked and port_busy(host, asked):
        raise SystemExit(f"EditMGT Studio: port {asked} on {host} is already in use (another EditMGT Studio or "
                         "another server); stop it, or pass another --port")  # fmt: skip
    if not asked and port_busy(host, DEFAULT_PORT):
        log.warning("EditMGT Studio: port %d is in use (another EditMGT Studio?); serving on the next free port, "
                    "named below. Pass --port to choose one.", DEFAULT_PORT)  # fmt: skip
    kwargs = {"max_file_size": MAX_FILE_SIZE, "allowed_paths": [str(EXAMPLES)], "show_error": True, **kwargs}
    return demo.launch(server_name=host, server_port=asked, **kwargs)


DEFAULT_PORT = 7860  # gradio's first choice


def port_busy(host: str, port: int) -> bool:
    """Whether something already listens on host:port."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


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
    log.info("EditMGT Studio: loaded %s (%s) on %s", public_model(editor.model_id), editor.settings.name, device)
    return build_app(editor, concurrency=args.concurrency, compute=compute)


def main(argv: list[str] | None = None) -> None:
    """`editmgt app [options]`: build the app and serve it."""
    logging.basicConfig(level=logging.INFO)
    args = parse_args(argv)
    launch(make_demo(args), args.host, args.port)

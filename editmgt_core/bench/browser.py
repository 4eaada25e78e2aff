"""A big photo through the studio in a real browser: `python -m editmgt_core.bench browser`.

Serves the studio (`app.py` in a subprocess) and drives headless Chromium (Playwright; `CHROMIUM` names the browser,
default /usr/bin/chromium): uploads a 4000x3000 JPEG (timing the in-page preparation), types the instruction,
presses Edit and times the click to "Done", for --runs runs (only that is waited for: a second wait in between, for
the first status change, doubled the click-to-done time in headless Chromium); then times `edit()` in-process on
the same file (decode included), the server's side of the same work. Prints both and their ratio (the
target: click to done <= 2x the server's edit).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# no background networking, component updates or sync: offline, they cost seconds of CPU per page
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


def photo(path: Path, width: int = 4000, height: int = 3000) -> Path:
    """A photo-sized JPEG: a sky gradient, a horizon, a few shapes and sensor-like noise."""
    rng = np.random.default_rng(0)
    y = np.linspace(0, 1, height)[:, None, None]
    sky = (1 - y) * np.array([90, 150, 230]) + y * np.array([200, 220, 240])
    pixels = np.broadcast_to(sky, (height, width, 3)).copy()
    pixels[int(0.6 * height) :] = [70, 120, 60]
    image = Image.fromarray(np.clip(pixels + rng.normal(0, 6, pixels.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((1400, 900, 2200, 1700), fill=(220, 40, 40))
    draw.rectangle((2600, 1300, 3300, 2100), fill=(240, 200, 40))
    image.save(path, quality=90)
    return path


def bench_browser(args) -> dict:
    from playwright.sync_api import sync_playwright

    from editmgt_core.bench.common import studio_process

    root = Path(__file__).resolve().parents[2]
    big = photo(Path(tempfile.mkdtemp(prefix="editmgt-bench-")) / "photo.jpg")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "GRADIO_ANALYTICS_ENABLED": "False"}
    port, server = studio_process(args.model, root, env)
    clicks, uploads = [], []
    try:
        _wait_http(port)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(180_000)
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
            page.wait_for_selector("#image-in canvas")
            page.locator("#instruction textarea").fill(args.instruction)
            for i in range(args.runs + 1):
                start = time.perf_counter()
                page.evaluate("() => { document.querySelector('#upload-note').textContent = '…'; }")
                page.locator("#image-in input[type=file]").set_input_files(str(big))
                # the page hands the photo on at its own size: its note empties, and the editor shows the image
                page.wait_for_function(
                    "() => document.querySelector('#upload-note').innerText === ''"
                    " && !document.querySelector('#image-in').innerText.includes('Upload an')"
                )
                uploaded = time.perf_counter() - start
                before = page.locator("#status").inner_text()
                start = time.perf_counter()
                page.locator("#run").click()
                page.wait_for_function(
                    "b => { const t = document.querySelector('#status').innerText; "
                    "return t.includes('Done') && t !== b; }",
                    arg=before,
                )
                if i:  # the first run is a warm-up
                    clicks.append(time.perf_counter() - start)
                    uploads.append(uploaded)
                page.evaluate("() => { document.querySelector('#upload-note').textContent = ''; }")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    local = _in_process(args, big)
    med = lambda xs: round(1000 * statistics.median(xs), 1)  # noqa: E731
    return {
        "model": str(args.model),
        "threads": args.threads,
        "runs": args.runs,
        "image": "4000x3000 JPEG",
        "browser_prepare_ms": med(uploads),
        "click_to_done_ms": med(clicks),
        "in_process_edit_ms": med(local),
        "click_over_in_process": round(med(clicks) / med(local), 3),
    }


def _wait_http(port: int, seconds: float = 120.0) -> None:
    import urllib.request

    for _ in range(int(seconds / 0.5)):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the studio on port {port} did not answer within {seconds:.0f} s")


def _in_process(args, path: Path) -> list[float]:
    """edit() on the file as the server gets it without the browser's help: decode, edit at its own size."""
    import torch

    from editmgt_core.edit.editing import default_options, edit, to_rgb
    from editmgt_core.model.loading import load_editor
    from editmgt_core.studio.validate import open_upload

    torch.set_num_threads(args.threads)
    editor = load_editor(args.model)
    times = []
    for i in range(args.runs + 1):
        start = time.perf_counter()
        image = to_rgb(open_upload(path))  # as the app keeps it: full resolution
        edit(editor, image, args.instruction, default_options(editor, seed=i))
        times.append(time.perf_counter() - start)
    return times[1:]

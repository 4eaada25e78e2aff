"""The app in headless Chromium (Playwright): upload an example, type, pick a keyword, run, watch it stream.

Needs Debian's chromium at /usr/bin/chromium (or CHROMIUM=path). Runs on a tiny random model unless
EDITMGT_BROWSER_MODEL names a model folder. The README's screenshot is made with

    EDITMGT_BROWSER_MODEL=assets/default-model EDITMGT_SCREENSHOT=assets/screenshot.png pytest tests/test_browser.py

(the test itself writes only under tmp_path; EDITMGT_SCREENSHOT copies its screenshot there).
"""

import os
import shutil
import socket
import time
from pathlib import Path

import pytest
from tiny_model import make_model_folder

import app
from editmgt_core.model.loading import load_editor
from editmgt_core.studio.compute import ComputeThread

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore:::gradio.queueing")]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
        "--disable-component-update", "--disable-sync", "--disable-quic"]  # fmt: skip
EXAMPLE = app.EXAMPLES / "recolor-yellow-circle.png"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    if not Path(CHROMIUM).exists():  # CI installs it (.ci/run); elsewhere say what is missing
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    model = os.environ.get("EDITMGT_BROWSER_MODEL") or make_model_folder(tmp_path_factory.mktemp("tiny"))
    editor = load_editor(model)
    demo = app.build_app(editor, frame_interval=0.0, out_dir=tmp_path_factory.mktemp("downloads"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, local_url, _ = app.launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    yield local_url
    demo.close()


@pytest.fixture
def page(url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(60_000)
        page.goto(url, wait_until="load")
        page.wait_for_selector("#image-in canvas")  # the editor is ready to take an upload
        yield page
        browser.close()


def upload(page, path):
    page.locator("#image-in input[type=file]").set_input_files(str(path))
    page.wait_for_function("() => !document.querySelector('#image-in').innerText.includes('Upload an image')")


def test_edit_streams_frames_and_ends_with_the_slider(page, tmp_path):
    upload(page, EXAMPLE)
    page.locator("#instruction textarea").fill("Paint the yellow circle green")
    page.locator("#keywords label", has_text="circle").click()
    assert page.locator("#keywords input:checked").count() == 1
    page.locator("#steps input[type=number]").fill("12")
    page.locator("#lam input[type=number]").fill("0.2")  # region hold on: the map is computed, shown and held by
    page.evaluate("""() => {  // record every frame the live canvas shows
        window.frames_seen = new Set();
        setInterval(() => {
            const img = document.querySelector('#live-canvas img');
            if (img && img.src) window.frames_seen.add(img.src);
        }, 10);
    }""")
    started = time.monotonic()
    page.locator("#run").click()
    page.wait_for_selector("#result img", timeout=120_000)
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('Done')")
    assert page.evaluate("window.frames_seen.size") >= 3, "the live canvas did not change between steps"
    assert "12 steps" in page.locator("#status").inner_text() and page.locator("#scrubber").is_visible()
    assert page.locator("#history img").count() == 1
    shot = tmp_path / "studio.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000 and time.monotonic() - started < 120
    if os.environ.get("EDITMGT_SCREENSHOT"):
        shutil.copy(shot, os.environ["EDITMGT_SCREENSHOT"])


def test_a_brush_stroke_restricts_the_edit(page):
    upload(page, EXAMPLE)
    box = page.locator("#image-in canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 30, y)  # the brush is the active tool after an upload
    page.mouse.down()
    for dx in range(-30, 31, 5):
        page.mouse.move(x + dx, y + dx / 3)
    page.mouse.up()
    page.locator("#instruction textarea").fill("make the circle red")
    page.locator("#steps input[type=number]").fill("4")
    page.locator("#lam input[type=number]").fill("0")
    page.locator("#run").click()
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('Done')", timeout=120_000)
    held = int(page.locator("#status").inner_text().split("seed")[1].split("·")[1].split("%")[0])
    assert 50 < held < 100  # at λ = 0 only the brush holds tokens: everything but the stroke


def status_has(page, text, timeout=120_000):
    page.wait_for_function("t => document.querySelector('#status').innerText.includes(t)", arg=text, timeout=timeout)


def test_a_large_png_is_edited_at_its_own_resolution(page, tmp_path):
    """A 4000x3000 PNG of 36 MB: handed on at its own size (no note) and edited, no hang (the download's size is
    checked through the API, test_app); beyond the page's pixel limit an upload is refused with a note."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    big = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)).save(big, compress_level=1)
    assert big.stat().st_size > 25e6
    upload(page, big)
    assert page.locator("#upload-note").inner_text() == ""
    page.locator("#instruction textarea").fill("make the circle red")
    page.locator("#steps input[type=number]").fill("2")
    page.locator("#run").click()
    status_has(page, "Done")
    assert page.locator("#result img").count() >= 1
    huge = tmp_path / "huge.png"
    Image.new("RGB", (5000, 4000)).save(huge)
    page.locator("#image-in input[type=file]").set_input_files(str(huge))
    page.wait_for_function("() => document.querySelector('#upload-note').innerText.includes('the limit is 16')")


@pytest.mark.parametrize("how", ["drop", "paste"])
def test_a_dropped_or_pasted_large_image_reaches_the_editor(page, url, how):
    """Drag-and-drop and the editor's Paste button take the upload's path: a 3000x2000 image made in the page
    reaches the editor at its own size, and an edit runs on it."""
    if how == "paste":
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url.rstrip("/"))
    page.evaluate(
        """async (how) => {
          const canvas = new OffscreenCanvas(3000, 2000);
          const g = canvas.getContext('2d');
          g.fillStyle = '#3060c0'; g.fillRect(0, 0, 3000, 2000);
          g.fillStyle = '#e0c020'; g.fillRect(900, 600, 900, 700);
          const blob = await canvas.convertToBlob({type: 'image/png'});
          if (how === 'paste') { await navigator.clipboard.write([new ClipboardItem({'image/png': blob})]); return; }
          const files = new DataTransfer();
          files.items.add(new File([blob], 'big.png', {type: 'image/png'}));
          document.querySelector('#image-in [data-testid="image"]').dispatchEvent(
            new DragEvent('drop', {bubbles: true, cancelable: true, composed: true, dataTransfer: files}));
        }""",
        how,
    )
    if how == "paste":
        page.locator("#image-in button[aria-label=Paste]").click()
    page.wait_for_function("() => !document.querySelector('#image-in').innerText.includes('Upload an image')")
    page.locator("#instruction textarea").fill("make the circle red")
    page.locator("#steps input[type=number]").fill("2")
    page.locator("#run").click()
    status_has(page, "Done")
    assert page.locator("#result img").count() >= 1


def test_an_undecodable_upload_says_so(page, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image")
    page.locator("#image-in input[type=file]").set_input_files(str(fake))
    page.wait_for_function("() => document.querySelector('#upload-note').innerText.includes('could not be decoded')")


def slow_steps(monkeypatch):
    prefetch = ComputeThread.prefetch
    slow = lambda self, items, depth=2: prefetch(self, (time.sleep(0.2) or i for i in items), depth)  # noqa: E731
    monkeypatch.setattr(ComputeThread, "prefetch", slow)


def test_a_new_run_clears_the_old_result_and_stop_says_where_it_ended(page, monkeypatch):
    slow_steps(monkeypatch)  # (the server runs in this process) steps take 0.2 s: time to press Stop
    upload(page, EXAMPLE)
    page.locator("#instruction textarea").fill("make the circle red")
    page.locator("#steps input[type=number]").fill("2")
    page.locator("#run").click()
    status_has(page, "Done")
    assert page.locator("#result img").count() >= 1 and page.locator("#used-seed input").input_value() != ""
    page.locator("#steps input[type=number]").fill("64")
    page.locator("#run").click()
    status_has(page, "Step ")  # streaming: the last run's result, seed and files are gone
    assert page.locator("#result img").count() == 0 and page.locator("#used-seed input").input_value() == ""
    page.locator("#stop").click()
    status_has(page, "Stopped at step", timeout=30_000)
    page.locator("#steps input[type=number]").fill("2")
    page.locator("#run").click()  # the page still takes edits
    status_has(page, "Done")


def test_the_sweep_stops_and_explores_again(page, monkeypatch):
    slow_steps(monkeypatch)  # (the server runs in this process) steps take 0.2 s: time to press Stop
    upload(page, EXAMPLE)
    page.locator("#instruction textarea").fill("make the circle red")
    page.locator("#steps input[type=number]").fill("64")
    page.get_by_role("tab", name="Threshold exploration").click()
    page.locator("#sweep").click()
    sweep_has = lambda text, timeout=120_000: page.wait_for_function(  # noqa: E731
        "t => document.querySelector('#sweep-status').innerText.includes(t)", arg=text, timeout=timeout)
    sweep_has("step ")
    page.locator("#sweep-stop").click()
    sweep_has("Stopped at", timeout=30_000)
    page.locator("#steps input[type=number]").fill("1")
    page.locator("#sweep").click()  # the page still takes sweeps
    sweep_has("Done")
    assert page.locator("#grid img").count() >= 4  # the default four λ values


def test_history_restores_the_input_and_chips_follow_the_instruction(page):
    upload(page, EXAMPLE)
    page.locator("#instruction textarea").fill("Paint the yellow circle green")
    page.locator("#keywords label", has_text="circle").click()
    page.locator("#steps input[type=number]").fill("2")
    page.locator("#run").click()
    status_has(page, "Done")
    page.locator("#instruction textarea").fill("make the circle blue")  # a new instruction: no stale ticks
    page.wait_for_function("() => document.querySelectorAll('#keywords input').length === 4", timeout=10_000)
    assert page.locator("#keywords input:checked").count() == 0
    page.locator("#history img").first.click()
    status_has(page, "Restored the input", timeout=30_000)
    assert page.locator("#instruction textarea").input_value() == "Paint the yellow circle green"
    page.wait_for_function("() => document.querySelectorAll('#keywords input').length === 5", timeout=10_000)
    time.sleep(1)  # the chips' own update after the restore must keep the restored tick
    assert page.locator("#keywords input:checked").count() == 1

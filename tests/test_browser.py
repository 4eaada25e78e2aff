"""The app in headless Chromium (Playwright): the page's runs as a user meets them. An edit streams and ends in one
state; Stop while queued, encoding or decoding ends with "Stopped …" and the previous result back, never an error
badge; Edit right after Stop runs; a restore brings back a whole run; refusals and bad input replace the status; a
queued edit says so with its position; the first view at 1280x800 holds the image, the instruction, Edit/Stop and
the live canvas; Ctrl+Enter edits and Esc stops.

Needs Debian's chromium at /usr/bin/chromium (or CHROMIUM=path). Runs on a tiny random model unless
EDITMGT_BROWSER_MODEL names a model folder. Slow phases are made observable without timing: the `hold` fixture
holds the edit's stream at a chosen item (the server runs in this process) until the test releases it, so
"encoding" or "step k" lasts exactly as long as the test needs. The README's screenshot is made with

    EDITMGT_BROWSER_MODEL=assets/default-model EDITMGT_SCREENSHOT=assets/screenshot.png pytest tests/test_browser.py

(the test itself writes only under tmp_path; EDITMGT_SCREENSHOT copies its screenshot there).
"""

import dataclasses
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_model import make_model_folder

import app
from editmgt_core.edit.files import read_parameters
from editmgt_core.model.loading import load_editor

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore:::gradio.queueing")]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-quic"]  # fmt: skip
EXAMPLE = app.EXAMPLES / "recolor-yellow-circle.png"
# The words the test model "knows": an instruction with others is out of its domain (a warning, or Strict refuses).
WORDS = ["make", "the", "circle", "red", "blue", "green", "paint", "yellow", "it", "square"]
LONG = 60_000  # ms: a condition a loaded 2-core machine reaches in seconds


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():  # CI installs it (.ci/run); elsewhere say what is missing
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    model = os.environ.get("EDITMGT_BROWSER_MODEL") or make_model_folder(tmp_path_factory.mktemp("tiny"))
    editor = load_editor(model)
    if not os.environ.get("EDITMGT_BROWSER_MODEL"):  # a domain, so that Strict has something to refuse
        domain = {"trained_on": "test shapes", "vocabulary": WORDS}
        editor = dataclasses.replace(editor, settings=dataclasses.replace(editor.settings, domain=domain))
    downloads = tmp_path_factory.mktemp("downloads")
    demo = app.build_app(editor, frame_interval=0.0, out_dir=downloads, concurrency=1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, local_url, _ = app.launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    yield local_url, downloads
    demo.close()


@pytest.fixture(scope="module")
def url(server):
    return server[0]


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def open_page(browser, url, width=1280, height=800):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(LONG)
    page.goto(url, wait_until="load")
    page.wait_for_selector("#image-in canvas")  # the editor is ready to take an upload
    return page


@pytest.fixture
def page(browser, url):
    page = open_page(browser, url)
    yield page
    page.close()


class Hold:
    """Holds every edit's stream before item `at` (0: before the first step reaches the page, so the page shows
    "Encoding"; k: after step k is shown) until `release()`; `at = None` holds nothing."""

    def __init__(self):
        self.at, self.reached, self._open = None, threading.Event(), threading.Event()

    def wrap(self, items):
        for i, item in enumerate(items):
            if i == self.at:
                self.reached.set()
                self._open.wait(timeout=LONG / 1000)
            yield item

    def release(self):
        self.at = None
        self._open.set()


@pytest.fixture
def hold(monkeypatch):
    held, prefetch = Hold(), app.compute.prefetch
    monkeypatch.setattr(app.compute, "prefetch", lambda items, depth=2: prefetch(held.wrap(items), depth))
    yield held
    held.release()


# ---------------------------------------------------------------------------------------------------- helpers


def upload(page, path):
    page.locator("#image-in input[type=file]").set_input_files(str(path))
    page.wait_for_function("() => !document.querySelector('#image-in').innerText.includes('Upload an image')")


def status_has(page, text, timeout=LONG, where="#status"):
    page.wait_for_function("([w, t]) => document.querySelector(w).innerText.includes(t)", arg=[where, text],
                           timeout=timeout)  # fmt: skip
    return page.locator(where).inner_text()


def status(page) -> str:
    return page.locator("#status").inner_text()


def seed_shown(page) -> str:
    return page.locator("#used-seed textarea, #used-seed input").first.input_value()


def number(page, elem_id, value):
    page.locator(f"#{elem_id} input[type=number]").fill(str(value))


def prepare(page, instruction="make the circle red", steps=2):
    upload(page, EXAMPLE)
    page.locator("#instruction textarea").fill(instruction)
    number(page, "steps", steps)


def edit(page, done=True):
    page.locator("#run").click()
    if done:
        return status_has(page, "Done")


def no_error_badges(page):
    """No component shows gradio's error state, no error toast."""
    found = page.evaluate("""() => [...document.querySelectorAll('.error, .toast-body.error')]
        .filter(e => e.offsetParent !== null && /error/i.test(e.textContent)).map(e => e.textContent.trim())""")
    assert found == [], f"error badges on the page: {found}"


def downloads_by_seed(downloads: Path, seed: str) -> list[Path]:
    return sorted(downloads.glob(f"editmgt-{seed}-*.png"), key=lambda p: p.stat().st_mtime)


# ---------------------------------------------------------------------------------------------------- a run


def test_edit_streams_frames_and_ends_with_the_slider(browser, url, tmp_path):
    page = open_page(browser, url, 1400, 1100)
    upload(page, EXAMPLE)
    page.locator("#instruction textarea").fill("Paint the yellow circle green")
    page.locator("#keywords label", has_text="circle").click()
    assert page.locator("#keywords input:checked").count() == 1
    number(page, "steps", 12)
    number(page, "lam", 0.2)  # region hold on: the map is computed, shown and held by
    page.evaluate("""() => {  // record every frame the live canvas shows
        window.frames_seen = new Set();
        setInterval(() => {
            const img = document.querySelector('#live-canvas img');
            if (img && img.src) window.frames_seen.add(img.src);
        }, 10);
    }""")
    edit(page)
    assert page.evaluate("window.frames_seen.size") >= 3, "the live canvas did not change between steps"
    assert "12 steps" in status(page) and page.locator("#scrubber").is_visible()
    assert page.locator("#history img").count() == 1 and page.locator("#result img").count() >= 1
    shot = tmp_path / "studio.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("EDITMGT_SCREENSHOT"):
        shutil.copy(shot, os.environ["EDITMGT_SCREENSHOT"])
    page.close()


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
    number(page, "steps", 4)
    number(page, "lam", 0)
    text = edit(page)
    held = int(text.split("seed")[1].split("·")[1].split("%")[0])
    assert 50 < held < 100  # at λ = 0 only the brush holds tokens: everything but the stroke


def test_a_large_png_is_downscaled_in_the_browser_and_edited(page, tmp_path):
    """A 4000x3000 PNG over the 25 MB upload limit: prepared in the page, uploaded small, edited, no hang."""
    rng = np.random.default_rng(0)
    big = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)).save(big, compress_level=1)
    assert big.stat().st_size > 25e6  # as sent unchanged, the server would refuse it (HTTP 413)
    upload(page, big)
    assert "is 4000x3000: downscaled to 1024x768 in the browser" in page.locator("#upload-note").inner_text()
    page.locator("#instruction textarea").fill("make the circle red")
    number(page, "steps", 2)
    edit(page)
    assert page.locator("#result img").count() >= 1


@pytest.mark.parametrize("how", ["drop", "paste"])
def test_a_dropped_or_pasted_large_image_is_downscaled_in_the_browser(page, url, how):
    """Drag-and-drop and the editor's Paste button take the upload's path: a 3000x2000 image made in the page
    reaches the editor at 1024 px with the note, and an edit runs on it."""
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
    status_has(page, "is 3000x2000: downscaled to 1024x683 in the browser", where="#upload-note")
    page.wait_for_function("() => !document.querySelector('#image-in').innerText.includes('Upload an image')")
    page.locator("#instruction textarea").fill("make the circle red")
    number(page, "steps", 2)
    edit(page)
    assert page.locator("#result img").count() >= 1


def test_an_undecodable_upload_says_so(page, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image")
    page.locator("#image-in input[type=file]").set_input_files(str(fake))
    status_has(page, "could not be decoded", where="#upload-note")


# ---------------------------------------------------------------------------------------------------- Stop


def test_stop_while_encoding_ends_stopped_without_error_badges_and_edit_runs_again(page, hold):
    prepare(page, steps=12)
    hold.at = 0  # the first step never reaches the page: it stays "Encoding"
    edit(page, done=False)
    status_has(page, "Encoding")
    page.locator("#stop").click()
    status_has(page, "Stopping while encoding")
    hold.release()
    text = status_has(page, "Stopped while encoding")
    assert "Nothing was kept" in text and page.locator("#result img").count() == 0 and seed_shown(page) == ""
    no_error_badges(page)
    edit(page)  # the page still takes edits
    no_error_badges(page)


def test_stop_while_decoding_keeps_the_previous_result_and_says_so(page, hold, server):
    prepare(page)
    edit(page)
    first_seed = seed_shown(page)
    assert first_seed and page.locator("#result img").count() >= 1
    number(page, "steps", 12)
    hold.at = 3
    edit(page, done=False)
    status_has(page, "Step 3/12")  # streaming: one run on screen, the previous result is not shown beside it
    assert page.locator("#result img").count() == 0 and seed_shown(page) == ""
    page.locator("#stop").click()
    status_has(page, "Stopping at step 3/12")
    hold.release()
    text = status_has(page, "Stopped at step 3/12")
    assert f"seed {first_seed}" in text and "previous result again" in text
    page.wait_for_function("() => document.querySelectorAll('#result img').length > 0")
    assert seed_shown(page) == first_seed and page.locator("#history img").count() == 1
    assert page.locator("#files a").count() == 2  # the previous run's downloads
    no_error_badges(page)


def test_edit_right_after_stop_runs_the_new_edit_and_the_stopped_one_says_nothing(page, hold):
    prepare(page, steps=12)
    hold.at = 2
    edit(page, done=False)
    status_has(page, "Step 2/12")
    page.locator("#stop").click()
    status_has(page, "Stopping")
    number(page, "steps", 3)
    page.locator("#run").click()  # before the stopped run has ended: it is superseded
    status_has(page, "Queued")
    hold.release()
    text = status_has(page, "Done")
    assert "3 steps" in text and "Stopped" not in status(page)
    assert page.locator("#history img").count() == 1
    no_error_badges(page)


def test_a_queued_edit_shows_its_place_and_stop_takes_it_out(browser, url, page, hold):
    """Concurrency 1: while another page's edit runs, this page's edit waits in the queue and says so."""
    other = open_page(browser, url)
    try:
        prepare(other, steps=4)
        hold.at = 0
        edit(other, done=False)
        status_has(other, "Encoding")
        prepare(page, steps=2)
        edit(page, done=False)
        status_has(page, "Queued")
        page.wait_for_function("() => /queue:?\\s*1\\s*\\/\\s*1/.test(document.querySelector('#status').innerText)")
        page.locator("#stop").click()
        status_has(page, "Stopped while queued")
        hold.release()
        status_has(other, "Done")
        assert "Stopped while queued" in status(page) and page.locator("#result img").count() == 0
        edit(page)  # and the page edits again
        no_error_badges(page)
        no_error_badges(other)
    finally:
        other.close()


# ---------------------------------------------------------------------------------------------------- restore


def test_restore_brings_back_a_whole_run_and_edit_reproduces_it(page, server):
    downloads = server[1]
    prepare(page, "Paint the yellow circle green", steps=3)
    page.locator("#map-view label").first.click()
    number(page, "lam", 0.2)
    page.locator("#randomize input").uncheck()
    number(page, "seed", 4242)
    edit(page)
    first_files = page.locator("#files a").all_inner_texts()
    page.locator("#instruction textarea").fill("make the square blue")  # run B: other words, map, λ, steps, seed
    page.locator("#map-view label").last.click()
    number(page, "lam", 0.5)
    number(page, "steps", 2)
    number(page, "seed", 7)
    edit(page)
    page.locator("#history img").first.click()
    text = status_has(page, "Restored result #1")
    assert "seed 4242" in text and seed_shown(page) == "4242"
    assert page.locator("#instruction textarea").input_value() == "Paint the yellow circle green"
    assert page.locator("#lam input[type=number]").input_value() == "0.2"
    assert page.locator("#steps input[type=number]").input_value() == "3"
    assert page.locator("#map-view input:checked").evaluate("e => e.value") == \
        page.locator("#map-view input").first.evaluate("e => e.value")  # fmt: skip
    assert page.locator("#files a").all_inner_texts() == first_files  # run A's downloads, not B's
    assert page.locator("#scrubber").is_visible()
    edit(page)  # Edit after a restore: the same seed, the same pixels
    first, again = downloads_by_seed(downloads, "4242")[-2:]
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))
    assert read_parameters(first)["source_sha256"] == read_parameters(again)["source_sha256"]


def test_history_restores_the_keywords_and_chips_follow_the_instruction(page):
    prepare(page, "Paint the yellow circle green")
    page.locator("#keywords label", has_text="circle").click()
    edit(page)
    page.locator("#instruction textarea").fill("make the circle blue")  # a new instruction: no stale ticks
    page.wait_for_function("() => document.querySelectorAll('#keywords input').length === 4")
    assert page.locator("#keywords input:checked").count() == 0
    page.locator("#history img").first.click()
    status_has(page, "Restored result #1")
    assert page.locator("#instruction textarea").input_value() == "Paint the yellow circle green"
    page.wait_for_function("() => document.querySelectorAll('#keywords input').length === 5")
    page.wait_for_function("() => document.querySelectorAll('#keywords input:checked').length === 1")


# ---------------------------------------------------------------------------------------------------- refusals


def test_a_refusal_or_bad_input_after_an_edit_replaces_the_status(page, tmp_path):
    prepare(page)
    done = edit(page)
    assert done.startswith("Done")
    page.locator("#strict input").check()
    page.locator("#instruction textarea").fill("draw a dragon")
    edit(page, done=False)
    text = status_has(page, "Refused")
    assert "dragon" in text and "Strict" in text and "Done" not in text and "previous result" in text
    Image.new("RGB", (1, 1), (200, 30, 30)).save(tmp_path / "dot.png")
    upload(page, tmp_path / "dot.png")
    page.locator("#instruction textarea").fill("make it red")
    edit(page, done=False)
    text = status_has(page, "Not edited")
    assert "at least 8x8" in text and "Refused" not in text
    no_error_badges(page)


def test_the_sweep_is_a_table_stops_and_says_what_was_wrong(page, hold):
    prepare(page, steps=6)
    page.get_by_role("tab", name="Threshold exploration").click()
    page.locator("#lam-values textarea, #lam-values input").first.fill("0, 0.5, 1")
    page.locator("#gamma-values textarea, #gamma-values input").first.fill("1, 2")
    page.locator("#sweep").click()
    status_has(page, "Done", where="#sweep-status")
    assert page.locator("#grid table tr").count() == 3  # a header row, then one row per γ
    assert page.locator("#grid table tr").nth(1).locator("img").count() == 3  # one column per λ
    assert "Δ outside hold" in page.locator("#grid").inner_text()  # the legend explains it
    hold.at = 3
    page.locator("#sweep").click()
    status_has(page, "step 3/6", where="#sweep-status")
    page.locator("#sweep-stop").click()
    hold.release()
    status_has(page, "Stopped", where="#sweep-status")
    page.locator("#lam-values textarea, #lam-values input").first.fill("zero")
    page.locator("#sweep").click()
    text = status_has(page, "Not explored", where="#sweep-status")
    assert "write numbers separated by commas" in text
    no_error_badges(page)


# ---------------------------------------------------------------------------------------------------- one screen


def test_at_1280x800_the_first_view_holds_image_instruction_buttons_and_canvas(page, tmp_path):
    page.locator("#examples tbody tr").first.click()  # the usual path: an example, then Edit
    page.wait_for_function("() => document.querySelector('#instruction textarea').value.length > 0")
    for elem_id in ("image-in", "instruction", "run", "stop", "live-canvas", "status"):
        box = page.locator(f"#{elem_id}").bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= 800 and box["x"] + box["width"] <= 1280, elem_id
    page.screenshot(path=str(tmp_path / "first-view.png"))
    edit(page)
    assert page.evaluate("window.scrollY") == 0  # the result streamed where the user was looking


def test_ctrl_enter_edits_and_escape_stops(page, hold):
    prepare(page, steps=12)
    page.locator("#instruction textarea").press("Control+Enter")
    status_has(page, "Done")
    hold.at = 2
    page.locator("#instruction textarea").press("Control+Enter")
    status_has(page, "Step 2/12")
    page.keyboard.press("Escape")
    status_has(page, "Stopping")
    hold.release()
    status_has(page, "Stopped at step 2/12")
    no_error_badges(page)

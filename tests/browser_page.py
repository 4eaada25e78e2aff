"""What the browser tests share: the app served on a tiny model in this process, Chromium, a hold on the edit's
stream, and the page actions the tests repeat (upload, type, edit, wait for a status).

Needs Debian's chromium at /usr/bin/chromium (or CHROMIUM=path). Runs on a tiny random model unless
EDITMGT_BROWSER_MODEL names a model folder. Slow phases are made observable without timing: `Hold` holds the edit's
stream at a chosen item (the server runs in this process) until the test releases it, so "encoding" or "step k"
lasts exactly as long as the test needs. Every wait is on a condition in the page, none on the clock.
"""

import dataclasses
import os
import socket
import threading
from pathlib import Path

import pytest
from tiny_model import make_model_folder

from editmgt_core.app import server as app
from editmgt_core.model.loading import load_editor
from editmgt_core.studio.compute import ComputeThread

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
EXAMPLE = app.EXAMPLES / "recolor-yellow-circle.png"
# The words the test model "knows": an instruction with others is out of its domain (a warning, or Strict refuses).
WORDS = ["make", "the", "circle", "red", "blue", "green", "paint", "yellow", "it", "square"]
LONG = 60_000  # ms: a condition a loaded 2-core machine reaches in seconds


def serve(tmp_path_factory):
    """(url, downloads folder) of the app on the test model, concurrency 1; closed after the yield."""
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


def chromium():
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


def holding(monkeypatch):
    held, prefetch = Hold(), ComputeThread.prefetch
    monkeypatch.setattr(ComputeThread, "prefetch", lambda self, items, depth=2: prefetch(self, held.wrap(items), depth))
    yield held
    held.release()


# ---------------------------------------------------------------------------------------------------- page actions


def upload(page, path):
    page.locator("#image-in input[type=file]").set_input_files(str(path))
    page.wait_for_function("() => !document.querySelector('#image-in').innerText.includes('Upload an image')")


def status_has(page, text, timeout=LONG, where="#status"):
    page.wait_for_function(
        "([w, t]) => document.querySelector(w).innerText.includes(t)", arg=[where, text], timeout=timeout
    )
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
    """Press Edit; done: wait for this run's result (a new history entry with "Done"), not an earlier "Done"."""
    before = page.locator("#history img").count()
    page.locator("#run").click()
    if done:
        page.wait_for_function(
            "n => document.querySelectorAll('#history img').length > n && "
            "document.querySelector('#status').innerText.includes('Done')",
            arg=before,
        )
        return status(page)


def no_error_badges(page):
    """No component shows gradio's error state, no error toast."""
    found = page.evaluate("""() => [...document.querySelectorAll('.error, .toast-body.error')]
        .filter(e => e.offsetParent !== null && /error/i.test(e.textContent)).map(e => e.textContent.trim())""")
    assert found == [], f"error badges on the page: {found}"


def downloads_by_seed(downloads: Path, seed: str) -> list[Path]:
    return sorted(downloads.glob(f"editmgt-{seed}-*.png"), key=lambda p: p.stat().st_mtime)


# ---------------------------------------------------------------------------------------------------- fixtures
# (the browser test modules import these: one served studio and one Chromium per module)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory)


@pytest.fixture(scope="module")
def url(server):
    return server[0]


@pytest.fixture(scope="module")
def browser(server):
    yield from chromium()


@pytest.fixture
def page(browser, url):
    page = open_page(browser, url)
    yield page
    page.close()

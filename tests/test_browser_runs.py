"""The page's runs in headless Chromium, as a user meets them: an edit ends in one state; Stop while queued,
encoding or decoding ends with "Stopped …" and the previous result back, never an error badge; Edit right after Stop
runs; a restore brings back a whole run and Edit reproduces it; refusals and bad input replace the status; a queued
edit says so with its place; the sweep is a table; the first view at 1280x800 holds the image, the instruction,
Edit/Stop and the live canvas; Ctrl+Enter edits and Esc stops. Shared setup and page actions: browser_page.py.
"""

import numpy as np
import pytest
from browser_page import (
    downloads_by_seed,
    edit,
    holding,
    no_error_badges,
    number,
    open_page,
    prepare,
    seed_shown,
    status,
    status_has,
    upload,
)
from PIL import Image

from editmgt_core.edit.files import read_parameters

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore:::gradio.queueing")]


@pytest.fixture
def hold(monkeypatch):
    yield from holding(monkeypatch)


# ---------------------------------------------------------------------------------------------------- Stop


def test_stop_while_encoding_ends_stopped_without_error_badges_and_edit_runs_again(page, hold):
    prepare(page, steps=12)
    hold.at = 0  # the first step never reaches the page: it stays "Encoding"
    edit(page, done=False)
    status_has(page, "Encoding")
    page.locator("#stop").click()
    status_has(page, "Stopping at encoding")
    hold.release()
    text = status_has(page, "Stopped at encoding")
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
        status_has(page, "Stopped at its place in the queue")
        hold.release()
        status_has(other, "Done")
        assert "Stopped at its place in the queue" in status(page) and page.locator("#result img").count() == 0
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
    assert page.locator("#map-view input:checked").evaluate("e => e.value") == page.locator(
        "#map-view input"
    ).first.evaluate("e => e.value")
    assert page.locator("#files a").all_inner_texts() == first_files  # run A's downloads, not B's
    assert page.locator("#scrubber").is_visible()
    done = edit(page)  # Edit after a restore: the same seed, the same pixels
    assert "seed 4242" in done, done
    saved = downloads_by_seed(downloads, "4242")
    assert len(saved) == 2, (done, sorted(p.name for p in downloads.iterdir()))
    first, again = saved
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


def in_view(page, elem_id) -> bool:
    box = page.locator(f"#{elem_id}").bounding_box()
    return bool(box) and box["y"] > -1 and box["y"] + box["height"] <= 801 and box["x"] + box["width"] <= 1280


def test_at_1280x800_the_first_view_holds_image_instruction_buttons_and_canvas(page, tmp_path):
    for elem_id in ("image-in", "instruction", "run", "stop", "live-canvas", "status"):
        assert in_view(page, elem_id), f"#{elem_id} is not in the first view"
    page.screenshot(path=str(tmp_path / "first-view.png"))
    number(page, "steps", 2)
    page.locator("#examples tbody tr").last.click()  # the usual path: scroll to an example, click it, press Edit
    page.wait_for_function("() => document.querySelector('#instruction textarea').value.length > 0")
    assert not in_view(page, "live-canvas")  # the example was below the first view
    edit(page)
    assert in_view(page, "status") and in_view(page, "live-canvas"), "the edit ran out of sight"


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

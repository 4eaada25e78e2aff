"""The app in-process on a tiny model, driven through gradio_client (and its UI handlers called directly)."""

import dataclasses
import socket
import threading
import time

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from test_studio import picture, png_header_only
from tiny_model import make_model_folder

from editmgt_core.app import handlers as app_handlers
from editmgt_core.app import server as app
from editmgt_core.edit.editing import default_options, edit
from editmgt_core.edit.files import read_parameters
from editmgt_core.model.loading import load_editor
from editmgt_core.studio import compute, domain, streaming, validate

pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")  # pandas 3 deprecations inside gradio
FAST = dict(steps=3, guidance_scale=2.0, negative_prompt="", lam=0.3, seed=5)
QUICK = dict(steps=1, guidance_scale=2.0, negative_prompt="")


@pytest.fixture(scope="module")
def editor(tmp_path_factory):
    return load_editor(make_model_folder(tmp_path_factory.mktemp("tiny")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url(editor, tmp_path_factory):
    demo = app.build_app(editor, concurrency=2, frame_interval=0.0, out_dir=tmp_path_factory.mktemp("downloads"))
    _, local_url, _ = app.launch(demo, "127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True)
    yield local_url
    demo.close()


@pytest.fixture(scope="module")
def client(url):
    return Client(url, verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good and bad input files by name."""
    d = tmp_path_factory.mktemp("inputs")
    picture(40, 32, seed=1).save(d / "photo.png")
    (d / "notes.png").write_text("this is not an image")
    (d / "cut.png").write_bytes((d / "photo.png").read_bytes()[:-1500])
    png_header_only(d / "huge.png", 8000, 6000)
    png_header_only(d / "bomb.png", 40000, 40000)
    picture(1, 1).save(d / "dot.png")
    picture(1000, 10).save(d / "sliver.png")
    Image.fromarray((np.arange(32 * 32, dtype=np.uint16) * 60).reshape(32, 32)).save(d / "sixteen.png")
    picture(32, 32, "CMYK").save(d / "cmyk.jpg")
    picture(32, 32, "P").save(d / "palette.png")
    picture(32, 32, "RGBA").save(d / "alpha.png")
    return d


def run(client, path, instruction="make the circle red", **kw):
    job = client.submit(handle_file(str(path)), instruction, **{**FAST, **kw}, api_name="/edit")
    job.result(timeout=120)
    return job.outputs()


def same(path, image) -> bool:
    return np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(image))


def test_streamed_edit_gives_every_step_then_the_same_result_as_edit(client, editor, files):
    outputs = run(client, files / "photo.png")
    (started, *steps), (png, info) = outputs[:-1], outputs[-1]
    assert started[1] == {"step": 0, "num_steps": 3, "held_fraction": 0.0, "preview": None, "warnings": []}
    assert [s[1]["step"] for s in steps] == [1, 2, 3] and all(s[1]["num_steps"] == 3 for s in steps)
    assert all(s[0] is None for s in steps) and info["done"] and info["seed"] == 5
    assert steps[-1][1]["preview"] is None  # the last step is the result itself
    expected = edit(editor, Image.open(files / "photo.png"), "make the circle red", default_options(editor, **FAST))
    assert same(png, expected.image)
    assert read_parameters(png)["lam"] == 0.3


def test_sweep_returns_one_cell_per_value(client, files):
    job = client.submit(
        handle_file(str(files / "photo.png")),
        "make the circle red",
        lam_values="0, 0.3, 1",
        gamma_values="1, 1.5",
        **{**FAST, "lam": 0},
        api_name="/sweep",
    )
    cells, summary = job.result(timeout=120)
    assert len(cells) == 6 and summary["done"] and summary["seed"] == 5
    assert len(job.outputs()) == 6  # one update per finished cell
    assert [(c["gamma"], c["lam"]) for c in summary["cells"]][:3] == [(1.0, 0.0), (1.0, 0.3), (1.0, 1.0)]
    assert summary["cells"][2]["held_fraction"] == 1.0 and "λ=1 γ=1" in cells[2]["caption"]


BAD = {
    "no image": (None, {}, "no image"),
    "empty instruction": ("photo.png", {"instruction": ""}, "instruction is empty"),
    "blank instruction": ("photo.png", {"instruction": " \n\t "}, "instruction is empty"),
    "not an image": ("notes.png", {}, "not an image"),
    "truncated": ("cut.png", {}, "damaged or truncated"),
    "over the hard cap": ("huge.png", {}, "refused"),
    "decompression bomb": ("bomb.png", {}, "refused"),
    "1x1": ("dot.png", {}, "at least 8x8"),
    "aspect ratio": ("sliver.png", {}, "aspect ratio"),
    "10,000 characters": ("photo.png", {"instruction": "make it red " * 910}, "at most 1,000"),
    "keyword not in the instruction": ("photo.png", {"keywords": "dog"}, "'dog' are not words of the instruction"),
    "steps": ("photo.png", {"steps": 10_000}, "steps=10000"),
    "fractional steps": ("photo.png", {"steps": 2.5}, "integer"),
    "lam": ("photo.png", {"lam": 5}, "lam=5"),
    "gamma": ("photo.png", {"gamma": -1}, "gamma=-1"),
    "guidance": ("photo.png", {"guidance_scale": 1e9}, "guidance_scale"),
    "temperature": ("photo.png", {"temperature_start": -1}, "temperature"),
    "resolution": ("photo.png", {"resolution": 100_000}, "resolution"),
    "layers": ("photo.png", {"layers": "99"}, "attention layers"),
    "mask mode": ("photo.png", {"mask_mode": "blur"}, "mask_mode"),
    "seed": ("photo.png", {"seed": "lucky"}, "seed"),
    "negative seed": ("photo.png", {"seed": -5}, "seed=-5; expected -1 (random)"),
    "layers syntax": ("photo.png", {"layers": "1 -> 2"}, "source rows -> instruction"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_is_a_readable_error_and_the_session_goes_on(client, files, case):
    name, kw, match = BAD[case]
    with pytest.raises(AppError) as err:
        image = None if name is None else handle_file(str(files / name))
        client.predict(image, kw.pop("instruction", "make the circle red"), **{**FAST, **kw}, api_name="/edit")
    text = str(err.value)
    assert match.lower() in text.lower() and not any(bad in text for bad in ("Traceback", "&gt;", "(row", "`"))
    assert run(client, files / "photo.png", **QUICK)[-1][1]["done"]


@pytest.mark.parametrize("name", ["sixteen.png", "cmyk.jpg", "palette.png", "alpha.png"])
def test_unusual_pixel_formats_are_edited(client, files, name):
    png, info = run(client, files / name, **QUICK)[-1]
    assert info["done"] and Image.open(png).mode == "RGB" and Image.open(png).size == (32, 32)


def test_a_large_image_comes_back_at_its_own_resolution_within_the_limit(client, tmp_path, monkeypatch):
    monkeypatch.setattr(validate, "SOFT_PIXELS", 48 * 48)  # the server runs in this process
    picture(96, 64).save(tmp_path / "large.png")
    png, info = run(client, tmp_path / "large.png", **QUICK)[-1]
    assert Image.open(png).size == (96, 64) and info["notice"] is None and info["size"] == [96, 64]
    assert "full resolution 96x64" in read_parameters(png)["resize"]  # the download says so
    monkeypatch.setattr(app_handlers, "FULL_RESOLUTION_PIXELS", 64 * 64)
    with pytest.raises(AppError, match="edited at their own resolution: downscale it first"):
        run(client, tmp_path / "large.png", **QUICK)


def test_sweep_rejects_bad_grids(client, files):
    nine = ", ".join(str(i / 10) for i in range(9))
    for kw, match in [
        ({"lam_values": "0, x"}, "numbers"),
        ({"lam_values": nine, "gamma_values": "1, 2"}, "at most 16"),
        ({"gamma_values": "9"}, "γ values"),
    ]:
        with pytest.raises(AppError, match=match):
            client.predict(handle_file(str(files / "photo.png")), "make it red", **QUICK, **kw, api_name="/sweep")


def test_four_concurrent_clients_get_their_own_results(url, editor, files):
    jobs = [("make the circle red", 11), ("make the square blue", 12), ("add a hat", 13), ("remove the dog", 14)]
    results = {}

    def one(instruction, seed):
        c = Client(url, verbose=False)
        results[seed] = run(c, files / "photo.png", instruction, seed=seed)

    threads = [threading.Thread(target=one, args=j) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert sorted(results) == [11, 12, 13, 14]
    for instruction, seed in jobs:
        png, info = results[seed][-1]  # updates: started, 3 steps, result
        assert info["instruction"] == instruction and info["seed"] == seed and len(results[seed]) == 5
        options = default_options(editor, **{**FAST, "seed": seed})
        assert same(png, edit(editor, Image.open(files / "photo.png"), instruction, options).image)


def test_stop_cancels_between_steps_and_the_next_edit_runs(client, files, monkeypatch):
    produced = []

    def counted(*args, **kwargs):  # the server runs in this process: count the steps its sampler produces
        try:
            for item in real_stream(*args, **kwargs):
                produced.append(item)
                yield item
        finally:
            ended.append(threading.current_thread().name)

    ended = []

    real_stream = streaming.stream
    monkeypatch.setattr(streaming, "stream", counted)
    job = client.submit(
        handle_file(str(files / "photo.png")), "make it red", **{**FAST, "steps": 100}, api_name="/edit"
    )
    next(iter(job))  # the first step arrived
    job.cancel()
    deadline = time.monotonic() + 30
    while not ended and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ended == [compute.NAME], "the cancelled edit still runs (or was closed off the compute thread)"
    assert len(produced) < 100
    assert run(client, files / "photo.png", **QUICK)[-1][1]["done"]


def test_the_queue_looks_for_work_every_10_ms_not_every_millisecond(editor):
    """gradio's queue polls every millisecond by default, which slows a CPU edit by ~30% on 2 cores; calm_queue sets
    its poll attributes. This fails when a gradio release renames them (then calm_queue silently does nothing)."""
    queue = app.build_app(editor)._queue
    assert queue.sleep_when_free == app.QUEUE_POLL and queue.progress_update_sleep_when_free == app.PROGRESS_POLL


def test_the_studios_torch_work_runs_on_its_compute_thread(editor, tmp_path, monkeypatch):
    """Loading, the domain check and every decoding step run on the one compute thread, whichever thread the web
    server calls from (one OpenMP team in the process: compute's docstring says why)."""
    seen = []
    record = lambda what: lambda *args, **kw: seen.append((what, threading.current_thread().name))  # noqa: E731
    real_load, real_vq_error = app.load_editor, domain.vq_error
    monkeypatch.setattr(app, "load_editor", lambda *a, **kw: record("load")() or real_load(*a, **kw))
    monkeypatch.setattr(domain, "vq_error", lambda *a, **kw: record("check")() or real_vq_error(*a, **kw))
    loaded = app.load(make_model_folder(tmp_path / "model"), "cpu")
    checked = dataclasses.replace(loaded, settings=dataclasses.replace(loaded.settings, domain={"vq_error": 1.0}))
    hook = checked.transformer.register_forward_pre_hook(record("step"))
    try:
        ctx = app.make_context(checked, out_dir=tmp_path / "out")
        picture(32, 32).save(tmp_path / "in.png")
        updates = []
        caller = threading.Thread(
            target=lambda: updates.extend(
                app_handlers.api_edit(
                    ctx, str(tmp_path / "in.png"), "make the circle red", steps=2, guidance_scale=2.0, seed=1
                )
            )
        )
        caller.start()
        caller.join(timeout=120)
    finally:
        hook.remove()
    assert updates[-1][1]["done"]
    assert {what for what, _ in seen} == {"load", "check", "step"}
    assert {name for _, name in seen} == {compute.NAME}


def test_zerogpu_wraps_the_gpu_work(editor, monkeypatch):
    wrapped = []

    class Spaces:
        @staticmethod
        def GPU(duration):  # noqa: N802 (the spaces API)
            return lambda fn: wrapped.append((fn, duration)) or fn

    monkeypatch.setattr(app, "ZERO_GPU", True)
    monkeypatch.setattr(app, "spaces", Spaces, raising=False)
    app.make_context(editor)
    assert len(wrapped) == 2 and all(callable(d) for _, d in wrapped)  # durations per call (test_zerogpu.py)


def test_missing_model_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(app, "DEFAULT_MODEL", tmp_path / "default-model")
    with pytest.raises(SystemExit, match="bundled default model is missing"):
        app.load(app.DEFAULT_MODEL, "cpu")
    with pytest.raises(SystemExit, match="does not exist"):
        app.main(["--model", str(tmp_path / "nowhere")])


def test_bundled_examples_are_valid_inputs():
    listed = app.examples()
    assert len(listed) >= 3
    for path, instruction in listed:
        image, notice = validate.check_image(validate.open_upload(path))
        assert notice is None and validate.check_instruction(instruction) and min(image.size) >= 64


def test_the_api_offers_edit_and_sweep_only(client):
    """Page events (map view, chips, replay, restore, stop) are private: the API lists the two endpoints."""
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {"/edit", "/sweep"}


def test_the_benchmarks_lean_client_reads_the_same_stream_as_gradio_client(client, url, files, tmp_path):
    import httpx

    from editmgt_core.bench import http_stream

    http = httpx.Client(timeout=120)
    endpoint = http_stream.Endpoint.of(http, url.rstrip("/"), "/edit")
    assert endpoint.names[:2] == ["image", "instruction"] and "seed" in endpoint.names
    lean = http_stream.call(http, endpoint, str(files / "photo.png"), "make the circle red", **FAST)
    steps = [u[1].get("step") for u in lean.updates[:-1]]
    assert steps[:4] == [0, 1, 2, 3] and lean.times == sorted(lean.times) and lean.total >= lean.times[-1]
    done = lean.updates[-1][1]
    assert done["done"] and done["seed"] == FAST["seed"] and done["steps"] == FAST["steps"]
    png, info = run(client, files / "photo.png")[-1]  # the same call through gradio_client: the same result
    keys = ("seed", "steps", "instruction")
    assert {k: info[k] for k in keys} == {k: done[k] for k in keys}
    downloaded = tmp_path / "lean.png"
    downloaded.write_bytes(http.get(lean.updates[-1][0]["url"]).raise_for_status().content)
    assert same(png, Image.open(downloaded))


def test_api_steps_come_at_most_once_per_frame_interval(editor, files, tmp_path):
    ctx = app.make_context(editor, frame_interval=3600.0, out_dir=tmp_path)  # a frame an hour
    out = list(app_handlers.api_edit(ctx, str(files / "photo.png"), "make the circle red", **{**FAST, "steps": 5}))
    assert [info.get("step") for _, info in out[:-1]] == [0, 1]  # started, then the first step with its preview
    assert out[1][1]["preview"].startswith("data:image/jpeg") and out[-1][1]["done"]
    every = app.make_context(editor, frame_interval=0.0, out_dir=tmp_path)
    out = list(app_handlers.api_edit(every, str(files / "photo.png"), "make the circle red", **{**FAST, "steps": 5}))
    assert [info.get("step") for _, info in out[:-1]] == [0, 1, 2, 3, 4, 5]


def test_previews_false_streams_the_steps_without_images(client, files, editor, tmp_path):
    without = run(client, files / "photo.png", steps=4, previews=False)  # the parameter through the API
    assert [info["step"] for _, info in without[1:-1]] == [1, 2, 3, 4]
    assert all(info["preview"] is None for _, info in without[1:-1])
    ctx = app.make_context(editor, preview_budget=1.0, frame_interval=0.0, out_dir=tmp_path)  # a preview every step
    call = lambda **kw: list(
        app_handlers.api_edit(
            ctx,
            str(files / "photo.png"),
            "make the circle red",  # noqa: E731
            **{**FAST, "steps": 4},
            **kw,
        )
    )
    on, off = call(), call(previews=False)
    assert all(info["preview"].startswith("data:image/jpeg") for _, info in on[1:-2])  # the last step is the result
    assert all(info["preview"] is None for _, info in off[1:-1])
    assert same(on[-1][0], Image.open(off[-1][0])) and same(without[-1][0], Image.open(on[-1][0]))


def test_a_busy_port_asked_for_is_a_clear_error_and_the_default_says_it_moves(editor, caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"port {port} on 127.0.0.1 is already in use"):
            app.launch(None, "127.0.0.1", port)
        assert app.port_busy("127.0.0.1", port)
    assert not app.port_busy("127.0.0.1", port)

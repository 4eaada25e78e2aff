"""Out-of-domain notices: the checks on a tiny model, the API's warnings and strict mode, the bundled model's domain."""

import dataclasses
import json
import socket

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from tiny_model import WORDS, make_model_folder

from editmgt_core.app import server as app
from editmgt_core.model.loading import SETTINGS_NAME, load_editor
from editmgt_core.studio import domain
from editmgt_core.world import samples

pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")
KNOWN = {"vocabulary": sorted(WORDS), "trained_on": "tiny test pictures"}
FAST = dict(steps=2, guidance_scale=2.0, negative_prompt="", seed=3)


def flat(color=(200, 30, 30), size=(40, 32)):
    return Image.new("RGB", size, color)


def noise(seed=0, size=(40, 32)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def editor(folder):
    return load_editor(folder)


def with_domain(editor, **entry):
    return dataclasses.replace(editor, settings=dataclasses.replace(editor.settings, domain=entry))


@pytest.mark.parametrize(
    "instruction, flagged",
    [
        ("make the red circle blue", False),
        ("please make the red circle blue", False),  # one stray word: the model ignores it, no warning
        ("🎨🌈✨", True),
        ("اجعل الدائرة الحمراء زرقاء", True),
        ("qwzx blorf snagglepuss vrrp", True),
        ("make the sky look like a sunset over the ocean", True),
        ("make the zebra fly", True),  # two of four words unknown: what it asks is outside what the model knows
        ("make the zebra blue", False),  # one: the rest is an edit it knows
        ("gently make the red circle on the left of the square blue now", False),  # two of thirteen: stray
    ],
)
def test_instruction_words_the_model_never_saw_are_named(instruction, flagged):
    notice = domain.check_instruction(KNOWN, instruction)
    assert (notice is not None) == flagged
    if flagged:
        assert notice.kind == "instruction" and domain.PUBLISHED_COMMAND in notice.text
        unknown = [w for w in domain.instruction_words(instruction) if w not in WORDS]
        assert all(f"'{w}'" in notice.text for w in unknown[:6])
        words = domain.instruction_words(instruction)
        stray = max(1, int(domain.STRAY_SHARE * len(words)))
        assert notice.value < domain.MIN_KNOWN_SHARE or len(set(unknown)) > stray
    assert domain.check_instruction({}, instruction) is None  # no vocabulary: nothing is known to be unknown


def test_the_round_trip_error_is_remembered_per_image(editor, monkeypatch):
    encoded = []
    real = editor.vq.encode
    monkeypatch.setattr(editor.vq, "encode", lambda x: encoded.append(x.shape) or real(x))
    first = domain.vq_error(editor, noise(seed=11))
    assert domain.vq_error(editor, noise(seed=11)) == first and len(encoded) == 1  # the same pixels: remembered
    assert domain.vq_error(editor, noise(seed=12)) != first and len(encoded) == 2  # other pixels: computed
    domain.vq_error(editor, noise(seed=11), pixels=48 * 48)
    assert len(encoded) == 3  # another working size is another round trip
    for seed in range(100, 100 + domain.ERRORS_KEPT):
        domain.vq_error(editor, noise(seed=seed))
    domain.vq_error(editor, noise(seed=11))
    assert len(encoded) == 4 + domain.ERRORS_KEPT  # the oldest were forgotten: at most ERRORS_KEPT are kept


def test_image_check_compares_the_vq_round_trip_with_the_models_limit(editor):
    a, b = (domain.vq_error(editor, image) for image in (flat(), noise()))
    assert a != b and domain.vq_error(editor, flat()) == a  # deterministic
    (low, low_image), (high, high_image) = sorted([(a, flat()), (b, noise())], key=lambda t: t[0])
    checked = with_domain(editor, vq_error=(low + high) / 2, **KNOWN)
    assert domain.check_image(checked, low_image) is None
    notice = domain.check_image(checked, high_image)
    assert notice.kind == "image" and notice.value == pytest.approx(high) and f"{high:.3f}" in notice.text
    assert domain.check_image(editor, high_image) is None  # a model without a domain entry is not checked
    notices = domain.check(checked, high_image, "qwzx blorf", strict=False)
    assert [n.kind for n in notices] == ["image", "instruction"]
    with pytest.raises(domain.OutOfDomainError, match="strict mode: This image is unlike"):
        domain.check(checked, high_image, "make the red circle blue", strict=True)
    assert domain.check(checked, low_image, "make the red circle blue", strict=True) == []


def test_bundled_model_knows_its_world_and_flags_photo_like_images():
    """The bundle's stored domain (derived on seed 555) against world records of the other development seed."""
    editor = load_editor(app.DEFAULT_MODEL)
    known = domain.domain_of(editor)
    assert known["vq_error"] > 0 and len(known["vocabulary"]) > 50
    for i in range(40):
        record = samples.record(777, i, size=64 * (1 + i % 2))
        assert domain.check_instruction(known, record.instruction) is None, record.instruction
        assert domain.check_image(editor, Image.fromarray(record.src)) is None, i
    for path, instruction in app.examples():
        assert domain.check(editor, Image.open(path), instruction) == []
    rng = np.random.default_rng(777)
    flagged = [domain.check_image(editor, domain.photo_like(rng, kind)) is not None for kind in ("texture", "scene")]
    assert all(flagged)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(folder, tmp_path_factory):
    settings_path = folder / SETTINGS_NAME
    settings = json.loads(settings_path.read_text())
    settings_path.write_text(json.dumps({**settings, "domain": {**KNOWN, "vq_error": 1e-6}}))  # every image is "off"
    demo = app.build_app(load_editor(folder), out_dir=tmp_path_factory.mktemp("downloads"))
    _, url, _ = app.launch(demo, "127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True)
    yield Client(url, verbose=False)
    demo.close()


def api_edit(client, path, instruction, **kw):
    job = client.submit(handle_file(str(path)), instruction, **{**FAST, **kw}, api_name="/edit")
    job.result(timeout=120)
    return job.outputs()


def test_api_info_carries_the_warnings_and_strict_refuses(client, tmp_path):
    path = tmp_path / "in.png"
    noise().save(path)
    outputs = api_edit(client, path, "اجعل الدائرة حمراء")
    first, (_, info) = outputs[0][1], outputs[-1]
    kinds = ["unlike anything the model was trained on" in w or "never saw" in w for w in info["warnings"]]
    assert info["done"] and len(info["warnings"]) == 2 and all(kinds) and first["warnings"] == info["warnings"]
    assert info["notice"] == " ".join(info["warnings"])
    with pytest.raises(AppError, match="Strict mode: This image is unlike"):
        api_edit(client, path, "make the red circle blue", strict=True)
    assert api_edit(client, path, "make the red circle blue")[-1][1]["done"]  # the next request is fine


def test_api_mask_of_another_shape_is_an_error_and_a_scaled_one_is_announced(client, tmp_path):
    image, stretched, scaled = tmp_path / "in.png", tmp_path / "wide.png", tmp_path / "big.png"
    flat(size=(64, 64)).save(image)
    Image.new("L", (100, 37), 255).save(stretched)
    Image.new("L", (128, 128), 255).save(scaled)
    with pytest.raises(AppError, match="mask is 100x37 but the image is 64x64"):
        client.predict(handle_file(str(image)), "make it red", handle_file(str(stretched)), **FAST, api_name="/edit")
    info = api_edit(client, image, "make it red", mask=handle_file(str(scaled)))[-1][1]
    assert any("mask is 128x128 and the image 64x64: the mask was scaled" in w for w in info["warnings"])


def test_api_sweep_says_when_a_brush_overrides_lam(client, tmp_path):
    image, mask = tmp_path / "in.png", tmp_path / "mask.png"
    flat(size=(32, 32)).save(image)
    Image.new("L", (32, 32), 255).save(mask)
    kw = dict(mask=handle_file(str(mask)), lam_values="0, 0.5", **FAST)
    summary = client.predict(handle_file(str(image)), "make it red", api_name="/sweep", **kw)[1]
    assert any("λ changes nothing" in w for w in summary["warnings"])
    kw["mask_mode"] = "union"
    summary = client.predict(handle_file(str(image)), "make it red", api_name="/sweep", **kw)[1]
    assert not any("λ changes nothing" in w for w in summary["warnings"])


def test_vocabulary_follows_the_wording_the_model_was_trained_on():
    """--phrasing mixed adds the training families' words (verbs, fillers, British spellings) to the templates'; a
    held-out family's own verbs stay out of both."""
    templates = set(domain.world_vocabulary(555, 400))
    mixed = set(domain.world_vocabulary(555, 400, phrasing="mixed"))
    assert {"colour", "please", "thanks"} <= mixed - templates and len(templates & mixed) >= 0.95 * len(templates)
    assert not {"dye", "morph", "backdrop"} & mixed

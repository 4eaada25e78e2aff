"""editmgt_core.studio.streaming on a tiny random model: CPU-only streaming, sweep reuse, saving a result."""

import dataclasses
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import make_model_folder

from editmgt_core.edit import files
from editmgt_core.edit.editing import default_options, edit
from editmgt_core.model.loading import load_editor
from editmgt_core.studio import render, streaming

FAST = dict(steps=3, guidance_scale=2.0, negative_prompt="", seed=5)


@pytest.fixture(scope="module")
def editor(tmp_path_factory):
    return load_editor(make_model_folder(tmp_path_factory.mktemp("tiny")))


def picture(w=32, h=32, mode="RGB", seed=0):
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def png_header_only(path, width, height):
    """A PNG that claims width x height but holds one row of data: never decoded, only its header is read."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * (width + 1))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def cpu_only(value):
    if dataclasses.is_dataclass(value):
        return all(cpu_only(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return all(cpu_only(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(cpu_only(v) for v in value)
    return not isinstance(value, torch.Tensor)


def test_stream_is_cpu_data_and_matches_edit(editor):
    options = default_options(editor, **FAST, lam=0.3)
    items = list(streaming.stream(editor, picture(), "make the circle red", options, preview_side=64, preview_budget=1))
    frames, final = items[:-1], items[-1]
    assert [f.step for f in frames] == [0, 1, 2] and all(cpu_only(i) for i in items)
    assert frames[0].preview.size == (32, 32) and frames[0].revealed.dtype == bool  # working size: never enlarged
    assert frames[-1].preview is None  # the last step is the result
    unpreviewed = list(streaming.stream(editor, picture(), "make the circle red", options, preview_budget=0))
    assert all(f.preview is None for f in unpreviewed[:-1])
    many = dataclasses.replace(options, steps=6)
    every = list(streaming.stream(editor, picture(), "make it red", many, preview_budget=1))
    spaced = list(streaming.stream(editor, picture(), "make it red", many, preview_budget=1, preview_interval=3600))
    assert [f.preview is not None for f in every[:-1]] == [True] * 5 + [False]
    assert [f.preview is not None for f in spaced[:-1]] == [True] + [False] * 5  # at most one an hour: the first
    meagre = list(streaming.stream(editor, picture(), "make it red", many, preview_budget=1e-9))
    assert [f.preview is not None for f in meagre[:-1]] == [True] + [False] * 5  # the first step's, whatever it costs
    assert np.array_equal(np.asarray(every[-1].image), np.asarray(spaced[-1].image))  # previews change no token
    assert np.array_equal(
        np.asarray(final.image), np.asarray(edit(editor, picture(), "make the circle red", options).image)
    )
    assert final.parameters["seed"] == 5 and final.hold is not None


def test_sweep_cells_equal_separate_edits(editor):
    options = default_options(editor, **FAST)
    items = list(streaming.sweep(editor, picture(), "make the circle red", options, (0.0, 0.4), (1.0, 1.5)))
    cells = [i for i in items if isinstance(i, streaming.Cell)]
    assert len(cells) == 4 and sum(isinstance(i, streaming.CellStep) for i in items) == 4 * FAST["steps"]
    assert [(c.gamma, c.lam) for c in cells] == [(1.0, 0.0), (1.0, 0.4), (1.5, 0.0), (1.5, 0.4)]
    last = cells[-1]  # the encodings were reused by three cells before it
    alone = edit(editor, picture(), "make the circle red", dataclasses.replace(options, lam=0.4, gamma=1.5))
    assert np.array_equal(np.asarray(last.result.image), np.asarray(alone.image))
    assert cells[0].result.held_fraction == 0 and "λ=0.4 γ=1" in cells[1].label


def test_saved_png_carries_its_parameters(editor, tmp_path):
    final = list(streaming.stream(editor, picture(), "make it red", default_options(editor, **FAST)))[-1]
    png, sidecar = streaming.save_result(final, tmp_path)
    assert files.read_parameters(png)["seed"] == 5 and '"instruction": "make it red"' in sidecar.read_text()
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(final.image))
    assert render.from_jpeg(render.jpeg(final.image)).size == final.image.size

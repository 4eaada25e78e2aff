"""The command line: documented options, one-line errors without tracebacks, and `edit` end to end on a tiny model."""

import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_model import make_model_folder

from editmgt_core import cli
from editmgt_core.edit.files import read_parameters
from editmgt_core.sampler.sampling import SamplerOptions

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--steps", "3", "--guidance-scale", "2", "--negative-prompt", "", "--quiet"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
    return path


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_option_of_every_command_is_documented():
    commands = _subparsers(cli.build_parser())
    assert set(commands) == {"edit", "batch", "evaluate", "world-eval", "calibrate-layers", "tune-hold", "convert"} | {
        "app",
        "deploy-space",
    }
    for name, parser in commands.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings} has no help"
        assert parser.description, name
        parser.format_help()  # no formatting errors (e.g. a stray % in a help string)


def test_edit_help_names_the_bundled_models_defaults_first():
    """`editmgt edit` runs the bundled model unless --model says otherwise: its help gives that model's defaults."""
    import json

    bundle = json.loads((cli.DEFAULT_MODEL / "editmgt_studio.json").read_text())["defaults"]
    text = " ".join(_subparsers(cli.build_parser())["edit"].format_help().split())
    assert f"(default with the bundled model: {bundle['steps']}; published demo: 36)" in text
    assert f"default with the bundled model: {bundle['gamma']:g}; published demo: 1.1" in text


def test_cli_knobs_are_the_sampler_options():
    assert set(cli.KNOBS) == {f.name for f in dataclasses.fields(SamplerOptions)}
    args = cli.build_parser().parse_args(
        ["edit", "--image", "a", "--instruction", "b", "--out", "c.png", "--layers", "1-3,7,s0", "--temperature", "2,0"]
        + ["--keywords", "red, circle", "--lambda", "0.2", "--cfg", "3", "--grow", "2", "--focus-gate", "0.7"]
        + ["--no-keep-pixels"]
    )
    over = cli.sampler_overrides(args)
    assert over == {
        "layers": (1, 2, 3, 7, "s0"),
        "temperature": (2.0, 0.0),
        "keywords": ("red", "circle"),
        "lam": 0.2,
        "guidance_scale": 3.0,
        "grow": 2,
        "focus_gate": 0.7,
        "keep_pixels": False,
    }
    SamplerOptions(**over)


def _error(capsys, argv) -> str:
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_user_errors_give_one_line(capsys, tmp_path, picture, model):
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    edit = ["edit", "--instruction", "make it red", "--model", str(model)]
    assert "image not found" in _error(capsys, [*edit, "--image", str(tmp_path / "missing.png"), "--out", "o.png"])
    assert "cannot read image" in _error(capsys, [*edit, "--image", str(not_image), "--out", "o.png"])
    assert "is a folder" in _error(capsys, [*edit, "--image", str(tmp_path), "--out", "o.png"])
    out = str(tmp_path / "o.png")
    assert "steps=0" in _error(capsys, [*edit, "--image", str(picture), "--out", out, "--steps", "0"])
    assert "lam=" in _error(capsys, [*edit, "--image", str(picture), "--out", out, "--lam", "2"])
    assert "unknown image extension" in _error(
        capsys, [*edit, "--image", str(picture), "--out", str(tmp_path / "o.xyz")]
    )
    assert ".gif or .webp" in _error(capsys, [*edit, "--image", str(picture), "--out", out, "--save-steps", "s.mp4"])
    bad_model = ["edit", "--image", str(picture), "--instruction", "x", "--out", out, "--model", str(tmp_path / "nope")]
    assert "does not exist" in _error(capsys, bad_model)
    assert "manifest not found" in _error(capsys, ["batch", "--manifest", str(tmp_path / "m.jsonl"), "--out", out])
    assert "needs region-hold" in _error(
        capsys,
        [*edit, "--image", str(picture), "--out", out, "--save-attention", str(tmp_path / "map.png"), "--lam", "0"],
    )
    with pytest.raises(SystemExit) as exit_:  # argparse usage errors exit with 2
        cli.main(["edit", "--image", str(picture)])
    assert exit_.value.code == 2


def test_module_entry_point_reports_a_bad_path_without_traceback(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "editmgt_core",
        "edit",
        "--image",
        str(tmp_path / "nope.jpg"),
        "--instruction",
        "x",
        "--out",
        str(tmp_path / "o.png"),
    ]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [f"error: image not found: {tmp_path / 'nope.jpg'}"]


def test_edit_writes_png_with_parameters_map_and_animation(capsys, tmp_path, picture, model):
    out, heat, steps = tmp_path / "out" / "o.png", tmp_path / "map.png", tmp_path / "steps.gif"
    argv = ["edit", "--image", str(picture), "--instruction", "make the red circle blue", "--out", str(out)]
    argv += ["--model", str(model), "--lam", "0.3", "--seed", "7", "--save-attention", str(heat)]
    assert cli.main([*argv, "--save-steps", str(steps), *FAST]) == 0
    assert "seed 7" in capsys.readouterr().out
    params = read_parameters(out)
    assert params["seed"] == 7 and params["lam"] == 0.3 and params["steps"] == 3 and params["model"] == str(model)
    assert params["instruction"] == "make the red circle blue" and set(params["timings"]) >= {"sampling", "decode"}
    assert Image.open(out).size == (40, 30)
    assert Image.open(heat).size == (40, 30) and Image.open(heat).mode == "L"
    animation = Image.open(steps)
    assert animation.n_frames >= 2 and animation.size == (40, 30)

    webp = tmp_path / "again.png"
    argv[argv.index(str(out))] = str(webp)
    assert cli.main([*argv, "--save-steps", str(tmp_path / "s.webp"), *FAST]) == 0
    assert np.array_equal(np.asarray(Image.open(webp)), np.asarray(Image.open(out)))  # same seed, same edit
    assert Image.open(tmp_path / "s.webp").n_frames >= 2
    capsys.readouterr()
    assert cli.main([*argv, "--focus-gate", "1", *FAST]) == 0  # every focus is below 1: the map holds nothing
    captured = capsys.readouterr()
    assert "0% held" in captured.out and "whole-image edit" in captured.err


def test_tune_hold_measures_each_setting(tmp_path, capsys):
    from tiny_model import make_model_folder

    from editmgt_core.world import dataset

    folder = make_model_folder(tmp_path / "model")
    manifest = dataset.write_dataset(tmp_path / "world", 3, seed=5, size=32)
    argv = [
        "tune-hold",
        "--model",
        str(folder),
        "--manifest",
        str(manifest),
        "--lam-values",
        "0.2,1",
        "--grow-values",
        "0",
        "--max-drop",
        "1",
    ]
    assert cli.main(argv) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 0") or line.startswith("| 1")]
    assert [line.split()[1] for line in lines] == ["0/0", "0.2/0", "1/0"]
    held = [float(line.rstrip(" |").rsplit("|", 1)[1].strip().rstrip("%")) for line in lines]
    assert held[0] == 0 and held[2] == 100  # λ 1 holds every token: the edit keeps the source

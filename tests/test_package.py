"""The package's entry points: the `editmgt` console script, --version, and one list of dependencies."""

import tomllib
from pathlib import Path

import pytest

import editmgt_core
from editmgt_core import cli

ROOT = Path(__file__).resolve().parent.parent


def test_console_script_and_version(capsys):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    module, func = project["project"]["scripts"]["editmgt"].split(":")
    assert (module, func) == ("editmgt_core.cli", "main") and callable(cli.main)
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"editmgt {editmgt_core.__version__}"
    dynamic = project["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"] == {"file": ["requirements.txt"]}  # `pip install .` installs what the app needs


def test_app_command_passes_its_options_to_app_py(monkeypatch):
    import importlib.util

    import app

    calls = {}

    class Spec:
        class loader:  # noqa: N801 (the spec API's name)
            @staticmethod
            def exec_module(module):
                calls["executed"] = module is app

    monkeypatch.setattr(importlib.util, "spec_from_file_location", lambda name, path: calls.update(path=path) or Spec)
    monkeypatch.setattr(importlib.util, "module_from_spec", lambda spec: app)
    monkeypatch.setattr(app, "main", lambda argv: calls.update(argv=argv))
    assert cli.main(["app", "--port", "7861", "--dtype", "bf16"]) == 0
    assert calls == {"path": ROOT / "app.py", "executed": True, "argv": ["--port", "7861", "--dtype", "bf16"]}


def test_readme_commands_are_what_ci_runs():
    import re

    readme = (ROOT / "README.md").read_text()
    install, tests = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.DOTALL)[:2]
    assert install == "pip install -r requirements.txt && python app.py"  # requirements.txt alone, then the app
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("pip install")]
    assert [line.replace("pip install -q ", "pip install ") for line in ci] == [tests]

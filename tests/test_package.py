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


def pins(path: Path) -> dict[str, str]:
    """name -> version of each `name==version` line (comments, blank and `-r` lines skipped)."""
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return dict(canonical(line).split("==") for line in lines if "==" in line)


def canonical(text: str) -> str:
    return text.lower().replace("_", "-")


def test_dependency_ranges_admit_the_pinned_set():
    """`pip install .` takes ranges; requirements*.txt pin one set inside them (the Space's and CI's)."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = pins(ROOT / "requirements.txt") | pins(ROOT / "requirements-dev.txt")
    groups = {"": project["dependencies"], "dev": project["optional-dependencies"]["dev"]}
    for group, lines in groups.items():
        for line in lines:
            req = Requirement(line)
            assert "==" not in str(req.specifier), f"{line}: a range, not a pin"
            assert canonical(req.name) in pinned, f"{req.name} ({group or 'core'}) is not pinned in requirements"
            assert req.specifier.contains(pinned[canonical(req.name)]), f"{line} excludes the pinned version"
    core = {canonical(Requirement(line).name) for line in groups[""]}
    assert {"torch", "gradio", "diffusers", "transformers", "safetensors"} <= core


def test_citation_names_this_version():
    citation = (ROOT / "CITATION.cff").read_text()
    assert f"version: {editmgt_core.__version__}\n" in citation and "arXiv:2512.11715" in citation


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

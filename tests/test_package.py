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
    assert all(isinstance(v, list) for v in project["optional-dependencies"].values())  # extras are lists only
    assert isinstance(project["description"], str) and project["readme"] == "README.md"
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


def test_app_command_serves_the_packaged_app_with_its_options(monkeypatch):
    from editmgt_core.app import server

    calls = []
    monkeypatch.setattr(server, "main", calls.append)
    assert cli.main(["app", "--port", "7861", "--dtype", "bf16"]) == 0
    assert calls == [["--port", "7861", "--dtype", "bf16"]]


def test_the_root_app_py_is_the_packaged_app():
    """A Space and `python app.py` run the root app.py: it only imports `spaces` when asked and serves the package's
    app (nothing is built on import)."""
    text = (ROOT / "app.py").read_text()
    assert "from editmgt_core.app.server import launch, make_demo, parse_args" in text and text.count("\n") < 25


def test_the_bundle_and_the_examples_are_package_data():
    from editmgt_core import paths

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = project["tool"]["setuptools"]["package-data"]["editmgt_core"]
    shipped = {p.relative_to(paths.PACKAGE) for g in globs for p in paths.PACKAGE.glob(g) if p.is_file()}
    needed = [paths.BUNDLED_MODEL / "editmgt_studio.json", paths.EXAMPLES / "examples.json"]
    needed.append(paths.PACKAGE / "app" / "upload.js")
    assert all(p.relative_to(paths.PACKAGE) in shipped for p in needed)
    weights = [p for p in paths.BUNDLED_MODEL.rglob("*.safetensors")]
    assert weights and all(p.relative_to(paths.PACKAGE) in shipped for p in weights)


def test_readme_commands_are_what_ci_runs():
    import re

    readme = (ROOT / "README.md").read_text()
    install, tests = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.DOTALL)[:2]
    assert install == "pip install -r requirements.txt && python app.py"  # requirements.txt alone, then the app
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("pip install")]
    assert [line.replace("pip install -q ", "pip install ") for line in ci] == [tests]

"""The code's shape: no import cycle inside a package (module-level, function-level and TYPE_CHECKING imports all
count), files of at most 400 lines and functions of at most 60, and gradio imported by the app alone."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "editmgt_core"
FILES = sorted([*PACKAGE.rglob("*.py"), ROOT / "app.py"])


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in FILES if p.is_relative_to(PACKAGE)}


def imported(path: Path, source: str | None = None) -> set[str]:
    """Every editmgt_core module `path` imports (its text, or `source`), wherever the import statement stands."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return {m for m in found if m in MODULES and m != name}


def test_no_import_cycle_inside_a_package():
    graph = {name: imported(path) for name, path in MODULES.items()}
    package = lambda m: m.rsplit(".", 1)[0]  # noqa: E731
    cycles = []

    def reach(start: str, node: str, seen: list[str]) -> None:
        for nxt in graph[node]:
            if package(nxt) != package(start):
                continue
            if nxt == start:
                cycles.append(" -> ".join([*seen, nxt]))
            elif nxt not in seen:
                reach(start, nxt, [*seen, nxt])

    for name in graph:
        reach(name, name, [name])
    assert not cycles, cycles


def test_the_walker_sees_function_level_and_type_checking_imports():
    code = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .hold import x\n"
    code += "def f():\n    from . import schedule\n    import editmgt_core.model.entries\n"
    path = PACKAGE / "sampler" / "_probe.py"  # (not a file: its text is given)
    found = imported(path, code)
    assert found == {"editmgt_core.sampler.hold", "editmgt_core.sampler.schedule", "editmgt_core.model.entries"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_files_and_functions_stay_short(path):
    text = path.read_text()
    assert text.count("\n") <= 400, f"{path.name}: {text.count(chr(10))} lines"
    long = [
        f"{n.name} ({n.end_lineno - n.lineno + 1} lines)"
        for n in ast.walk(ast.parse(text))
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60
    ]
    assert not long, f"{path.name}: {long}"


def test_only_the_app_imports_gradio():
    outside = [
        name
        for name, path in MODULES.items()
        if not name.startswith("editmgt_core.app")
        and any(m == "gradio" or m.startswith("gradio.") for m in _all_imports(path))
    ]
    assert not outside


def _all_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module or "")
    return names

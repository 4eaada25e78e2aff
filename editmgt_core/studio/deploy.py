"""`deploy-space`: publish the working tree as a Hugging Face Space through huggingface_hub's upload API.

    python -m editmgt_core deploy-space --repo USER/NAME --dry-run       # what goes where, and the front matter
    python -m editmgt_core deploy-space --repo USER/NAME [--hardware zero-a10g]

Why not `git push`: this repository keeps its bundle in plain git, and the Hub refuses pushed binaries over 1 MB that
are not stored through Xet/LFS, in every commit of the history. The upload API sends one new commit made of the working
tree's files; the Hub routes each binary to Xet/LFS by itself (`preupload`), so no history and no local LFS setup is
needed. The commit also carries a `.gitattributes` that marks those files as LFS, so a clone of the Space can be
pushed back, and the README with the front matter `front_matter` writes. Files the tree no longer has are deleted.
The Space variable EDITMGT_MODEL (default the published model) is what the app loads when it runs on a GPU; on CPU
hardware the app keeps the bundled model.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..model.loading import PUBLISHED_ID

ROOT = Path(__file__).resolve().parents[2]
PYTHON_VERSION = "3.12"  # ZeroGPU offers 3.10 and 3.12; the pins need >= 3.11 (numpy 2.4, scipy 1.17)
SKIPPED = ("tests/", ".ci/")  # in the repository, not needed by a Space (the test fixtures are 30 MB of binaries)
LFS_SIZE = 10 * 2**20  # the Hub stores text files above this size through Xet/LFS too
MODEL_VARIABLE = "EDITMGT_MODEL"


@dataclass(frozen=True)
class Planned:
    path: str  # path in the repository (and the Space), '/'-separated
    size: int  # bytes
    lfs: bool  # True: the Hub stores it through Xet/LFS (binary, or text above LFS_SIZE)


def pinned(name: str, root: Path = ROOT) -> str:
    """The version requirements.txt pins for `name` (a `name==version` line)."""
    for line in (root / "requirements.txt").read_text().splitlines():
        m = re.fullmatch(rf"\s*{re.escape(name)}\s*==\s*([\w.+-]+)\s*(#.*)?", line, flags=re.IGNORECASE)
        if m:
            return m.group(1)
    raise ValueError(f"requirements.txt pins no {name!r} (expected a line '{name}==VERSION')")


def front_matter(root: Path = ROOT) -> dict:
    """The Space's README front matter: the SDK at the pinned gradio, a Python that ZeroGPU offers."""
    return {
        "title": "EditMGT Studio",
        "emoji": "🎨",
        "colorFrom": "blue",
        "colorTo": "purple",
        "sdk": "gradio",
        "sdk_version": pinned("gradio", root),
        "python_version": f'"{PYTHON_VERSION}"',
        "app_file": "app.py",
        "license": "apache-2.0",
        "models": f"[{PUBLISHED_ID}]",
        "pinned": "false",
        "short_description": "Instruction-driven image editing, decoded token by token",
    }


def render_front_matter(fields: dict) -> str:
    return "---\n" + "".join(f"{k}: {v}\n" for k, v in fields.items()) + "---\n"


def with_front_matter(readme: str, fields: dict) -> str:
    """`readme` with its leading `---` block (if any) replaced by `fields`."""
    body = re.sub(r"\A---\n.*?\n---\n", "", readme, count=1, flags=re.DOTALL)
    return render_front_matter(fields) + body


def is_binary(path: Path) -> bool:
    """As git and the Hub judge it: a NUL byte, or bytes that are not UTF-8 text, in the first 8 kB."""
    head = path.read_bytes()[:8192]
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start < len(head) - 4  # a multi-byte character cut at the 8 kB mark is still text
    return False


def tree_files(root: Path = ROOT) -> list[str]:
    """The working tree as git sees it: tracked files that exist plus untracked files that are not ignored."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise ValueError(f"{root} is not a git checkout (deploy-space uploads what git tracks): {err}") from None
    paths = sorted({p for p in out.decode().split("\0") if p})
    return [p for p in paths if (root / p).is_file() and not p.startswith(SKIPPED)]


def plan(root: Path = ROOT) -> list[Planned]:
    """Every file the Space gets, and whether the Hub will store it through Xet/LFS."""
    out = []
    for p in tree_files(root):
        size = (root / p).stat().st_size
        out.append(Planned(p, size, size > LFS_SIZE or is_binary(root / p)))
    return out


def gitattributes(files: list[Planned]) -> str:
    """LFS rules for the binaries (by suffix where every file with it is binary, else by path)."""
    lfs_suffixes = {Path(f.path).suffix for f in files if f.lfs and Path(f.path).suffix}
    text_suffixes = {Path(f.path).suffix for f in files if not f.lfs}
    rules = [f"*{s}" for s in sorted(lfs_suffixes - text_suffixes)]
    rules += [f.path for f in files if f.lfs and Path(f.path).suffix not in lfs_suffixes - text_suffixes]
    return "".join(f"{r} filter=lfs diff=lfs merge=lfs -text\n" for r in rules)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} kB"


def describe(files: list[Planned], fields: dict, repo_id: str, hardware: str | None, model: str) -> str:
    lfs = [f for f in files if f.lfs]
    lines = [
        f"Space {repo_id} (hardware: {hardware or 'unchanged; a new Space starts on cpu-basic'}); "
        f"variable {MODEL_VARIABLE}={model} (loaded on GPU hardware; CPU hardware keeps the bundled model)",
        "README.md front matter:",
        render_front_matter(fields).rstrip(),
        "files:",
        *(f"  {'xet/lfs' if f.lfs else 'git':8} {_size(f.size):>9}  {f.path}" for f in files),
        "  git      (made)     .gitattributes (LFS rules for the binaries)",
        f"{len(files) + 1} files: {len(lfs)} through Xet/LFS ({_size(sum(f.size for f in lfs))}), "
        f"{len(files) + 1 - len(lfs)} as regular files; not uploaded: {', '.join(SKIPPED)}",
    ]
    return "\n".join(lines)


def deploy(
    api,
    repo_id: str,
    root: Path = ROOT,
    *,
    hardware: str | None = None,
    private: bool = False,
    model: str = PUBLISHED_ID,
    dry_run: bool = False,
    log=print,
) -> list[Planned]:
    """Create or update the Space `repo_id` from the working tree at `root`; `api` is a `huggingface_hub.HfApi`
    (or anything with the same methods). dry_run: only log what would be uploaded; `api` is not touched."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise ValueError(f"--repo {repo_id!r}: expected a Space id USER/NAME")
    from huggingface_hub import SpaceHardware

    known = [h.value for h in SpaceHardware]
    if hardware is not None and hardware not in known:
        raise ValueError(f"--hardware {hardware!r}: expected one of {', '.join(known)}")
    files = plan(root)
    fields = front_matter(root)
    log(describe(files, fields, repo_id, hardware, model))
    if dry_run:
        return files
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    if hardware:
        api.request_space_hardware(repo_id, hardware)
    api.add_space_variable(repo_id, MODEL_VARIABLE, model, description="model the app loads on GPU hardware")
    readme = with_front_matter((root / "README.md").read_text(), fields)
    ops = [CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(root / f.path)) for f in files]
    ops = [op for op in ops if op.path_in_repo != "README.md"]
    ops += [
        CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme.encode()),
        CommitOperationAdd(path_in_repo=".gitattributes", path_or_fileobj=gitattributes(files).encode()),
    ]
    keep = {f.path for f in files} | {"README.md", ".gitattributes"}
    stale = [p for p in api.list_repo_files(repo_id, repo_type="space") if p not in keep]
    ops += [CommitOperationDelete(path_in_repo=p) for p in stale]
    info = api.create_commit(
        repo_id=repo_id, repo_type="space", operations=ops, commit_message=f"Deploy EditMGT Studio ({_revision(root)})"
    )
    log(f"uploaded {len(files) + 2} files, deleted {len(stale)}: {getattr(info, 'commit_url', info)}")
    return files


def _revision(root: Path) -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True, text=True)
        return out.stdout.strip() or "working tree"
    except OSError:
        return "working tree"

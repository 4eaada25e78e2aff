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

What ZeroGPU builds: the Space's `requirements.txt` leaves torch unpinned, because ZeroGPU installs only the torch
versions on its supported list and fails the build on any other pin ("No candidate PyTorch version found for
ZeroGPU"); on GPU hardware the front matter's `preload_from_hub` names the model files the app reads (safetensors and
JSON, never pickles), so they are fetched when the Space is built, not at every cold start; a new Space gets its
hardware and variables in its one `create_repo` call, so its first build already runs on them. A gated model needs a
Space secret HF_TOKEN (README).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from editmgt_core.model.sources import DOWNLOAD_PATTERNS, PICKLE_PATTERNS, PUBLISHED_ID

ROOT = Path(__file__).resolve().parents[2]
PYTHON_VERSION = "3.12"  # ZeroGPU offers 3.10 and 3.12; the pins need >= 3.11 (numpy 2.4, scipy 1.17)
SKIPPED = ("tests/", ".ci/")  # in the repository, not needed by a Space (the test fixtures are 30 MB of binaries)
LFS_SIZE = 10 * 2**20  # the Hub stores text files above this size through Xet/LFS too
MODEL_VARIABLE = "EDITMGT_MODEL"
REVISION_VARIABLE = "EDITMGT_REVISION"


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


def front_matter(root: Path = ROOT, preload: str | None = None) -> dict:
    """The Space's README front matter: the SDK at the pinned gradio, a Python that ZeroGPU offers; preload: a
    `preload_from_hub` entry ('REPO FILE,FILE,... [COMMIT]') for GPU hardware."""
    extra = {"preload_from_hub": [preload]} if preload else {}
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
        **extra,
    }


def space_requirements(root: Path = ROOT) -> str:
    """requirements.txt as the Space installs it: torch unpinned (ZeroGPU installs a torch from its supported list
    and refuses any other pin; other hardware gets pip's newest), every other pin kept."""
    pinned("torch", root)  # the file must pin it: the line replaced is that one
    lines = []
    for line in (root / "requirements.txt").read_text().splitlines():
        if re.fullmatch(r"\s*torch\s*==.*", line, flags=re.IGNORECASE):
            lines.append("# torch unpinned: ZeroGPU installs a version from its supported list (a pin outside it fails")
            lines.append("# the build); the repository's requirements.txt pins the version the tests ran with")
            line = "torch"
        lines.append(line)
    return "\n".join(lines) + "\n"


def is_gpu(hardware: str | None) -> bool:
    return hardware is not None and not hardware.startswith("cpu")


def preload_entry(api, model: str, revision: str | None = None) -> str:
    """'MODEL FILE,FILE,... [COMMIT]': the files of `model` the app reads (its loader's download patterns, no
    pickles), listed on the Hub, at the commit `revision` resolves to (none: main)."""
    from huggingface_hub.utils import filter_repo_objects

    files = api.list_repo_files(model, revision=revision)
    wanted = sorted(filter_repo_objects(files, allow_patterns=DOWNLOAD_PATTERNS, ignore_patterns=PICKLE_PATTERNS))
    if not wanted:
        raise ValueError(f"{model} has no files the app reads ({', '.join(DOWNLOAD_PATTERNS)})")
    commit = getattr(api.model_info(model, revision=revision), "sha", None) if revision else None
    return f"{model} {','.join(wanted)}" + (f" {commit}" if commit else "")


def render_front_matter(fields: dict) -> str:
    """YAML front matter; a list value becomes a block list."""
    line = lambda k, v: f"{k}:\n" + "".join(f"  - {i}\n" for i in v) if isinstance(v, list) else f"{k}: {v}\n"
    return "---\n" + "".join(line(k, v) for k, v in fields.items()) + "---\n"


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


def describe(
    files: list[Planned], fields: dict, repo_id: str, hardware: str | None, variables: dict, requirements: str
) -> str:
    lfs = [f for f in files if f.lfs]
    lines = [
        f"Space {repo_id} (hardware: {hardware or 'unchanged; a new Space starts on cpu-basic'}); variables "
        + ", ".join(f"{k}={v}" for k, v in variables.items())
        + " (the model is loaded on GPU hardware; CPU hardware keeps the bundled model)",
        "README.md front matter:",
        render_front_matter(fields).rstrip(),
        *([] if "preload_from_hub" in fields else ["(no preload_from_hub: not GPU hardware, or --hardware not given)"]),
        "requirements.txt as the Space gets it:",
        *(f"  {line}" for line in requirements.splitlines()),
        "files:",
        *(f"  {'xet/lfs' if f.lfs else 'git':8} {_size(f.size):>9}  {f.path}" for f in files),
        "  git      (made)     .gitattributes (LFS rules for the binaries)",
        "  git      (made)     requirements.txt (above), README.md (front matter above)",
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
    revision: str | None = None,
    dry_run: bool = False,
    log=print,
) -> list[Planned]:
    """Create or update the Space `repo_id` from the working tree at `root`; `api` is a `huggingface_hub.HfApi`
    (or anything with the same methods). On GPU hardware the model's files are listed on the Hub for
    `preload_from_hub` (at `revision`, also set as the Space's EDITMGT_REVISION). dry_run: only log what would be
    uploaded; `api` is only read (the model's file list), and may be None (the preload is then shown unlisted)."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise ValueError(f"--repo {repo_id!r}: expected a Space id USER/NAME")
    from huggingface_hub import SpaceHardware

    known = [h.value for h in SpaceHardware]
    if hardware is not None and hardware not in known:
        raise ValueError(f"--hardware {hardware!r}: expected one of {', '.join(known)}")
    files = plan(root)
    preload = None
    if is_gpu(hardware) and not Path(model).exists():
        try:
            preload = preload_entry(api, model, revision)
        except Exception as err:  # a dry run shows what it could not list; a deploy stops here
            if not dry_run:
                raise
            preload = f"{model} (files not listed: {type(err).__name__}: {err})"
    fields = front_matter(root, preload)
    variables = {MODEL_VARIABLE: model, **({REVISION_VARIABLE: revision} if revision else {})}
    requirements = space_requirements(root)
    log(describe(files, fields, repo_id, hardware, variables, requirements))
    if dry_run:
        return files
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    create_or_update(api, repo_id, hardware, variables, private)
    readme = with_front_matter((root / "README.md").read_text(), fields)
    ops = [CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(root / f.path)) for f in files]
    ops = [op for op in ops if op.path_in_repo not in ("README.md", "requirements.txt")]
    ops += [
        CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme.encode()),
        CommitOperationAdd(path_in_repo="requirements.txt", path_or_fileobj=requirements.encode()),
        CommitOperationAdd(path_in_repo=".gitattributes", path_or_fileobj=gitattributes(files).encode()),
    ]
    keep = {f.path for f in files} | {"README.md", "requirements.txt", ".gitattributes"}
    stale = [p for p in api.list_repo_files(repo_id, repo_type="space") if p not in keep]
    ops += [CommitOperationDelete(path_in_repo=p) for p in stale]
    info = api.create_commit(
        repo_id=repo_id, repo_type="space", operations=ops, commit_message=f"Deploy EditMGT Studio ({_revision(root)})"
    )
    log(f"uploaded {len(files) + 3} files, deleted {len(stale)}: {getattr(info, 'commit_url', info)}")
    return files


def create_or_update(api, repo_id: str, hardware: str | None, variables: dict, private: bool) -> None:
    """A new Space in one call with its hardware and variables (its first build runs on them); an existing one
    updated: hardware requested, variables set."""
    if not api.repo_exists(repo_id, repo_type="space"):
        api.create_repo(
            repo_id,
            repo_type="space",
            space_sdk="gradio",
            private=private,
            space_hardware=hardware,
            space_variables=[{"key": k, "value": v} for k, v in variables.items()],
        )
        return
    if hardware:
        api.request_space_hardware(repo_id, hardware)
    for key, value in variables.items():
        api.add_space_variable(repo_id, key, value)


def _revision(root: Path) -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True, text=True)
        return out.stdout.strip() or "working tree"
    except OSError:
        return "working tree"

"""deploy-space: the plan on a clean clone, the upload calls against a fake Hub client, the README's front matter."""

import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from editmgt_core import cli
from editmgt_core.release import deploy

ROOT = Path(__file__).resolve().parent.parent
BINARY_SUFFIXES = (".png", ".jpg", ".webp", ".gif", ".safetensors", ".pt", ".npz", ".npy", ".bin")


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A clean clone of the committed tree (what a new user gets), plus one untracked file, as a user would have."""
    path = tmp_path_factory.mktemp("clone") / "repo"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(path)], check=True)
    (path / "notes.txt").write_text("untracked but not ignored: uploaded\n")
    (path / "outputs").mkdir()
    (path / "outputs" / "x.png").write_bytes(b"\x89PNG ignored by .gitignore")
    return path


MODEL_FILES = [
    "README.md",
    "model_index.json",
    "editmgt/config.json",
    "editmgt/diffusion_pytorch_model.safetensors",
    "editmgt/diffusion_pytorch_model.bin",
    "vqvae/config.json",
    "vqvae/diffusion_pytorch_model.safetensors",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder/pytorch_model.bin",
    "tokenizer/vocab.json",
    "tokenizer/merges.txt",
    "llm_encoder/model-00001-of-00002.safetensors",
    "llm_encoder/model-00002-of-00002.safetensors",
    "llm_encoder/tokenizer.json",
    "llm_encoder/training_args.pt",
    "scheduler/scheduler_config.json",
    "demo/infer.py",
]


class FakeHub:
    """Records what deploy() asks of an HfApi; the Space (when it exists) holds one file the tree no longer has, and
    the model repo holds the published layout with pickles beside the safetensors."""

    def __init__(self, existing=("README.md", "old_module.py"), exists=False):
        self.calls, self.existing, self.exists = [], list(existing), exists

    def __getattr__(self, name):
        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if name == "list_repo_files":
                return self.existing if kwargs.get("repo_type") == "space" else MODEL_FILES
            if name == "repo_exists":
                return self.exists
            if name == "model_info":
                return SimpleNamespace(sha="c0ffee" * 6 + "c0ff")
            if name == "create_commit":
                return "https://huggingface.co/spaces/me/studio/commit/abc"
            return None

        return record

    def called(self, name):
        return [(a, k) for n, a, k in self.calls if n == name]


def test_dry_run_on_a_clean_clone_routes_every_binary_through_xet(clone, capsys):
    files = deploy.deploy(None, "me/studio", clone, dry_run=True)
    out = capsys.readouterr().out
    by_path = {f.path: f for f in files}
    assert "notes.txt" in by_path and "outputs/x.png" not in by_path  # the working tree, as git sees it
    assert not any(p.startswith(("tests/", ".ci/")) for p in by_path)
    binaries = [p for p in by_path if p.endswith(BINARY_SUFFIXES)]
    assert any(p.endswith(".safetensors") for p in binaries) and any(p.endswith(".png") for p in binaries)
    for path in binaries:
        assert by_path[path].lfs, path
        assert re.search(rf"^  xet/lfs .*  {re.escape(path)}$", out, flags=re.MULTILINE), path
    app_files = ("app.py", "editmgt_core/app/server.py", "editmgt_core/app/controls.py", "editmgt_core/app/upload.js")
    for path in (*app_files, "requirements.txt", "editmgt_core/assets/default-model/editmgt_studio.json"):
        assert not by_path[path].lfs and re.search(rf"^  git .*  {re.escape(path)}$", out, flags=re.MULTILINE)
    # the Hub refuses binaries over 1 MB outside Xet/LFS: none is routed to plain git
    assert all(f.lfs or not deploy.is_binary(clone / f.path) for f in files)
    assert "sdk_version: " + deploy.pinned("gradio", clone) in out and 'python_version: "3.12"' in out


def test_deploy_uploads_through_the_hub_api(clone, capsys):
    hub = FakeHub(exists=True)
    files = deploy.deploy(hub, "me/studio", clone)
    assert [n for n, _, _ in hub.calls] == ["repo_exists", "add_space_variable", "list_repo_files", "create_commit"]
    assert hub.called("add_space_variable")[0][0] == ("me/studio", "EDITMGT_MODEL", "WeiChow/EditMGT")
    ((_, kw),) = hub.called("create_commit")
    ops = {op.path_in_repo: op for op in kw["operations"]}
    adds = {p for p, op in ops.items() if type(op).__name__ == "CommitOperationAdd"}
    deletes = {p for p, op in ops.items() if type(op).__name__ == "CommitOperationDelete"}
    assert adds == {f.path for f in files} | {".gitattributes"} and deletes == {"old_module.py"}
    readme = ops["README.md"].path_or_fileobj.decode()
    assert readme.startswith(deploy.render_front_matter(deploy.front_matter(clone)))
    assert readme.count("\n---\n") >= 1 and "# EditMGT Studio" in readme  # one front matter, the body kept
    assert "preload_from_hub" not in readme.split("---\n")[1]  # hardware not given: nothing says it is a GPU
    rules = ops[".gitattributes"].path_or_fileobj.decode()
    assert "*.safetensors filter=lfs" in rules and "*.png filter=lfs" in rules and "*.py" not in rules
    assert ops["app.py"].path_or_fileobj == str(clone / "app.py")  # files go as paths: the client streams them
    assert "uploaded" in capsys.readouterr().out


def test_a_zerogpu_space_gets_buildable_requirements_a_preload_and_its_hardware_in_one_call(clone, capsys):
    hub = FakeHub(exists=False)
    deploy.deploy(hub, "me/studio", clone, hardware="zero-a10g", revision="v1")
    assert [n for n, _, _ in hub.calls] == [
        "list_repo_files",
        "model_info",
        "repo_exists",
        "create_repo",
        "list_repo_files",
        "create_commit",
    ]
    ((args, kw),) = hub.called("create_repo")  # hardware and variables with the Space itself: one build, on them
    assert args == ("me/studio",) and kw["repo_type"] == "space" and kw["space_sdk"] == "gradio"
    assert kw["space_hardware"] == "zero-a10g"
    assert kw["space_variables"] == [
        {"key": "EDITMGT_MODEL", "value": "WeiChow/EditMGT"},
        {"key": "EDITMGT_REVISION", "value": "v1"},
    ]
    ((_, kw),) = hub.called("create_commit")
    ops = {op.path_in_repo: op.path_or_fileobj for op in kw["operations"] if hasattr(op, "path_or_fileobj")}
    requirements = ops["requirements.txt"].decode().splitlines()
    assert "torch" in requirements and not any(re.match(r"torch\s*[=<>~]", line) for line in requirements)
    assert "gradio==" + deploy.pinned("gradio", clone) in requirements  # every other pin kept
    readme = ops["README.md"].decode()
    preload = re.search(r"^preload_from_hub:\n  - (\S+) (\S+) (\S+)\n", readme, flags=re.MULTILINE)
    assert preload, readme[:1500]
    model, listed, commit = preload.groups()
    assert model == "WeiChow/EditMGT" and commit == "c0ffee" * 6 + "c0ff"
    listed = set(listed.split(","))
    assert {
        "editmgt/diffusion_pytorch_model.safetensors",
        "llm_encoder/model-00002-of-00002.safetensors",
        "tokenizer/merges.txt",
        "scheduler/scheduler_config.json",
        "model_index.json",
    } <= listed
    assert not any(p.endswith((".bin", ".pt")) or p.startswith("demo/") for p in listed)  # what the app never reads


def test_dry_run_prints_it_all_and_a_cpu_space_preloads_nothing(clone, capsys):
    deploy.deploy(FakeHub(), "me/studio", clone, hardware="zero-a10g", dry_run=True)
    out = capsys.readouterr().out
    assert "hardware: zero-a10g" in out and "EDITMGT_MODEL=WeiChow/EditMGT" in out
    assert "preload_from_hub:\n  - WeiChow/EditMGT editmgt/config.json," in out
    assert re.search(r"^  torch$", out, flags=re.MULTILINE) and "requirements.txt as the Space gets it" in out
    hub = FakeHub()
    deploy.deploy(hub, "me/studio", clone, hardware="cpu-basic", dry_run=True)
    out = capsys.readouterr().out
    assert "preload_from_hub" not in out.split("README.md front matter:")[1].split("---\n", 2)[1]
    assert hub.calls == []  # nothing listed, nothing created


def test_readme_front_matter_is_what_deploy_writes():
    """The repository's own README carries the same front matter, so `hf upload` by hand gives the same Space."""
    readme = (ROOT / "README.md").read_text()
    assert readme.startswith(deploy.render_front_matter(deploy.front_matter(ROOT)))
    import gradio

    assert deploy.pinned("gradio") == gradio.__version__  # sdk_version = the gradio the tests ran with


def test_command_line(clone, capsys, monkeypatch):
    monkeypatch.setattr(deploy, "ROOT", clone)
    assert cli.main(["deploy-space", "--repo", "me/studio", "--dry-run"]) == 0
    assert "through Xet/LFS" in capsys.readouterr().out
    assert cli.main(["deploy-space", "--repo", "not a repo id", "--dry-run"]) == 1
    assert "expected a Space id USER/NAME" in capsys.readouterr().err
    assert cli.main(["deploy-space", "--repo", "me/studio", "--hardware", "zero-gpu", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "--hardware 'zero-gpu': expected one of cpu-basic" in err and "zero-a10g" in err


def test_front_matter_replacement_and_pins(tmp_path):
    fields = {"sdk": "gradio", "sdk_version": "1.0"}
    new = deploy.with_front_matter("---\ntitle: old\n---\n# Body\n", fields)
    assert new == "---\nsdk: gradio\nsdk_version: 1.0\n---\n# Body\n"
    assert deploy.with_front_matter("# Body\n", fields).endswith("---\n# Body\n")
    (tmp_path / "requirements.txt").write_text("numpy==2.0\n")
    with pytest.raises(ValueError, match="pins no 'gradio'"):
        deploy.pinned("gradio", tmp_path)

"""Where a model folder comes from: a local directory, or a hub snapshot (downloaded unless offline), at a revision.

A hub snapshot lives in `.../snapshots/<commit>/`, so the commit a revision resolved to is read from the folder's
name and recorded with every edit. Hub failures are told apart, each with its own fix: a gated repo (accept the
licence, set HF_TOKEN), a repo or revision that does not exist, and an offline machine without the files (the
`hf download` line). Weights are safetensors only: a component stored only in a pickle format is refused with the
file named and how to convert it, and never unpickled.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PUBLISHED_ID = "WeiChow/EditMGT"
SUBFOLDERS = ("editmgt", "vqvae", "text_encoder", "tokenizer", "llm_encoder")
# what a hub download may fetch: the subfolders' configs, tokenizer files and safetensors, never pickled weights
DOWNLOAD_PATTERNS = [f"{s}/*" for s in SUBFOLDERS] + ["scheduler/*", "*.json"]
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle", "*.msgpack", "*.h5"]
DOWNLOAD_HINT = f"hf download {PUBLISHED_ID} " + " ".join(f'--exclude "{p}"' for p in PICKLE_PATTERNS)
_COMMIT = re.compile(r"[0-9a-f]{40}")


class ModelNotFoundError(FileNotFoundError):
    """The model folder or hub snapshot is not available; the message says what to download and where."""


class PickledWeightsError(ValueError):
    """A component's weights exist only in a pickle format, which is never loaded (unpickling runs code)."""


def download_hint(repo_id: str, revision: str | None = None) -> str:
    """The `hf download` line that fetches what the loader reads (no pickled weights)."""
    hint = DOWNLOAD_HINT.replace(PUBLISHED_ID, repo_id)
    return hint if revision is None else f"{hint} --revision {revision}"


def snapshot_commit(folder: Path) -> str | None:
    """The commit of a hub-cache snapshot folder (`.../snapshots/<commit>`), else None (a plain local folder)."""
    folder = Path(folder)
    return folder.name if folder.parent.name == "snapshots" and _COMMIT.fullmatch(folder.name) else None


def _hub_error(err: Exception, repo_id: str, revision: str | None) -> ModelNotFoundError:
    """The hub's failure as one message naming its fix."""
    from huggingface_hub import errors

    where = f"{repo_id!r}" + ("" if revision is None else f" at revision {revision!r}")
    home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    if isinstance(err, errors.GatedRepoError):
        return ModelNotFoundError(
            f"model {where} is gated: accept its licence on https://huggingface.co/{repo_id} with your account, then "
            "set HF_TOKEN to a read token of that account (on a Space: a secret named HF_TOKEN)"
        )
    if isinstance(err, errors.RevisionNotFoundError):
        return ModelNotFoundError(
            f"model {repo_id!r} has no revision {revision!r}: pass a branch, tag or commit "
            f"that exists (see https://huggingface.co/{repo_id}/commits/main)"
        )
    if isinstance(err, errors.RepositoryNotFoundError):
        return ModelNotFoundError(
            f"model {repo_id!r} was not found on the hub: check the id, or for a private repo set HF_TOKEN to a "
            "token that can read it"
        )
    if isinstance(err, errors.LocalEntryNotFoundError):
        return ModelNotFoundError(
            f"model {where} is not in the hub cache ({home}) and this machine is offline (HF_HUB_OFFLINE=1 or no "
            f"network). Download it once where there is internet access: `{download_hint(repo_id, revision)}`, or "
            f"pass a local folder with the subfolders {', '.join(SUBFOLDERS[:2])} and the text encoders."
        )
    return ModelNotFoundError(
        f"model {where} could not be downloaded ({type(err).__name__}: {err}). Download it with "
        f"`{download_hint(repo_id, revision)}`, or pass a local folder."
    )


def resolve(path_or_id: str | Path, revision: str | None = None) -> Path:
    """A local folder as is; otherwise a hub repo id at `revision` (default: main) from the local cache, downloaded
    unless HF_HUB_OFFLINE=1."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ValueError(f"revision {revision!r} applies to hub ids, not to the local folder {str(path)!r}")
        return path
    repo_id = str(path_or_id)
    if repo_id.count("/") != 1 or path.exists() or repo_id.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"model folder {path_or_id!r} does not exist")
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=DOWNLOAD_PATTERNS,
                ignore_patterns=PICKLE_PATTERNS,
                local_files_only=offline,
            )
        )
    except Exception as err:
        raise _hub_error(err, repo_id, revision) from err


def require_safetensors(folder: Path, target: str) -> None:
    """Return if `folder` holds safetensors weights; PickledWeightsError naming the pickled file found and how to
    convert it to `target` (the safetensors name its loader reads); ModelNotFoundError when it holds neither."""
    if any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for pattern in PICKLE_PATTERNS for p in folder.glob(pattern))
    if pickled:
        source = folder / pickled[0]
        raise PickledWeightsError(
            f"{folder} holds its weights only as {pickled[0]} (a pickle format, never loaded here: unpickling runs "
            f'code). Convert it once, where you trust the file: python -c "import torch; from safetensors.torch '
            f"import save_file; save_file(torch.load('{source}', weights_only=True), '{folder / target}')\""
        )
    raise ModelNotFoundError(f"{folder} holds no weights (no *.safetensors)")

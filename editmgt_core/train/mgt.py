"""Train a small EditMGT on the edit world with the paper's Eq. 1, then export it as a model folder.

    python -m editmgt_core.train.mgt --vq runs/vq/vqvae --out runs/editmgt --steps 3000   # resumable: run it again
    python -m editmgt_core.train.mgt --vq runs/vq/vqvae --out runs/editmgt --export editmgt_core/assets/default-model
    python -m editmgt_core.train.mgt ... --workers 15 --batch 1024 --minutes 7   # a GPU run with a wall-clock budget
    python -m editmgt_core.train.mgt ... --init editmgt_core/assets/default-model --seed 1   # fine-tune on new records
    python -m editmgt_core.train.mgt ... --categories add=1.5,style=0.5   # draw some edit categories more often
    python -m editmgt_core.train.mgt ... --phrasing mixed   # templates and training phrasing families, half and half
    python -m editmgt_core.train.mgt ... --slices small=0.1,overlap=0.1   # a share of small / overlapping targets

Eq. 1: cross-entropy on the masked target tokens only; the mask ratio r = cos(pi/2 u), u ~ U(0, 1) (the sampler's
`cosine_schedule` at a uniform time: the truncated arccos distribution, at least one token masked); conditioned on
the source tokens through attention injection (the same `EditMGTTransformer`, γ = 1); the instruction is replaced by
the empty prompt 10% of the time so classifier-free guidance works. A fresh model starts from AdaLN-Zero
(`initialize_weights`). Data (world records -> VQ tokens, instructions -> MiniLM features) is prepared once and
cached (datasets.py); the schedule, time budget and step loop are runner.py's.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from editmgt_core.model.checkpoint import CheckpointError, load_state_dict, read_weights, save_transformer
from editmgt_core.model.transformer import EditMGTTransformer
from editmgt_core.sampler.schedule import cosine_schedule
from editmgt_core.train import runner
from editmgt_core.train.datasets import (
    MINILM,
    VQ_RANGE,
    category_weights,
    check_phrasing,
    prepare_data,
    prepare_tokens,
    prepare_world,
    slice_shares,
)
from editmgt_core.train.mgt_config import TrainConfig
from editmgt_core.world import samples


def default_device() -> torch.device:
    """Where training and data preparation run: the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def timestep_for(ratio: torch.Tensor, steps: int) -> torch.Tensor:
    """The sampler's timestep (N-1 .. 0) whose step starts with this fraction masked, under the cosine schedule."""
    k = (2 / math.pi) * torch.arccos(ratio.clamp(0, 1)) * steps
    return (steps - 1 - (k + 1e-4).floor()).clamp(0, steps - 1).long()  # 1e-4: arccos(cos(x)) may fall short


def training_batch(data, cfg: TrainConfig, mask_id: int, g: torch.Generator, device):
    """One batch of Eq. 1: masked targets, labels (-100 where not masked), source tokens, text, timestep."""
    idx = torch.randint(len(data["src"]), (cfg.batch,), generator=g)
    ratio = cosine_schedule(torch.rand(cfg.batch, generator=g))  # the sampler's schedule at a uniform time
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
    """Model, AdamW moments and RNG state in checkpoint.safetensors, step and loss history in progress.json."""
    state = {**runner.prefixed("model.", model.state_dict()),
             **runner.prefixed("opt.", runner.optimizer_tensors(model, opt)), "rng": g.get_state()}  # fmt: skip
    runner.save_tensors(state, out / "checkpoint.safetensors")
    (out / "progress.json").write_text(json.dumps({"step": step, "history": history}))


def load_checkpoint(out: Path, model, opt, g: torch.Generator) -> tuple[int, list]:
    """Restore model, optimizer and RNG in place from a run folder; returns (step, loss history)."""
    state = load_file(out / "checkpoint.safetensors")
    load_state_dict(model, runner.unprefixed("model.", state))
    runner.load_optimizer_tensors(model, opt, runner.unprefixed("opt.", state))
    g.set_state(state["rng"])
    progress = json.loads((out / "progress.json").read_text())
    return progress["step"], progress["history"]


# what a run folder's data cache was made with
DATA_FIELDS = ("records", "seed", "categories", "phrasing", "slices", "size", "text_len")
MODEL_FIELDS = ("dim", "dual", "single", "downsample")  # what its checkpoint was made with


def check_resume(out: Path, saved: TrainConfig, cfg: TrainConfig) -> None:
    """Refuse settings a run folder's data cache or checkpoint was not made with: resuming would silently ignore them
    (the cached data) or fail half-way (the checkpoint's shapes). CheckpointError names each flag."""
    what = []
    if any((out / name).exists() for name in ("world.safetensors", "data.safetensors", "tokens.safetensors",
                                              "token_chunks")):  # fmt: skip
        what += [(name, "data") for name in DATA_FIELDS]
    if (out / "checkpoint.safetensors").is_file():
        what += [(name, "checkpoint") for name in MODEL_FIELDS]
    changed = [f"--{name.replace('_', '-')} {getattr(cfg, name)!r} (its {kind} has {getattr(saved, name)!r})"
               for name, kind in what if getattr(cfg, name) != getattr(saved, name)]  # fmt: skip
    if changed:
        raise CheckpointError(f"{out} was made with other settings: {'; '.join(changed)}; use a new --out, or leave "
                              "these flags out to resume")  # fmt: skip


def run_config(out: Path, overrides: dict) -> TrainConfig:
    """The run folder's saved config (or the defaults) with `overrides` on top, written back to train_config.json;
    settings its data cache or checkpoint was not made with are refused first (see check_resume)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "train_config.json"
    saved = TrainConfig(**json.loads(path.read_text())) if path.is_file() else TrainConfig()
    cfg = TrainConfig(**{**asdict(saved), **overrides})
    if path.is_file():
        check_resume(out, saved, cfg)
    path.write_text(json.dumps(asdict(cfg), indent=2))
    return cfg


def start(out: Path, model: EditMGTTransformer, opt, g: torch.Generator, init: str | None) -> tuple[int, list]:
    """Resume the run folder's checkpoint, else load `init`'s weights (a fine-tune: fresh optimizer and schedule),
    else initialize a fresh model; returns (step, loss history)."""
    if (out / "checkpoint.safetensors").is_file():
        step, history = load_checkpoint(out, model, opt, g)
        ignored = f" (--init ignored: {out} already has a checkpoint)" if init else ""
        print(f"[train] resumed at step {step}{ignored}", flush=True)
        return step, history
    if init:
        try:
            load_state_dict(model, read_weights(Path(init) / "editmgt"), dtype=torch.float32)
        except CheckpointError as e:
            raise CheckpointError(f"--init {init}: {e} (pass the --dim/--dual/--single/--downsample it was "
                                  "trained with)") from None  # fmt: skip
        print(f"[train] initialized from {init}", flush=True)
    else:
        model.initialize_weights()
    return 0, []


@dataclass
class LossLog:
    """The run's smoothed loss history [[step, loss], ...] and the progress bar's readout, updated at log steps."""

    history: list
    bar: object  # tqdm
    cfg: TrainConfig
    smooth: float | None = None
    clock: float = field(default_factory=time.perf_counter)

    def __call__(self, step: int, losses: list[torch.Tensor], lr: float) -> None:
        mean = sum(losses).item() / self.cfg.log_every  # reading the loss waits for the GPU, so only at log steps
        keep = 0.98**self.cfg.log_every  # the same smoothing per step whatever the logging interval
        self.smooth = mean if self.smooth is None else keep * self.smooth + (1 - keep) * mean
        rate = self.cfg.log_every * self.cfg.batch / (time.perf_counter() - self.clock)
        self.clock = time.perf_counter()
        self.history.append([step, round(self.smooth, 4)])
        self.bar.set_postfix(loss=f"{self.smooth:.3f}", samples_per_s=f"{rate:.1f}", lr=f"{lr:.2e}")


def train(
    out: Path, cfg: TrainConfig, vq: Path, *, init: str | None = None, workers: int = 1, text_encoder=None,
    minutes: float | None = None,
) -> Path:  # fmt: skip
    """Train (or resume) the run folder `out` with `cfg` on tokens of the VQ model `vq`; returns `out`.

    init: a model folder to fine-tune (ignored when `out` has a checkpoint). minutes: a wall-clock budget, data
    preparation included; training stops with a checkpoint when it is spent and the cosine decay spans the rest.
    """
    stop = runner.deadline(minutes)
    device = default_device()
    torch.manual_seed(cfg.seed)
    data = prepare_data(out, vq, cfg, workers, text_encoder, device)
    if device.type == "cuda":
        data = {k: v.to(device) for k, v in data.items()}
        torch.backends.cuda.matmul.allow_tf32 = True
    codebook = int(json.loads((vq / "config.json").read_text())["num_vq_embeddings"])
    model = EditMGTTransformer(cfg.model_config(codebook)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda")  # fmt: skip
    g = torch.Generator().manual_seed(cfg.seed + 1)
    first, history = start(out, model, opt, g, init)
    micro = torch.tensor([[cfg.size, cfg.size, 0.0, 0.0, 6.0]], device=device).expand(cfg.batch, -1)
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=first, desc="train", mininterval=10, ascii=True)
    # On a GPU the matmuls run in bf16 autocast (weights, optimizer and loss stay fp32); on CPU plain fp32.
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")

    def step(_: int) -> torch.Tensor:
        batch = training_batch(data, cfg, model.config.mask_id, g, device)
        with autocast:
            logits, _ = model(batch["tokens"], batch["txt"], batch["pooled"], micro, batch["timestep"], batch["cond"])
        loss = F.cross_entropy(logits.float(), batch["labels"], ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        bar.update(1)
        return loss.detach()

    def checkpoint(done: int) -> None:
        save_checkpoint(out, model, opt, done, g, history)
        runner.plot_loss(history, out / "loss.png")

    budget = runner.Budget(stop, time.time())
    runner.run_steps(step, opt, cfg, first, budget, checkpoint, LossLog(history, bar, cfg), "train")
    bar.close()
    return out


def export(out: Path, dest: Path, vq_dir: Path, settings: str | None = None) -> Path:
    """Write run folder `out`'s model as a model folder `dest` in the published layout (fp16 transformer weights),
    with the VQ model `vq_dir`; `settings`: a JSON file of editmgt_studio.json overrides."""
    import shutil

    cfg = TrainConfig(**json.loads((out / "train_config.json").read_text()))
    codebook = int(json.loads((vq_dir / "config.json").read_text())["num_vq_embeddings"])
    with torch.device("meta"):
        model = EditMGTTransformer(cfg.model_config(codebook))
    load_state_dict(model, runner.unprefixed("model.", load_file(out / "checkpoint.safetensors")))
    dest.mkdir(parents=True, exist_ok=True)
    save_transformer(model, dest / "editmgt", dtype=torch.float16, max_shard_mb=15)
    shutil.copytree(vq_dir, dest / "vqvae", dirs_exist_ok=True)
    studio = {
        "name": "EditMGT-World, the small bundled model: coloured shapes on simple backgrounds only (its training "
        "world); for photos load WeiChow/EditMGT on a GPU",
        "text": {**MINILM, "max_length": cfg.text_len},
        "pixels": cfg.size * cfg.size,
        "attention_layers": list(range(cfg.dual + cfg.single // 2, cfg.dual + cfg.single)),
        "image_range": list(VQ_RANGE),
        "defaults": {"steps": cfg.sample_steps, "guidance_scale": 2.0, "gamma": 1.0, "lam": 0.3, "negative_prompt": ""},
    }
    if settings:
        studio.update(json.loads(Path(settings).read_text()))
    (dest / "editmgt_studio.json").write_text(json.dumps(studio, indent=2) + "\n")
    return dest


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m editmgt_core.train.mgt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--vq", help="trained VQModel folder (config.json + safetensors); required to train and export")
    p.add_argument("--out", required=True, help="run folder: data cache, checkpoint, loss.png (resumes from it)")
    p.add_argument("--export", help="write the trained model to this model folder instead of training")
    p.add_argument("--settings", help="JSON file of editmgt_studio.json overrides for --export")
    p.add_argument("--prepare-world", action="store_true", help="only generate the world records and text features")
    p.add_argument("--prepare-tokens", action="store_true",
                   help="only generate the world records' VQ tokens (no text encoder, about 1.3 KB per record: make "
                        "them on a CPU, train elsewhere from the same run folder)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--workers", type=int, default=1, help="processes that generate the world records (default 1)")
    p.add_argument("--init", help="start a new run from this model folder's transformer weights (same architecture)")
    p.add_argument("--text-encoder", help="MiniLM folder to use instead of the packaged one (same model)")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget for this run, data preparation included: training stops (with a "
                        "checkpoint) when it is spent, and the cosine learning-rate decay spans the training part "
                        "of it instead of --steps")  # fmt: skip
    for name, spec in TrainConfig.__dataclass_fields__.items():
        kind = _flag if isinstance(spec.default, bool) else type(spec.default)
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                       help=f"(default {spec.default}, or the run folder's saved value)")  # fmt: skip
    args = p.parse_args(argv)
    try:
        if args.seed == samples.EVALUATION_SEED:
            raise ValueError(f"--seed {args.seed} is the world's evaluation seed: train on any other")
        if args.categories is not None:
            category_weights(args.categories)
        if args.slices is not None:
            slice_shares(args.slices)
        if args.phrasing is not None:
            check_phrasing(args.phrasing)
    except ValueError as e:
        p.error(str(e))
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    overrides = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    if args.prepare_tokens:
        if not args.vq:
            p.error("--prepare-tokens needs --vq")
        cfg = run_config(out, overrides)
        prepare_tokens(out, Path(args.vq), cfg, args.workers, default_device())
    elif args.prepare_world:
        prepare_world(out, TrainConfig(**overrides), args.workers, args.text_encoder, default_device())
    elif args.export:
        print(export(out, Path(args.export), Path(args.vq), args.settings))
    else:
        cfg = run_config(out, overrides)
        print(train(out, cfg, Path(args.vq), init=args.init, workers=args.workers, text_encoder=args.text_encoder,
                    minutes=args.minutes))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Train the VQ tokenizer (a diffusers `VQModel`) on edit-world images: 64x64 RGB -> 16x16 codebook tokens.

Data is generated on the fly from `samples.record(seed, i)` (sources and targets; fresh images every step, so there
is no overfitting to a pool). Loss = L1 + MSE reconstruction + the VQ loss from `model.quantize` (standard commitment
with beta = 0.25). Unused codes are restarted from random encoder outputs every `restart_every` steps so codebook usage
stays high. Checkpoints (weights, optimizer tensors, JSON state) go to `out/ckpt/step_XXXXXXX/`; `--resume` continues
from the latest. The schedule, time budget and step loop are runner.py's; the world images come from datasets.py,
the held-out measures from vq_eval.py. The final model is `out/vqvae/` (`VQModel.save_pretrained`) and
`out/vq_report.json` holds held-out PSNR and codebook usage.

On 2 busy CPU cores a 64x64 step (batch 16) takes ~0.85 s, so most steps can use random 32x32 crops (`--crop 32
--crop-until K`, ~0.25 s/step; the model is fully convolutional) and the last steps full images, which re-adapts the
GroupNorm statistics to whole images.

Codebook size: 128, not more. A 1024-code tokenizer trained this way (99% usage, perplexity 464) splits one flat
colour over hundreds of codes (flat grey: 579 codes; `flat_code_purity` 0.16), because its codes are dense enough
that the encoder's context (GroupNorm statistics, nearby edges) decides between them. The transformer must then
predict codes no pixel explains: after 8,300 steps it still copied only 71% of the unchanged tokens. With 128 codes
(purity 0.34; 0.79 away from edges) it copies 95% after 600 steps, for 2.6 dB less PSNR (24.0 against 26.6 dB).

`--decoder-from FOLDER` fine-tunes the decoder of a trained tokenizer and nothing else: the encoder, quant_conv and
codebook are frozen, so every image keeps its tokens and a transformer trained on them still fits. The report adds
the held-out PSNR before (`psnr_before`) and the share of held-out tokens that stayed the same (`codes_unchanged`,
1.0 by construction). The first tokenizer's decoder had 2,500 mostly-cropped steps; this one is cheap (0.45 s/step
at batch 16, 64 px, 2 threads) and runs at full size.

CLI: `python -m editmgt_core.train.vq --out runs/vq --steps N --batch 16 [--resume] [--seed S] [--crop 32
--crop-until K] [--codebook N] [--decoder-from FOLDER] [--workers W] [--minutes M]`. It runs on the GPU when there is
one; there `--workers` (processes drawing the world images) keeps it fed, and `--minutes` bounds the run by the wall
clock (training stops with a checkpoint when the budget is spent; the cosine decay spans the budget).
"""

import argparse
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import VQModel
from safetensors.torch import load_file, save_file

from editmgt_core.train import runner
from editmgt_core.train.datasets import random_crops, world_batches, world_images
from editmgt_core.train.vq_eval import code_indices, evaluate, psnr
from editmgt_core.train.vq_model import PRESETS, TrainConfig, VQConfig, build_vq, vq_config_of


@torch.no_grad()
def restart_dead_codes(model: VQModel, usage: torch.Tensor, latents: torch.Tensor, gen: torch.Generator) -> int:
    """Re-seed codes with zero `usage` from random encoder latents (B, D, h, w) plus small noise; returns how many."""
    dead = (usage == 0).nonzero().flatten()
    if dead.numel() == 0:
        return 0
    flat = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    pick = torch.randint(flat.shape[0], (dead.numel(),), generator=gen)
    noise = torch.randn(dead.numel(), flat.shape[1], generator=gen).to(flat.device) * 0.01 * flat.std()
    model.quantize.embedding.weight[dead] = flat[pick] + noise
    return dead.numel()


# ---------------------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    out: Path, step: int, model: VQModel, opt: torch.optim.Optimizer, usage: torch.Tensor, meta: dict, keep: int = 2
) -> Path:
    """Write out/ckpt/step_XXXXXXX/{model,optim}.safetensors + state.json atomically; keep the newest `keep`."""
    root = out / "ckpt"
    final, tmp = root / f"step_{step:07d}", root / f".tmp_step_{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    tensors = {**runner.optimizer_tensors(model, opt), "usage": usage}
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, tmp / "optim.safetensors")
    (tmp / "state.json").write_text(json.dumps({"step": step, **meta}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old)
    return final


def latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((out / "ckpt").glob("step_*"))
    return ckpts[-1] if ckpts else None


def load_checkpoint(path: Path, model: VQModel, opt: torch.optim.Optimizer) -> tuple[dict, torch.Tensor]:
    """Restore model and optimizer in place; returns (state.json dict, codebook usage counts).

    Reads both optimizer layouts: tensors keyed by parameter name (`runner.optimizer_tensors`), and the earlier
    '<index>.<slot>' keys of `opt.state_dict()` with its param_groups in state.json.
    """
    state = json.loads((path / "state.json").read_text())
    model.load_state_dict(load_file(path / "model.safetensors"))
    tensors = load_file(path / "optim.safetensors")
    usage = tensors.pop("usage")
    if "param_groups" not in state:
        runner.load_optimizer_tensors(model, opt, tensors)
        return state, usage
    opt_state: dict[int, dict] = {}
    for key, v in tensors.items():
        i, name = key.split(".", 1)
        opt_state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    return state, usage


# ---------------------------------------------------------------------------------------------------- training


def train_step(model: VQModel, x: torch.Tensor, opt: torch.optim.Optimizer) -> tuple[dict, torch.Tensor]:
    """One optimizer step on images x (B, 3, H, W) in [-1, 1]; returns (metrics, detached latents)."""
    latents = model.encode(x).latents  # (B, D, H/4, W/4)
    out = model.decode(latents)
    l1, mse = F.l1_loss(out.sample, x), F.mse_loss(out.sample, x)
    vq = out.commit_loss.mean()
    loss = l1 + mse + vq
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    metrics = {"loss": loss.item(), "l1": l1.item(), "vq": vq.item(), "psnr": psnr(out.sample.detach(), x)}
    return metrics, latents.detach()


def decoder_step(model: VQModel, x: torch.Tensor, opt: torch.optim.Optimizer) -> tuple[dict, torch.Tensor]:
    """One step on the decoder only: the frozen encoder and codebook give x's codes, the decoder learns to draw x from
    them (L1 + MSE). The tokens of any image stay exactly what they were."""
    with torch.no_grad():
        latents = model.encode(x).latents
    out = model.decode(latents).sample
    l1, mse = F.l1_loss(out, x), F.mse_loss(out, x)
    loss = l1 + mse
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"loss": loss.item(), "l1": l1.item(), "vq": 0.0, "psnr": psnr(out.detach(), x)}, latents


def decoder_parameters(model: VQModel) -> list[torch.nn.Parameter]:
    """Freeze everything that decides the tokens (encoder, quant_conv, codebook); return the decoder's parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = [*model.post_quant_conv.parameters(), *model.decoder.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def resume_run(out: Path, model: VQModel, opt, vq_cfg: VQConfig, cfg: TrainConfig, usage: torch.Tensor) -> int:
    """Load the latest checkpoint of `out` (if any) into model, opt and usage; returns its step (0: none).
    ValueError when it was made with another tokenizer config or --decoder-from."""
    ckpt = latest_checkpoint(out)
    if ckpt is None:
        return 0
    saved = json.loads((ckpt / "state.json").read_text())
    if saved["vq_config"] != json.loads(json.dumps(dataclasses.asdict(vq_cfg))):
        raise ValueError(f"{ckpt} holds a tokenizer with {saved['vq_config']}; resume with the same --preset "
                         "and --codebook")  # fmt: skip
    if saved["train_config"].get("decoder_from", "") != cfg.decoder_from:
        raise ValueError(f"{ckpt} was trained with --decoder-from {saved['train_config'].get('decoder_from')!r}; "
                         "resume with the same")  # fmt: skip
    state, saved_usage = load_checkpoint(ckpt, model, opt)
    usage.copy_(saved_usage)
    print(f"[vq] resumed from {ckpt} at step {state['step']}", flush=True)
    return state["step"]


@dataclass
class StepLog:
    """Prints the mean metrics of the steps since the last log, their speed and the time left."""

    cfg: TrainConfig
    budget: runner.Budget
    clock: float  # time.time() of the last log (steps/s over the last window: crop steps are faster)

    def __call__(self, done: int, window: list[dict], lr: float) -> None:
        now = time.time()
        sps, self.clock = len(window) / max(now - self.clock, 1e-9), now
        eta = (self.cfg.steps - done) / max(sps, 1e-9) / 60
        if self.budget.deadline is not None:
            eta = min(eta, (self.budget.deadline - now) / 60)
        avg = {k: sum(m[k] for m in window) / len(window) for k in window[0]}
        print(f"[vq] step {done}/{self.cfg.steps} loss {avg['loss']:.4f} l1 {avg['l1']:.4f} vq {avg['vq']:.4f} "
              f"psnr {avg['psnr']:.2f} dB lr {lr:.2e} {sps:.2f} steps/s eta {eta:.1f} min", flush=True)  # fmt: skip


def train(
    out: Path, vq_cfg: VQConfig, cfg: TrainConfig, resume: bool = False, workers: int = 1, minutes: float | None = None
) -> dict:
    """Train (or resume) into `out`; returns the held-out report also written to out/vq_report.json.

    Runs on the GPU when there is one. workers > 1 draws the world images in that many processes (see world_batches).
    minutes: a wall-clock budget for this call; training stops with a checkpoint when it is spent, and the cosine
    decay spans the budget instead of cfg.steps (a resumed call starts a fresh cosine)."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    model = build_vq(vq_cfg).to(device)
    model.quantize.legacy = False  # standard VQ-VAE loss: codebook term + beta * commitment (training-only flag)
    decoder_only = bool(cfg.decoder_from)
    held_out = world_images(cfg.seed + 1_000_003, 0, cfg.eval_images, vq_cfg.sample_size).to(device)
    before = decoder_baseline(model, cfg.decoder_from, held_out) if decoder_only else {}
    params = decoder_parameters(model) if decoder_only else list(model.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.99))
    usage = torch.zeros(vq_cfg.num_vq_embeddings)
    start = resume_run(out, model, opt, vq_cfg, cfg, usage) if resume else 0
    if start:
        gen.manual_seed(cfg.seed + start)
    meta = {"vq_config": dataclasses.asdict(vq_cfg), "train_config": dataclasses.asdict(cfg)}
    t0 = time.time()
    budget = runner.Budget(runner.deadline(minutes, t0), t0)
    batches = world_batches(cfg.seed, cfg.batch, vq_cfg.sample_size, start, cfg.steps, workers)

    def step(i: int) -> dict:
        x = next(batches)
        if cfg.crop and i < cfg.crop_until:
            x = random_crops(x, cfg.crop, torch.Generator().manual_seed(cfg.seed * 1_000_003 + i))
        x = x.to(device)
        if i == 0 and not decoder_only:  # data-dependent codebook init: codes start on real encoder outputs
            with torch.no_grad():
                restart_dead_codes(model, usage, model.encode(x).latents, gen)
        metrics, latents = (decoder_step if decoder_only else train_step)(model, x, opt)
        usage.add_(torch.bincount(code_indices(model, latents).flatten(), minlength=usage.numel()).cpu())
        if cfg.restart_every and (i + 1) % cfg.restart_every == 0 and not decoder_only:
            used = (usage > 0).float().mean().item()
            n_dead = restart_dead_codes(model, usage, latents, gen) if i + 1 < cfg.steps * 0.9 else 0
            print(f"[vq] step {i + 1}: window usage {used:.3f}, restarted {n_dead} dead codes", flush=True)
            usage.zero_()
        return metrics

    save = lambda done: save_checkpoint(out, done, model, opt, usage, meta)
    done = runner.run_steps(step, opt, cfg, start, budget, save, StepLog(cfg, budget, t0), "vq", log_last=True)
    batches.close()
    model.quantize.legacy = True
    model.save_pretrained(out / "vqvae", safe_serialization=True)
    report = {**evaluate(model, held_out), "steps": done, **meta, "train_seconds": round(time.time() - t0, 1)}
    if decoder_only:
        with torch.no_grad():
            same = (code_indices(model, model.encode(held_out).latents) == before["codes"]).float().mean().item()
        report.update(psnr_before=before["psnr"], codes_unchanged=same)
    (out / "vq_report.json").write_text(json.dumps(report, indent=1))
    print(f"[vq] held-out psnr {report['psnr']:.2f} dB, codebook usage {report['codebook_usage']:.3f}, "
          f"perplexity {report['perplexity']:.1f}; model in {out / 'vqvae'}", flush=True)  # fmt: skip
    return report


def decoder_baseline(model: VQModel, folder: str, held_out: torch.Tensor) -> dict:
    """Load the tokenizer whose decoder is fine-tuned; its held-out PSNR and codes (B, h, w) before training."""
    model.load_state_dict(load_file(Path(folder) / "diffusion_pytorch_model.safetensors"))
    before = evaluate(model, held_out)
    with torch.no_grad():
        before["codes"] = code_indices(model, model.encode(held_out).latents)
    print(f"[vq] decoder of {folder}: held-out psnr {before['psnr']:.2f} dB before", flush=True)
    return before


def main(args: argparse.Namespace) -> dict:
    if args.preset not in PRESETS:
        raise ValueError(f"unknown preset {args.preset!r}; expected one of {sorted(PRESETS)}")
    if args.steps < 1 or args.batch < 1:
        raise ValueError(f"--steps and --batch must be >= 1, got {args.steps} and {args.batch}")
    if args.minutes is not None and not args.minutes > 0:
        raise ValueError(f"--minutes must be > 0, got {args.minutes}")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    torch.set_num_threads(args.threads)
    defaults = TrainConfig()
    cfg = TrainConfig(
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        ckpt_every=args.ckpt_every or defaults.ckpt_every,
        log_every=args.log_every,
        restart_every=args.restart_every,
        warmup=min(defaults.warmup, args.steps),
        eval_images=args.eval_images,
        crop=args.crop,
        crop_until=args.crop_until,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vq_cfg = PRESETS[args.preset]
    if args.decoder_from:
        if args.codebook is not None:
            raise ValueError("--codebook cannot change a trained tokenizer's codebook (--decoder-from keeps it)")
        folder = Path(args.decoder_from)
        if not (folder / "config.json").is_file() or not (folder / "diffusion_pytorch_model.safetensors").is_file():
            raise ValueError(f"--decoder-from {folder}: expected a vqvae folder (config.json and "
                             "diffusion_pytorch_model.safetensors)")  # fmt: skip
        cfg = dataclasses.replace(cfg, decoder_from=str(folder), restart_every=0)
        vq_cfg = vq_config_of(folder)
    elif args.codebook is not None:
        if args.codebook < 2:
            raise ValueError(f"--codebook must be >= 2, got {args.codebook}")
        vq_cfg = dataclasses.replace(vq_cfg, num_vq_embeddings=args.codebook)
    return train(out, vq_cfg, cfg, resume=args.resume, workers=args.workers, minutes=args.minutes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = TrainConfig()
    p = argparse.ArgumentParser(description="Train the VQ tokenizer (diffusers VQModel) on edit-world images.")
    p.add_argument("--out", required=True, help="output folder: ckpt/, vqvae/, vq_report.json")
    p.add_argument("--steps", type=int, default=d.steps, help="total training steps")
    p.add_argument("--batch", type=int, default=d.batch, help="images per step")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--seed", type=int, default=d.seed, help="world stream seed")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--preset", default="small", help=f"model size, one of {sorted(PRESETS)}")
    p.add_argument("--codebook", type=int, help="codebook size (image-token vocabulary); default: the preset's")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="checkpoint period in steps")
    p.add_argument("--log-every", type=int, default=d.log_every, help="log period in steps")
    p.add_argument("--restart-every", type=int, default=d.restart_every, help="dead-code restart period; 0 = off")
    p.add_argument("--eval-images", type=int, default=d.eval_images, help="held-out images for the report")
    p.add_argument("--crop", type=int, default=d.crop, help="train on random CROPxCROP patches before --crop-until")
    p.add_argument("--crop-until", type=int, default=d.crop_until, help="step from which full images are used")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=1, help="processes that draw the world images (1: in-process)")
    p.add_argument(
        "--minutes",
        type=float,
        help="wall-clock budget: stop with a checkpoint when it is spent; the cosine decay spans it instead of --steps",
    )
    p.add_argument(
        "--decoder-from",
        help="a trained vqvae folder: fine-tune its decoder only; the encoder and codebook stay frozen, so every "
        "image keeps its tokens and a transformer trained on them still fits",
    )
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())

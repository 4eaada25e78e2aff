"""Train the VQ tokenizer (a diffusers `VQModel`) on edit-world images: 64x64 RGB -> 16x16 codebook tokens.

Data is generated on the fly from `world.record(seed, i)` (sources and targets; fresh images every step, so there is
no overfitting to a pool). Loss = L1 + MSE reconstruction + the VQ loss from `model.quantize` (standard commitment with
beta = 0.25). Unused codes are restarted from random encoder outputs every `restart_every` steps so codebook usage
stays high. Checkpoints (weights, optimizer tensors, JSON state) go to `out/ckpt/step_XXXXXXX/`; `--resume` continues
from the latest. The final model is `out/vqvae/` (`VQModel.save_pretrained`) and `out/vq_report.json` holds held-out
PSNR and codebook usage.

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

CLI: `python -m editmgt_core.train_vq --out runs/vq --steps N --batch 16 [--resume] [--seed S] [--crop 32
--crop-until K] [--codebook N] [--decoder-from FOLDER] [--workers W] [--minutes M]`. It runs on the GPU when there is
one; there `--workers` (processes drawing the world images) keeps it fed, and `--minutes` bounds the run by the wall
clock (training stops with a checkpoint when the budget is spent; the cosine decay spans the budget).
"""

import argparse
import dataclasses
import itertools
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import VQModel
from safetensors.torch import load_file, save_file

from editmgt_core import world


@dataclass(frozen=True)
class VQConfig:
    block_out_channels: tuple[int, ...] = (16, 32, 64)  # 3 blocks -> downsampling factor 4 (64 px -> 16 tokens)
    layers_per_block: int = 1  # resnets per encoder block (decoder uses one more)
    latent_channels: int = 16  # encoder output / decoder input channels
    num_vq_embeddings: int = 128  # codebook size = image-token vocabulary (see the module note on code purity)
    vq_embed_dim: int = 16  # codebook vector size
    norm_num_groups: int = 8  # GroupNorm groups; must divide every block width
    mid_block_add_attention: bool = False  # attention at 16x16 costs ~10% time for no gain on this data
    sample_size: int = 64  # training image side in pixels


PRESETS = {
    "small": VQConfig(),
    "tiny": VQConfig(
        block_out_channels=(8, 16, 16),
        latent_channels=8,
        num_vq_embeddings=64,
        vq_embed_dim=8,
        norm_num_groups=4,
        sample_size=32,
    ),
}


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000  # total optimizer steps
    batch: int = 16  # images per step (half sources, half targets)
    lr: float = 1e-3  # peak Adam learning rate (linear warmup, cosine decay to 10%)
    warmup: int = 100  # warmup steps
    seed: int = 0  # world stream seed; held-out images use seed + 1_000_003
    restart_every: int = 200  # dead-code restart period (steps); 0 disables
    ckpt_every: int = 500  # checkpoint period (steps)
    log_every: int = 25  # log period (steps)
    eval_images: int = 256  # held-out images for the final report
    crop: int = 0  # before `crop_until`, train on random crop x crop patches (4x cheaper steps at 32); 0 = off
    crop_until: int = 0  # first step trained on full images again (the fully convolutional model transfers)
    decoder_from: str = ""  # a trained vqvae folder: train its decoder only (encoder and codebook frozen); "" = off


def build_vq(cfg: VQConfig) -> VQModel:
    """A fresh VQModel with len(block_out_channels) encoder/decoder blocks."""
    n = len(cfg.block_out_channels)
    if any(c % cfg.norm_num_groups for c in cfg.block_out_channels):
        raise ValueError(
            f"norm_num_groups={cfg.norm_num_groups} must divide block_out_channels={cfg.block_out_channels}"
        )
    return VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        sample_size=cfg.sample_size,
        num_vq_embeddings=cfg.num_vq_embeddings,
        norm_num_groups=cfg.norm_num_groups,
        vq_embed_dim=cfg.vq_embed_dim,
        mid_block_add_attention=cfg.mid_block_add_attention,
    )


def world_images(seed: int, start: int, n: int, size: int) -> torch.Tensor:
    """(n, 3, size, size) float in [-1, 1]: sources and targets of records start, start+1, ... of stream `seed`."""
    imgs = []
    for i in range(start, start + (n + 1) // 2):
        rec = world.record(seed, i, size)
        imgs += [rec.src, rec.tgt]
    x = torch.from_numpy(np.stack(imgs[:n])).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def random_crops(x: torch.Tensor, crop: int, gen: torch.Generator) -> torch.Tensor:
    """(B, C, crop, crop) random patches, one per image of x (B, C, H, W)."""
    b, _, h, w = x.shape
    if not 0 < crop <= min(h, w):
        raise ValueError(f"crop must be in (0, {min(h, w)}], got {crop}")
    ys = torch.randint(h - crop + 1, (b,), generator=gen).tolist()
    xs = torch.randint(w - crop + 1, (b,), generator=gen).tolist()
    return torch.stack([img[:, y : y + crop, x0 : x0 + crop] for img, y, x0 in zip(x, ys, xs, strict=True)])


def code_indices(model: VQModel, latents: torch.Tensor) -> torch.Tensor:
    """(B, h, w) long nearest-code indices of latents (B, vq_embed_dim, h, w), as `model.quantize` picks them."""
    b, c, h, w = latents.shape
    flat = latents.permute(0, 2, 3, 1).reshape(-1, c)
    return torch.cdist(flat, model.quantize.embedding.weight).argmin(1).view(b, h, w)


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB between image batches in [-1, 1]."""
    mse = ((x.clamp(-1, 1) - y.clamp(-1, 1)) / 2).pow(2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-10))


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


def lr_at(step: int, cfg: TrainConfig, progress: float | None = None) -> float:
    """Linear warmup, then cosine decay to 10% over the steps (or over `progress` in [0, 1], for a time budget).
    Any config with lr, warmup and steps: train.py's transformer trainer uses it too."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1) if progress is None else progress
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(t, 1.0))))


def world_batches(seed: int, batch: int, size: int, start: int, stop: int, workers: int = 1):
    """Yield world_images(seed, step * batch, batch, size) for step in [start, stop), in order. With workers > 1 the
    images are drawn by that many processes, at most 2 * workers steps ahead (a GPU outruns one process)."""
    if workers <= 1:
        for step in range(start, stop):
            yield world_images(seed, step * batch, batch, size)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    steps = iter(range(start, stop))
    # spawn, not fork: a child forked after the parent's OpenMP threads ran hangs in its first parallel torch op
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:

        def submit(step_ids):
            return [pool.submit(world_images, seed, s * batch, batch, size) for s in step_ids]

        ahead = deque(submit(itertools.islice(steps, 2 * workers)))
        while ahead:
            x = ahead.popleft().result()
            ahead.extend(submit(itertools.islice(steps, 1)))
            yield x


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
    sd = opt.state_dict()
    tensors = {f"{i}.{k}": v.cpu() for i, s in sd["state"].items() for k, v in s.items()}
    save_file({**tensors, "usage": usage.cpu()}, tmp / "optim.safetensors")
    state = {"step": step, "param_groups": sd["param_groups"], **meta}
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old)
    return final


def latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted((out / "ckpt").glob("step_*"))
    return ckpts[-1] if ckpts else None


def load_checkpoint(path: Path, model: VQModel, opt: torch.optim.Optimizer) -> tuple[dict, torch.Tensor]:
    """Restore model and optimizer in place; returns (state.json dict, codebook usage counts)."""
    state = json.loads((path / "state.json").read_text())
    model.load_state_dict(load_file(path / "model.safetensors"))
    tensors = load_file(path / "optim.safetensors")
    usage = tensors.pop("usage")
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


def vq_config_of(folder: Path) -> VQConfig:
    """The VQConfig of a saved vqvae folder (its config.json)."""
    d = json.loads((folder / "config.json").read_text())
    fields = {f.name for f in dataclasses.fields(VQConfig)}
    return VQConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields})


def flat_code_purity(x: torch.Tensor, codes: torch.Tensor) -> float:
    """How consistently one flat colour gets one code: over token cells whose pixels are all one colour, the share
    of cells carrying their colour's most common code (1 = every flat colour always maps to a single code).

    x: images (B, 3, H, W); codes: (B, h, w) with H/h = W/w. A tokenizer that splits flat colour over many codes
    makes the transformer predict noise: copying and recolouring then depend on codes no pixel explains.
    """
    b, c, h, w = x.shape
    f = h // codes.shape[1]
    cells = x.view(b, c, h // f, f, w // f, f).permute(0, 2, 4, 1, 3, 5).flatten(4)  # (B, h, w, C, f * f)
    flat = (cells == cells[..., :1]).all(-1).all(-1)
    if not flat.any():
        return float("nan")
    colour = cells[..., 0][flat]  # (n, C)
    _, colour_id = colour.unique(dim=0, return_inverse=True)
    counts = torch.zeros(int(colour_id.max()) + 1, int(codes.max()) + 1)
    counts.index_put_((colour_id, codes[flat]), torch.ones(len(colour_id)), accumulate=True)
    return (counts.max(1).values.sum() / flat.sum()).item()


@torch.no_grad()
def evaluate(model: VQModel, x: torch.Tensor, chunk: int = 64) -> dict:
    """Held-out reconstruction PSNR (dB), codebook usage (fraction of codes used), code perplexity and flat-colour
    code purity (`flat_code_purity`)."""
    model.eval()
    recs, grids = [], []
    for xb in x.split(chunk):
        latents = model.encode(xb).latents
        recs.append(model.decode(latents).sample)
        grids.append(code_indices(model, latents))
    model.train()
    codes = torch.cat(grids)
    counts = torch.bincount(codes.flatten(), minlength=model.config.num_vq_embeddings).float()
    p = counts / counts.sum()
    perplexity = math.exp(-(p[p > 0] * p[p > 0].log()).sum().item())
    return {
        "psnr": psnr(torch.cat(recs), x),
        "codebook_usage": (counts > 0).float().mean().item(),
        "perplexity": perplexity,
        "flat_code_purity": flat_code_purity(x.cpu(), codes.cpu()),
        "images": x.shape[0],
    }


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
    before = {}
    if decoder_only:
        model.load_state_dict(load_file(Path(cfg.decoder_from) / "diffusion_pytorch_model.safetensors"))
        before = evaluate(model, held_out)
        with torch.no_grad():
            codes_before = code_indices(model, model.encode(held_out).latents)
        print(f"[vq] decoder of {cfg.decoder_from}: held-out psnr {before['psnr']:.2f} dB before", flush=True)
    params = decoder_parameters(model) if decoder_only else list(model.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.99))
    usage = torch.zeros(vq_cfg.num_vq_embeddings)
    start, ckpt = 0, latest_checkpoint(out) if resume else None
    if ckpt is not None:
        saved = json.loads((ckpt / "state.json").read_text())
        if saved["vq_config"] != json.loads(json.dumps(dataclasses.asdict(vq_cfg))):
            raise ValueError(f"{ckpt} holds a tokenizer with {saved['vq_config']}; resume with the same --preset "
                             "and --codebook")  # fmt: skip
        if saved["train_config"].get("decoder_from", "") != cfg.decoder_from:
            raise ValueError(f"{ckpt} was trained with --decoder-from {saved['train_config'].get('decoder_from')!r}; "
                             "resume with the same")  # fmt: skip
        state, usage = load_checkpoint(ckpt, model, opt)
        start = state["step"]
        gen.manual_seed(cfg.seed + start)
        print(f"[vq] resumed from {ckpt} at step {start}", flush=True)
    meta = {"vq_config": dataclasses.asdict(vq_cfg), "train_config": dataclasses.asdict(cfg)}
    size, t0, window = vq_cfg.sample_size, time.time(), []
    t_log = t0  # steps/s is measured over the last log window (crop steps are faster)
    deadline = None if minutes is None else t0 + 60 * minutes
    batches = world_batches(cfg.seed, cfg.batch, size, start, cfg.steps, workers)
    done = saved = start
    for step, x in zip(range(start, cfg.steps), batches, strict=True):
        progress = None
        if deadline is not None:
            progress = (time.time() - t0) / (deadline - t0)
            if progress >= 1:
                print(f"[vq] time budget reached at step {step}", flush=True)
                break
        if cfg.crop and step < cfg.crop_until:
            x = random_crops(x, cfg.crop, torch.Generator().manual_seed(cfg.seed * 1_000_003 + step))
        x = x.to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg, progress)
        if step == 0 and not decoder_only:  # data-dependent codebook init: codes start on real encoder outputs
            with torch.no_grad():
                restart_dead_codes(model, usage, model.encode(x).latents, gen)
        metrics, latents = (decoder_step if decoder_only else train_step)(model, x, opt)
        usage += torch.bincount(code_indices(model, latents).flatten(), minlength=usage.numel()).cpu()
        window.append(metrics)
        done = step + 1
        if cfg.restart_every and done % cfg.restart_every == 0 and not decoder_only:
            used = (usage > 0).float().mean().item()
            n_dead = restart_dead_codes(model, usage, latents, gen) if done < cfg.steps * 0.9 else 0
            print(f"[vq] step {done}: window usage {used:.3f}, restarted {n_dead} dead codes", flush=True)
            usage.zero_()
        if done % cfg.log_every == 0 or done == cfg.steps:
            sps, t_log = len(window) / max(time.time() - t_log, 1e-9), time.time()
            eta = (cfg.steps - done) / max(sps, 1e-9) / 60
            if deadline is not None:
                eta = min(eta, (deadline - t_log) / 60)
            avg = {k: sum(m[k] for m in window) / len(window) for k in window[0]}
            print(
                f"[vq] step {done}/{cfg.steps} loss {avg['loss']:.4f} l1 {avg['l1']:.4f} vq {avg['vq']:.4f} "
                f"psnr {avg['psnr']:.2f} dB lr {lr_at(step, cfg, progress):.2e} {sps:.2f} steps/s "
                f"eta {eta:.1f} min",
                flush=True,
            )
            window = []
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            save_checkpoint(out, done, model, opt, usage, meta)
            saved = done
    batches.close()
    if done != saved:  # stopped by the time budget between periodic checkpoints
        save_checkpoint(out, done, model, opt, usage, meta)
    model.quantize.legacy = True
    model.save_pretrained(out / "vqvae", safe_serialization=True)
    report = {**evaluate(model, held_out), "steps": done, **meta, "train_seconds": round(time.time() - t0, 1)}
    if decoder_only:
        with torch.no_grad():
            same = (code_indices(model, model.encode(held_out).latents) == codes_before).float().mean().item()
        report.update(psnr_before=before["psnr"], codes_unchanged=same)
    (out / "vq_report.json").write_text(json.dumps(report, indent=1))
    print(
        f"[vq] held-out psnr {report['psnr']:.2f} dB, codebook usage {report['codebook_usage']:.3f}, "
        f"perplexity {report['perplexity']:.1f}; model in {out / 'vqvae'}",
        flush=True,
    )
    return report


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

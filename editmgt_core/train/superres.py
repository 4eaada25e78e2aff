"""Train a super-resolving VQ decoder: the tokens of a 64-px world image decoded straight to its 256-px render.

The world draws every scene at any size, so the pairs are free: a record's scenes rendered at the tokenizer's size
(what the encoder sees) and at `scale` times it (what the decoder should draw). The encoder, quant_conv and codebook
of the tokenizer given by `--decoder-from` are frozen, so every image keeps its tokens and a transformer trained on
them still fits; its decoder starts from its trained weights, and the `model.upsampler.Upsampler` head added on top
starts as the bicubic upscale of that decoder's output (its last convolution is zero), or where it is when the
folder already has one (a second stage: `--head-only` first, then the decoder and head together).

Loss: L1 + MSE on the pixels, plus `grad_weight` times the L1 of the image gradients (horizontal and vertical
differences) and `edge_weight` times the L1 of the local edge energy (`edge_energy_l1`). Pixel and gradient L1 still
settle for a blur where a token leaves an edge's position open; the edge energy asks for a sharp edge within a few
pixels. All are computed from the world's own images; nothing is downloaded.

Checkpoints (weights, optimizer tensors, JSON state) go to `out/ckpt/step_XXXXXXX/`; `--resume` continues from the
latest, `--minutes` bounds the run by the wall clock (the cosine decay spans it). The result is `out/vqvae/` (the
diffusers VQModel with its fine-tuned decoder, plus upsampler.json / upsampler.safetensors) and `out/sr_report.json`
(`vq_eval.sr_measures` on held-out images: PSNR at the large size, edge sharpness, and the same for the starting
decoder's output upscaled bicubically).

CLI: `python -m editmgt_core.train.superres --decoder-from editmgt_core/assets/default-model/vqvae --out runs/sr
--minutes 50 --threads 1`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import VQModel
from safetensors.torch import load_file, save_file
from torch import nn

from editmgt_core.model.upsampler import (
    Upsampler,
    codebook_width,
    decoder_features,
    fitted_config,
    load_upsampler,
    save_upsampler,
)
from editmgt_core.train import runner
from editmgt_core.train.sr_data import PairFeed, crop_windows, outline_masks, world_pairs
from editmgt_core.train.vq_eval import sr_measures


@dataclass(frozen=True)
class SRConfig:
    steps: int = 1_000_000  # total optimizer steps (a --minutes budget usually ends the run first)
    batch: int = 16  # images per step (half sources, half targets)
    lr: float = 3e-4  # peak Adam learning rate (linear warmup, cosine decay to 10%)
    warmup: int = 100  # warmup steps
    seed: int = 21  # world stream seed; held-out images use seed + 1_000_003
    grad_weight: float = 1.0  # weight of the image-gradient L1 term
    mse_weight: float = 1.0  # weight of the MSE term (MSE settles for a blur where L1 settles for an edge)
    edge_weight: float = 0.0  # weight of the local edge-energy term (edge_energy_l1)
    edge_pool: int = 8  # window of the edge-energy term, in output pixels
    scale: int = 4  # output pixels per tokenizer pixel along each side
    size: int = 64  # the tokenizer's image side (the encoder's input)
    width: int = 32  # Upsampler width at the decoder's resolution
    trunk_width: int = 0  # width of the Upsampler's token trunk (0: none); added to a trained head, it starts as it
    trunk_blocks: int = 4  # residual blocks of the token trunk
    trunk_codes: bool = False  # the trunk embeds token ids (one vector per code) instead of reading code vectors
    head_only: bool = False  # train the Upsampler alone on the frozen decoder's features (cheap: no decoder backward)
    crop: int = 0  # head_only: train on random crop x crop windows of the features (and scale x that of the image)
    ckpt_every: int = 200  # checkpoint period (steps)
    log_every: int = 25  # log period (steps)
    eval_images: int = 128  # held-out images for the report
    decoder_from: str = ""  # the trained vqvae folder whose tokens are kept
    device: str = "cpu"  # where the decoder trains ("cuda" on a GPU); the world renders on the CPU
    workers: int = 0  # processes rendering the next steps' pairs ahead (0: each step renders its own)
    overfit: bool = False  # every step on the first step's pairs: can the decoder memorise one batch? (a check)


def gradient_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean L1 between the horizontal and vertical pixel differences of x and y (B, C, H, W)."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]
    return 0.5 * (F.l1_loss(dx(x), dx(y)) + F.l1_loss(dy(x), dy(y)))


def edge_energy_l1(x: torch.Tensor, y: torch.Tensor, pool: int) -> torch.Tensor:
    """Mean L1 between the local edge energies of x and y (B, C, H, W): the squared image gradient summed over the
    channels, averaged over half-overlapping pool x pool windows. An edge blurred over w pixels keeps its total
    gradient but has 1/w of its energy, so unlike the pixel and gradient L1 (which a blur minimises when the edge's
    position is uncertain) this term asks for a sharp edge anywhere within the window."""

    def energy(t: torch.Tensor) -> torch.Tensor:  # (B, 1, H - 1, W - 1)
        dx, dy = t[..., :-1, 1:] - t[..., :-1, :-1], t[..., 1:, :-1] - t[..., :-1, :-1]
        return (dx.pow(2) + dy.pow(2)).sum(1, keepdim=True)

    window = lambda e: F.avg_pool2d(e, pool, stride=max(1, pool // 2))  # overlapping: no window edge decides
    return F.l1_loss(window(energy(x)), window(energy(y)))


class SRDecoder(nn.Module):
    """A diffusers VQModel and its Upsampler head: tokens of 64-px images -> 256-px images (training view)."""

    def __init__(self, vq: VQModel, head: Upsampler):
        super().__init__()
        self.vq, self.head = vq, head

    @torch.no_grad()
    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Quantized latents (B, D, h, w) of images x in [-1, 1], from the frozen encoder and codebook."""
        return self.vq.quantize(self.vq.encode(x).latents)[0]

    def forward(self, quant: torch.Tensor) -> torch.Tensor:
        return self.head.decode(self.vq, quant)


def build(cfg: SRConfig) -> tuple[SRDecoder, list[nn.Parameter]]:
    """The decoder of cfg.decoder_from plus a fresh head; returns it and the trainable parameters (the head, and
    the decoder unless cfg.head_only)."""
    folder = Path(cfg.decoder_from)
    if not (folder / "config.json").is_file() or not (folder / "diffusion_pytorch_model.safetensors").is_file():
        raise ValueError(
            f"--decoder-from {folder}: expected a vqvae folder (config.json and diffusion_pytorch_model.safetensors)"
        )
    vq = VQModel.from_pretrained(folder, use_safetensors=True)
    want = fitted_config(
        vq.config,
        cfg.trunk_codes,
        scale=cfg.scale,
        width=cfg.width,
        trunk_width=cfg.trunk_width,
        trunk_blocks=cfg.trunk_blocks,
    )
    head = load_upsampler(folder)  # a super-resolving decoder trains on from where it is
    if head is None:
        head = Upsampler(want, codebook_width(vq.config))
    elif head.cfg != want and head.cfg == dataclasses.replace(
        want, trunk_width=0, trunk_blocks=head.cfg.trunk_blocks, trunk_codes=head.cfg.trunk_codes
    ):
        grown = Upsampler(want, codebook_width(vq.config))  # a trunk added to a trained head
        missing, unexpected = grown.load_state_dict(head.state_dict(), strict=False)
        assert not unexpected and all(k.startswith("trunk.") for k in missing), (missing, unexpected)
        head = grown
    if head.cfg != want:
        raise ValueError(f"{folder} holds an upsampler {head.cfg}; asked for {want}")
    model = SRDecoder(vq, head)
    for p in model.parameters():
        p.requires_grad_(False)
    params = [*head.parameters()]
    if not cfg.head_only:
        params += [*vq.post_quant_conv.parameters(), *vq.decoder.parameters()]
    for p in params:
        p.requires_grad_(True)
    return model, params


def sr_step(model: SRDecoder, small: torch.Tensor, large: torch.Tensor, opt, cfg: SRConfig, gen=None) -> dict:
    """One optimizer step: decode the tokens of `small` and fit `large` (L1 + MSE + grad_weight * gradient L1)."""
    if cfg.head_only:
        with torch.no_grad():
            quant = model.quantize(small)
            h, y = decoder_features(model.vq, quant)
        x = model.head.features(h, model.head.trunk_input(model.vq, quant))  # the whole image
        x, y, large = crop_windows(x, y, large, cfg.crop, gen or torch.Generator().manual_seed(cfg.seed))
        out = model.head.draw(x, y)
    else:
        out = model(model.quantize(small))
    l1, mse, grad = F.l1_loss(out, large), F.mse_loss(out, large), gradient_l1(out, large)
    edge = edge_energy_l1(out, large, cfg.edge_pool) if cfg.edge_weight else torch.zeros(())
    loss = l1 + cfg.mse_weight * mse + cfg.grad_weight * grad + cfg.edge_weight * edge
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    psnr = 10 * np.log10(4.0 / max(F.mse_loss(out.detach().clamp(-1, 1), large).item(), 1e-10))
    return {"loss": loss.item(), "l1": l1.item(), "grad": grad.item(), "edge": edge.item(), "psnr": float(psnr)}


# ---------------------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(out: Path, step: int, model: SRDecoder, opt, meta: dict, keep: int = 2) -> Path:
    """Write out/ckpt/step_XXXXXXX/{model,optim}.safetensors + state.json atomically; keep the newest `keep`."""
    root = out / "ckpt"
    final, tmp = root / f"step_{step:07d}", root / f".tmp_step_{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    save_file(
        {k: v.contiguous().cpu() for k, v in runner.optimizer_tensors(model, opt).items()}, tmp / "optim.safetensors"
    )
    (tmp / "state.json").write_text(json.dumps({"step": step, **meta}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old)
    return final


def resume(out: Path, model: SRDecoder, opt, cfg: SRConfig) -> int:
    """Load the latest checkpoint of `out` into model and opt; its step (0: none). ValueError when it was made
    with another --decoder-from, scale or width."""
    ckpts = sorted((out / "ckpt").glob("step_*"))
    if not ckpts:
        return 0
    state = json.loads((ckpts[-1] / "state.json").read_text())
    saved = state["config"]
    for key in ("decoder_from", "scale", "width", "head_only", "trunk_width", "trunk_blocks", "trunk_codes"):
        if saved.get(key, SRConfig.__dataclass_fields__[key].default) != getattr(cfg, key):
            raise ValueError(f"{ckpts[-1]} was trained with {key}={saved[key]!r}, not {getattr(cfg, key)!r}")
    model.load_state_dict(load_file(ckpts[-1] / "model.safetensors", device=str(next(model.parameters()).device)))
    runner.load_optimizer_tensors(model, opt, load_file(ckpts[-1] / "optim.safetensors"))
    print(f"[sr] resumed from {ckpts[-1]} at step {state['step']}", flush=True)
    return state["step"]


# ---------------------------------------------------------------------------------------------------- training


def train(out: Path, cfg: SRConfig, resume_run: bool = False, minutes: float | None = None) -> dict:
    """Train (or resume) into `out`; returns the held-out report also written to out/sr_report.json."""
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    model, params = build(cfg)
    model.to(device)
    start_vq = VQModel.from_pretrained(cfg.decoder_from, use_safetensors=True).eval().to(device)
    held = [t.to(device) for t in world_pairs(cfg.seed + 1_000_003, 0, cfg.eval_images, cfg.size, cfg.scale)]
    outlines = outline_masks(cfg.seed + 1_000_003, 0, cfg.eval_images, cfg.size * cfg.scale).to(device)
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.99))
    start = resume(out, model, opt, cfg) if resume_run else 0
    meta = {"config": dataclasses.asdict(cfg)}
    t0 = time.time()
    budget = runner.Budget(runner.deadline(minutes, t0), t0)
    clock = [t0]

    feed = PairFeed(cfg)

    def step(i: int) -> dict:
        small, large = (t.to(device, non_blocking=True) for t in feed(0 if cfg.overfit else i))
        return sr_step(model, small, large, opt, cfg, torch.Generator().manual_seed(cfg.seed * 1_000_003 + i))

    def log(done: int, window: list[dict], lr: float) -> None:
        now = time.time()
        sps, clock[0] = len(window) / max(now - clock[0], 1e-9), now
        avg = {k: sum(m[k] for m in window) / len(window) for k in window[0]}
        print(
            f"[sr] step {done} loss {avg['loss']:.4f} l1 {avg['l1']:.4f} grad {avg['grad']:.4f} edge "
            f"{avg['edge']:.4f} psnr {avg['psnr']:.2f} dB lr {lr:.2e} {sps:.2f} steps/s",
            flush=True,
        )

    save = lambda done: save_checkpoint(out, done, model, opt, meta)
    model.train()
    try:
        done = runner.run_steps(step, opt, cfg, start, budget, save, log, "sr")
    finally:
        feed.close()
    model.eval()
    export(model, out / "vqvae")
    report = {
        **sr_measures(model.vq, model.head, start_vq, *held, outlines),
        "steps": done,
        **meta,
        "train_seconds": round(time.time() - t0, 1),
    }
    (out / "sr_report.json").write_text(json.dumps(report, indent=1))
    print(
        f"[sr] held-out psnr {report['psnr']:.2f} dB at {cfg.size * cfg.scale} px (bicubic of the starting "
        f"decoder: {report['psnr_bicubic']:.2f} dB); edge sharpness {report['sharpness_ratio']:.3f} of the "
        f"render's; model in {out / 'vqvae'}",
        flush=True,
    )
    return report


def export(model: SRDecoder, folder: Path) -> None:
    """Write the VQModel (save_pretrained) and its upsampler into one vqvae folder."""
    model.vq.save_pretrained(folder, safe_serialization=True)
    save_upsampler(model.head, folder)


def main(args: argparse.Namespace) -> dict:
    if args.minutes is not None and not args.minutes > 0:
        raise ValueError(f"--minutes must be > 0, got {args.minutes}")
    if args.steps < 1 or args.batch < 2:
        raise ValueError(f"--steps must be >= 1 and --batch >= 2, got {args.steps} and {args.batch}")
    torch.set_num_threads(args.threads)
    names = (
        "steps",
        "batch",
        "lr",
        "seed",
        "grad_weight",
        "mse_weight",
        "edge_weight",
        "edge_pool",
        "scale",
        "width",
        "trunk_width",
        "trunk_blocks",
        "trunk_codes",
        "ckpt_every",
        "log_every",
        "eval_images",
        "head_only",
        "crop",
        "size",
        "device",
        "workers",
        "overfit",
    )
    cfg = SRConfig(
        **{k: getattr(args, k) for k in names},
        warmup=min(SRConfig.warmup, args.steps),
        decoder_from=str(args.decoder_from),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return train(out, cfg, resume_run=args.resume, minutes=args.minutes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = SRConfig()
    p = argparse.ArgumentParser(description="Train a super-resolving VQ decoder on edit-world image pairs.")
    p.add_argument("--out", required=True, help="output folder: ckpt/, vqvae/, sr_report.json")
    p.add_argument("--decoder-from", required=True, help="the trained vqvae folder whose tokens are kept")
    p.add_argument("--steps", type=int, default=d.steps, help="total training steps")
    p.add_argument("--minutes", type=float, help="wall-clock budget; the cosine decay spans it instead of --steps")
    p.add_argument("--batch", type=int, default=d.batch, help="images per step")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--seed", type=int, default=d.seed, help="world stream seed")
    p.add_argument("--grad-weight", type=float, default=d.grad_weight, help="weight of the image-gradient L1")
    p.add_argument("--mse-weight", type=float, default=d.mse_weight, help="weight of the MSE term")
    p.add_argument("--edge-weight", type=float, default=d.edge_weight, help="weight of the edge-energy term")
    p.add_argument("--edge-pool", type=int, default=d.edge_pool, help="window of the edge-energy term (pixels)")
    p.add_argument("--scale", type=int, default=d.scale, help="output pixels per tokenizer pixel (a power of 2)")
    p.add_argument("--size", type=int, default=d.size, help="the tokenizer's image side in pixels")
    p.add_argument("--width", type=int, default=d.width, help="upsampler width at the decoder's resolution")
    p.add_argument("--trunk-width", type=int, default=d.trunk_width, help="width of the token trunk (0: none)")
    p.add_argument("--trunk-blocks", type=int, default=d.trunk_blocks, help="residual blocks of the token trunk")
    p.add_argument("--trunk-codes", action="store_true", help="the trunk embeds token ids instead of code vectors")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="checkpoint period in steps")
    p.add_argument("--log-every", type=int, default=d.log_every, help="log period in steps")
    p.add_argument("--eval-images", type=int, default=d.eval_images, help="held-out images for the report")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default=d.device, help="where the decoder trains: cpu, cuda, cuda:1 ...")
    p.add_argument("--overfit", action="store_true", help="every step on the first batch: a capacity check")
    p.add_argument("--workers", type=int, default=d.workers, help="processes rendering pairs ahead (0: none)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--head-only", action="store_true", help="train the upsampler alone; the decoder stays frozen")
    p.add_argument("--crop", type=int, default=d.crop, help="--head-only: train on CROPxCROP feature windows")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())

"""Held-out measures of a VQ tokenizer: reconstruction PSNR, codebook usage and perplexity, flat-colour code purity
(see vq.py for why purity matters), and the codes the tokenizer gives (`code_indices`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import VQModel


def code_indices(model: VQModel, latents: torch.Tensor) -> torch.Tensor:
    """(B, h, w) long nearest-code indices of latents (B, vq_embed_dim, h, w), as `model.quantize` picks them."""
    b, c, h, w = latents.shape
    flat = latents.permute(0, 2, 3, 1).reshape(-1, c)
    return torch.cdist(flat, model.quantize.embedding.weight).argmin(1).view(b, h, w)


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR in dB between image batches in [-1, 1]."""
    mse = ((x.clamp(-1, 1) - y.clamp(-1, 1)) / 2).pow(2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-10))


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


def edge_sharpness(x: torch.Tensor, outline: torch.Tensor) -> float:
    """Mean gradient magnitude of images x (B, 3, H, W) in [-1, 1] over the pixels of `outline` (B, H, W) bool:
    central differences on the [0, 1] scale, averaged over the channels."""
    p = F.pad((x.clamp(-1, 1) + 1) / 2, (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    mag = (gx.pow(2) + gy.pow(2)).sqrt().mean(1)  # (B, H, W)
    return mag[outline].mean().item()


def snap_edges(u: torch.Tensor, window: int = 9, softness: float = 0.08, lo: float = 0.05, hi: float = 0.3):
    """A diagnostic, not a decoder: images u (B, C, H, W) in [-1, 1] with each pixel pushed toward the nearer of its
    window's darkest and brightest values (a soft step at their midpoint, `softness` times their range wide), where
    the window's largest channel range exceeds `lo` (fully from `hi`); flat and slowly varying regions stay.

    A blurred edge becomes a sharp one at its half-way crossing. Upscaling an image whose edges are where the
    render's are and snapping them beats the plain upscale by about 2 dB on world images; when it loses instead, the
    image's edges are displaced, not just soft, and no sharpening of it can reach the render."""
    top = F.max_pool2d(u, window, 1, window // 2)
    bottom = -F.max_pool2d(-u, window, 1, window // 2)
    spread = top - bottom
    step = torch.sigmoid((u - (top + bottom) / 2) / (softness * spread + 1e-4))
    weight = ((spread.amax(1, keepdim=True) - lo) / (hi - lo)).clamp(0, 1)
    return u + weight * (bottom + step * spread - u)


@torch.no_grad()
def sr_measures(vq: VQModel, head, start_vq: VQModel, small, large, outline, chunk: int = 32) -> dict:
    """Held-out measures of a super-resolving decoder (`vq` with its Upsampler `head`) against the large renders:
    PSNR and edge sharpness on object outlines, beside the starting decoder's output (`start_vq`, at the small
    size) upscaled bicubically. small (B, 3, h, w) and large (B, 3, H, W) in [-1, 1]; outline (B, H, W) bool."""

    outs, bicubic = [], []
    for xb in small.split(chunk):
        quant = vq.quantize(vq.encode(xb).latents)[0]
        outs.append(head.decode(vq, quant).clamp(-1, 1))
        y = start_vq.decode(start_vq.encode(xb).latents).sample
        bicubic.append(F.interpolate(y, size=large.shape[-2:], mode="bicubic", align_corners=False).clamp(-1, 1))
    out, bic = torch.cat(outs), torch.cat(bicubic)
    render = edge_sharpness(large, outline)
    render_up = F.interpolate(small, size=large.shape[-2:], mode="bicubic", align_corners=False)
    return {
        # edge placement (snap_edges): the starting decoder's upscale snapped, beside the small render's
        "psnr_bicubic_snapped": psnr(snap_edges(bic), large),
        "psnr_render_bicubic": psnr(render_up, large),
        "psnr_render_snapped": psnr(snap_edges(render_up), large),
        "psnr": psnr(out, large),
        "psnr_bicubic": psnr(bic, large),
        "sharpness": edge_sharpness(out, outline),
        "sharpness_bicubic": edge_sharpness(bic, outline),
        "sharpness_render": render,
        "sharpness_ratio": edge_sharpness(out, outline) / max(render, 1e-9),
        "images": small.shape[0],
    }

"""Building blocks of the EditMGT transformer: norms, embeddings, dual- and single-stream blocks, token resampling.

Module and parameter names follow the reference checkpoint (diffusers naming) so published weights load by key.
Every block takes the condition stream `cond` (source-image tokens, C_V) as an optional extra stream: it goes
through the image-branch weights with its own modulation `vec_cond` and meets the other streams only in attention,
where the sequence is [txt, img, cond].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .math import apply_rope, attention, rows_to_text_probs, text_to_image_probs, text_to_source_probs


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # Variance in float32 whatever the input dtype (as the reference), then back to the weight's dtype.
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x * torch.rsqrt(var + self.eps)).to(self.weight.dtype) * self.weight


def layer_norm(x: Tensor) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """AdaLN: layer-norm x [B, n, D] and apply a per-row shift/scale [B, D]."""
    return torch.addcmul(shift[:, None], layer_norm(x), 1 + scale[:, None])


def modulate_rows(*parts: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """`modulate` of several streams (x, shift, scale), concatenated along the sequence.

    Without autograd the results are written straight into one buffer, saving a copy of the whole sequence.
    """
    if len(parts) == 1:
        return modulate(*parts[0])
    if torch.is_grad_enabled():
        return torch.cat([modulate(*p) for p in parts], dim=1)
    x0 = parts[0][0]
    out = x0.new_empty(x0.shape[0], sum(p[0].shape[1] for p in parts), x0.shape[2])
    start = 0
    for x, shift, scale in parts:
        torch.addcmul(shift[:, None], layer_norm(x), 1 + scale[:, None], out=out[:, start : start + x.shape[1]])
        start += x.shape[1]
    return out


def gated(x: Tensor, gate: Tensor, y: Tensor) -> Tensor:
    """The AdaLN-Zero residual x + gate * y, gate [B, D] per row."""
    return torch.addcmul(x, gate[:, None], y)


def gelu_tanh(x: Tensor) -> Tensor:
    """tanh-approximated GELU; in place when no gradient is needed (x is a fresh projection output)."""
    if torch.is_grad_enabled():
        return F.gelu(x, approximate="tanh")
    return torch.ops.aten.gelu_(x, approximate="tanh")


class AdaNorm(nn.Module):
    """The AdaLN-Zero modulation: vec [B, D] -> `chunks` vectors [B, D] (shift/scale/gate, in the reference order)."""

    def __init__(self, dim: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.linear = nn.Linear(dim, chunks * dim)

    def forward(self, vec: Tensor) -> tuple[Tensor, ...]:
        return self.linear(F.silu(vec)).chunk(self.chunks, dim=-1)


class MLP(nn.Module):
    """Linear -> act -> Linear with `linear_1` / `linear_2` names (timestep, pooled-text and micro-cond embedders)."""

    def __init__(self, dim_in: int, dim: int, bias: bool = True):
        super().__init__()
        self.linear_1 = nn.Linear(dim_in, dim, bias=bias)
        self.linear_2 = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class _GeluProj(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(dim, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return gelu_tanh(self.proj(x))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([_GeluProj(dim, mult * dim), nn.Identity(), nn.Linear(mult * dim, dim)])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class Attention(nn.Module):
    """Projection weights of one attention layer; `context=True` adds the text-branch projections (dual blocks)."""

    def __init__(self, dim: int, heads: int, context: bool):
        super().__init__()
        self.heads = heads
        head_dim = dim // heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim) for _ in range(3))
        self.norm_q, self.norm_k = RMSNorm(head_dim), RMSNorm(head_dim)
        if context:
            self.add_q_proj, self.add_k_proj, self.add_v_proj = (nn.Linear(dim, dim) for _ in range(3))
            self.norm_added_q, self.norm_added_k = RMSNorm(head_dim), RMSNorm(head_dim)
            self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
            self.to_add_out = nn.Linear(dim, dim)

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, n, D) -> (B, heads, n, head_dim)

    def qkv(self, x: Tensor, q_rows: slice = slice(None)) -> tuple[Tensor, Tensor, Tensor]:
        """Normalized queries (of the rows q_rows only), keys and values of x [B, n, D], each [B, heads, rows, d]."""
        q, k, v = (self._heads(self.to_q(x[:, q_rows])), self._heads(self.to_k(x)), self._heads(self.to_v(x)))
        return self.norm_q(q), self.norm_k(k), v

    def qkv_context(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = (self._heads(proj(x)) for proj in (self.add_q_proj, self.add_k_proj, self.add_v_proj))
        return self.norm_added_q(q), self.norm_added_k(k), v


def captured(q: Tensor, k: Tensor, n_txt: int, n_img: int, capture: frozenset[str], bias: Tensor | None):
    """The block's attention maps of the kinds in capture (see entries.ATTENTION_KINDS: '' instruction -> target,
    's' instruction -> source, 'r' target rows -> instruction, 'rs' source rows -> instruction), each
    [B, heads, T, I]; None when nothing is asked. q, k: [B, heads, L, d] over [text, target, condition]."""
    if not capture:
        return None
    out, n_main = {}, n_txt + n_img
    chunk = max(1, q.shape[-1])  # query rows per chunk: a score slice no larger than one hidden-state tensor
    if "" in capture:
        out[""] = text_to_image_probs(q, k, n_txt, n_img)
    if "s" in capture:
        out["s"] = text_to_source_probs(q, k, n_txt, n_img)
    if "r" in capture:
        out["r"] = rows_to_text_probs(q, k, n_txt, slice(n_txt, n_main), bias, chunk)
    if "rs" in capture:
        out["rs"] = rows_to_text_probs(q, k, n_txt, slice(n_main, q.shape[2]), bias, chunk)
    return out


class DualBlock(nn.Module):
    """Dual-stream block: text and image keep separate weights and meet in one joint attention."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = AdaNorm(dim, 6)
        self.norm1_context = AdaNorm(dim, 6)
        self.attn = Attention(dim, heads, context=True)
        self.ff = FeedForward(dim)
        self.ff_context = FeedForward(dim)

    def forward(self, img, txt, vec, freqs, cond=None, vec_cond=None, bias=None, capture=frozenset()):
        """img [B, I, D], txt [B, T, D], cond [B, R, D] or None; freqs: RoPE table of the rows [txt, img, cond].

        capture: the attention kinds wanted (see `captured`); returns them as a dict (None when none).
        """
        n_txt, n_img = txt.shape[1], img.shape[1]
        img_mod, txt_mod = self.norm1(vec), self.norm1_context(vec)
        rows = [(img, img_mod[0], img_mod[1])]
        if cond is not None:
            cond_mod = self.norm1(vec_cond)
            rows.append((cond, cond_mod[0], cond_mod[1]))
        q, k, v = self.attn.qkv(modulate_rows(*rows))  # image-branch rows: [img, cond]
        tq, tk, tv = self.attn.qkv_context(modulate(txt, txt_mod[0], txt_mod[1]))
        q, k = apply_rope(torch.cat([tq, q], 2), freqs), apply_rope(torch.cat([tk, k], 2), freqs)
        v = torch.cat([tv, v], 2)
        probs = captured(q, k, n_txt, n_img, capture, bias)
        out = attention(q, k, v, bias)
        out_txt, out_img = self.attn.to_add_out(out[:, :n_txt]), self.attn.to_out[0](out[:, n_txt:])

        img = gated(img, img_mod[2], out_img[:, :n_img])
        rows = [(img, img_mod[3], img_mod[4])]
        if cond is not None:
            cond = gated(cond, cond_mod[2], out_img[:, n_img:])
            rows.append((cond, cond_mod[3], cond_mod[4]))
        ff_out = self.ff(modulate_rows(*rows))
        img = gated(img, img_mod[5], ff_out[:, :n_img])
        if cond is not None:
            cond = gated(cond, cond_mod[5], ff_out[:, n_img:])

        txt = gated(txt, txt_mod[2], out_txt)
        txt = gated(txt, txt_mod[5], self.ff_context(modulate(txt, txt_mod[3], txt_mod[4])))
        return img, txt, cond, probs


class SingleBlock(nn.Module):
    """Single-stream block over [txt, img] with parallel attention and MLP branches (plus the cond stream)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm = AdaNorm(dim, 3)
        self.proj_mlp = nn.Linear(dim, mlp_ratio * dim)
        self.proj_out = nn.Linear(dim + mlp_ratio * dim, dim)
        self.attn = Attention(dim, heads, context=False)

    def forward(self, x, n_txt, vec, freqs, cond=None, vec_cond=None, bias=None, capture=frozenset()):
        """x [B, T + I, D] (text first), cond [B, R, D] or None; every row shares the same weights.
        Returns x [B, T + I, D], cond and the captured attention."""
        n_main = x.shape[1]
        h, gate, c_gate = self._modulated(x, vec, cond, vec_cond)
        mlp = gelu_tanh(self.proj_mlp(h))
        q, k, v = self.attn.qkv(h)
        q, k = apply_rope(q, freqs), apply_rope(k, freqs)
        probs = captured(q, k, n_txt, n_main - n_txt, capture, bias)
        out = self._proj_out(attention(q, k, v, bias), mlp)
        x = gated(x, gate, out[:, :n_main])
        if cond is not None:
            cond = gated(cond, c_gate, out[:, n_main:])
        return x, cond, probs

    def image_rows(self, x, n_txt, vec, freqs, cond=None, vec_cond=None, bias=None) -> Tensor:
        """The image rows of forward's x, [B, I, D], and nothing else: what the final block needs when no map is
        captured there. Text and cond rows give keys and values only (no queries, no MLP)."""
        rows = slice(n_txt, x.shape[1])
        h, gate, _ = self._modulated(x, vec, cond, vec_cond)
        q, k, v = self.attn.qkv(h, q_rows=rows)
        q, k = apply_rope(q, freqs[rows]), apply_rope(k, freqs)
        out = attention(q, k, v, None if bias is None else bias[rows])
        return gated(x[:, rows], gate, self._proj_out(out, gelu_tanh(self.proj_mlp(h[:, rows]))))

    def _modulated(self, x, vec, cond, vec_cond) -> tuple[Tensor, Tensor, Tensor | None]:
        """The normed, modulated rows [x, cond] and the gates of x and cond."""
        shift, scale, gate = self.norm(vec)
        rows, c_gate = [(x, shift, scale)], None
        if cond is not None:
            c_shift, c_scale, c_gate = self.norm(vec_cond)
            rows.append((cond, c_shift, c_scale))
        return modulate_rows(*rows), gate, c_gate

    def _proj_out(self, attn: Tensor, mlp: Tensor) -> Tensor:
        """proj_out(cat([attn, mlp])) as two products summed in one GEMM call, without building the concatenation."""
        d = attn.shape[-1]
        w = self.proj_out.weight
        out = F.linear(attn, w[:, :d], self.proj_out.bias)
        return torch.addmm(out.flatten(0, 1), mlp.flatten(0, 1), w[:, d:].t()).view_as(out)


class TokenEmbed(nn.Module):
    """Token ids [B, H, W] -> features [B, D, H, W]: embedding, RMSNorm, 1x1 conv."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, dim)
        self.layer_norm = RMSNorm(dim)
        self.conv = nn.Conv2d(dim, dim, kernel_size=1, bias=False)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.conv(self.layer_norm(self.embeddings(tokens)).permute(0, 3, 1, 2))


def _channel_norm(norm: RMSNorm, x: Tensor) -> Tensor:
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Downsample(nn.Module):
    """RMSNorm over channels, then a 2x2 stride-2 conv: [B, D, H, W] -> [B, D, H/2, W/2]."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim)
        self.conv = nn.Conv2d(dim, dim, kernel_size=2, stride=2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(_channel_norm(self.norm, x))


class Upsample(nn.Module):
    """RMSNorm over channels, then a 2x2 stride-2 transposed conv: [B, D, h, w] -> [B, D, 2h, 2w]."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim)
        self.conv = nn.ConvTranspose2d(dim, dim, kernel_size=2, stride=2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(_channel_norm(self.norm, x))


class Resample(nn.Module):
    """Holds a Downsample as `.downsample` or an Upsample as `.upsample` (the reference's module path)."""

    def __init__(self, dim: int, down: bool):
        super().__init__()
        if down:
            self.downsample = Downsample(dim)
        else:
            self.upsample = Upsample(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(x) if hasattr(self, "downsample") else self.upsample(x)


class MlmHead(nn.Module):
    """Features [B, D, H, W] -> codebook logits [B, K, H, W]: 1x1 conv, RMSNorm, 1x1 conv."""

    def __init__(self, dim: int, codebook_size: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, kernel_size=1, bias=False)
        self.layer_norm = RMSNorm(dim)
        self.conv2 = nn.Conv2d(dim, codebook_size, kernel_size=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(_channel_norm(self.layer_norm, self.conv1(x)))

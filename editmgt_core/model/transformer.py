"""The EditMGT transformer: a Meissonic-architecture masked generative transformer with attention injection.

Reads like the diagram: tokens -> embed -> 2x2 downsample -> dual-stream blocks -> single-stream blocks -> upsample ->
codebook logits. The source image's tokens (`cond`, C_V) run through the same weights at the same RoPE positions
with timestep 0 and meet the other streams only inside attention, where a log γ bias sets their strength.
Attention capture is an explicit argument and return value; nothing is stored on modules between calls.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from . import entries
from .config import TransformerConfig
from .layers import MLP, AdaNorm, DualBlock, MlmHead, Resample, RMSNorm, SingleBlock, TokenEmbed
from .math import gamma_bias, grid_ids, rope, timestep_embedding


class TimeTextEmbed(nn.Module):
    """vec = MLP(sinusoid(t * 1000)) + MLP(pooled): the AdaLN conditioning vector."""

    def __init__(self, dim: int):
        super().__init__()
        self.timestep_embedder = MLP(256, dim)
        self.text_embedder = MLP(dim, dim)

    def forward(self, t: Tensor, pooled: Tensor) -> Tensor:
        emb = timestep_embedding(t * 1000, 256).to(pooled.dtype)
        return self.timestep_embedder(emb) + self.text_embedder(pooled)


class Connector(nn.Module):
    def __init__(self, dim_in: int, dim: int):
        super().__init__()
        self.projector = nn.Linear(dim_in, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.projector(x)


class EditMGTTransformer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        dim = config.inner_dim
        self.time_text_embed = TimeTextEmbed(dim)
        self.cond_embed = MLP(config.pooled_projection_dim + 5 * 256, dim, bias=False)  # pooled text + micro-conds
        if config.connector == "linear":
            self.connector = Connector(config.joint_attention_dim, dim)
        self.context_embedder = nn.Linear(dim, dim)
        self.encoder_proj_layer_norm = RMSNorm(dim)

        self.embed = TokenEmbed(config.vocab_size, dim)
        if config.downsample:
            self.down_block = Resample(dim, down=True)
            self.up_block = Resample(dim, down=False)
        self.project_to_hidden_norm = RMSNorm(dim)
        self.project_to_hidden = nn.Linear(dim, dim, bias=False)

        self.transformer_blocks = nn.ModuleList(DualBlock(dim, config.num_heads) for _ in range(config.num_layers))
        self.single_transformer_blocks = nn.ModuleList(
            SingleBlock(dim, config.num_heads) for _ in range(config.num_single_layers)
        )

        self.project_from_hidden_norm = RMSNorm(dim)
        self.project_from_hidden = nn.Linear(dim, dim, bias=False)
        self.mlm_layer = MlmHead(dim, config.codebook_size)

    def initialize_weights(self) -> None:
        """AdaLN-Zero, as DiT: zero every block's modulation layer, so each block starts as the identity (gates 0),
        and the final projection to codebook logits, so training starts from uniform predictions.

        For a fresh model in training only: the constructor leaves PyTorch's default initialization, which loaded
        weights replace and seeded tests rely on.
        """
        for block in [*self.transformer_blocks, *self.single_transformer_blocks]:
            for module in block.modules():
                if isinstance(module, AdaNorm):
                    nn.init.zeros_(module.linear.weight)
                    nn.init.zeros_(module.linear.bias)
        nn.init.zeros_(self.mlm_layer.conv2.weight)  # no bias

    @property
    def dtype(self) -> torch.dtype:
        return self.project_to_hidden.weight.dtype

    def embed_text(self, txt: Tensor, pooled: Tensor, micro: Tensor) -> tuple[Tensor, Tensor]:
        """Text features [B, T, joint_attention_dim] -> txt [B, T, D]; pooled [B, pooled_projection_dim] and micro
        [B, 5] -> pooled [B, D], the conditioning that the timestep embedding is added to (see TimeTextEmbed)."""
        micro = timestep_embedding(micro.flatten()).view(len(micro), -1)  # (B, 5 * 256)
        pooled = self.cond_embed(torch.cat([pooled.float(), micro], dim=1).to(self.dtype))
        if hasattr(self, "connector"):
            txt = self.connector(txt)
        return self.encoder_proj_layer_norm(self.context_embedder(txt)), pooled

    def embed_tokens(self, tokens: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Token ids [B, H, W] -> sequence [B, h*w, D] on the (down-sampled) attention grid (h, w)."""
        x = self.embed(tokens)
        if self.config.downsample:
            x = self.down_block(x)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (B, h*w, D), row-major
        return self.project_to_hidden(self.project_to_hidden_norm(x)), (h, w)

    def head(self, img: Tensor, grid: tuple[int, int]) -> Tensor:
        """Image sequence [B, h*w, D] -> codebook logits [B, K, H, W]."""
        x = self.project_from_hidden(self.project_from_hidden_norm(img))
        x = x.transpose(1, 2).unflatten(2, grid)  # (B, D, h, w)
        if self.config.upsample:
            x = self.up_block(x)
        return self.mlm_layer(x)

    def forward(
        self,
        tokens: Tensor,
        txt: Tensor,
        pooled: Tensor,
        micro: Tensor,
        timestep: Tensor,
        cond: Tensor | None = None,
        *,
        gamma: float = 1.0,
        capture: Iterable[int | str] = (),
    ) -> tuple[Tensor, dict[int | str, Tensor]]:
        """Codebook logits for every token position, plus the captured instruction -> image attention maps.

        tokens: int64 [B, H, W] target ids (mask id where masked); cond: int64 [B, H, W] source ids or None.
        txt: [B, T, joint_attention_dim] text features; pooled: [B, pooled_projection_dim]; micro: [B, 5]
        ([width, height, crop_top, crop_left, aesthetic]); timestep: [B] the sampler's step index t (N-1 .. 0).
        gamma: condition strength (1 = no bias, 0 = condition cut off; the cond stream is then skipped).
        capture: attention entries (see `entries`): global block indices (dual-stream first) for the reference's
        instruction -> target maps, 's<i>', 'r<i>', 'rs<i>' for the other directions ('s' and 'rs' need cond and
        gamma > 0), with optional ':h..' heads; each map is [B, heads, T, h*w] float32. Returns logits
        [B, codebook_size, H, W] and the maps keyed by entry as given.
        """
        wanted = self._check(tokens, cond, gamma, capture)
        kinds = lambda i: frozenset(e.kind for _, e in wanted.get(i, ()))
        if gamma == 0:
            cond = None  # -inf bias both ways: the cond stream cannot reach the output
        txt, pooled = self.embed_text(txt, pooled, micro)
        # t * 1000 in float32 even for bf16 weights: bf16 rounds 5000 to 4992 and scrambles the sinusoid
        vec = self.time_text_embed(timestep.float(), pooled)
        img, grid = self.embed_tokens(tokens)
        ids = grid_ids(*grid, device=img.device)
        rows = [torch.zeros(txt.shape[1], 3, device=img.device), ids]  # text ids are zero: no rotation
        vec_cond = bias = c = None
        if cond is not None:
            c, _ = self.embed_tokens(cond)
            vec_cond = self.time_text_embed(torch.zeros_like(timestep, dtype=torch.float32), pooled)
            rows.append(ids)  # cond rows sit at the same positions as the target
            bias = gamma_bias(txt.shape[1] + img.shape[1], c.shape[1], gamma, img.dtype, img.device)
        freqs = rope(torch.cat(rows), self.config.axes_dims_rope)
        maps = {}

        def keep(i: int, probs) -> None:
            for entry, e in wanted.get(i, ()):
                m = probs[e.kind]
                maps[entry] = m if e.heads is None else m[:, list(e.heads)]

        for i, block in enumerate(self.transformer_blocks):
            img, txt, c, probs = block(img, txt, vec, freqs, c, vec_cond, bias, capture=kinds(i))
            keep(i, probs)
        n_txt = txt.shape[1]
        x = torch.cat([txt, img], dim=1)
        last = self.config.depth - 1
        for j, block in enumerate(self.single_transformer_blocks, start=self.config.num_layers):
            if j == last and not kinds(j):  # only the image rows are read from here on
                x = block.image_rows(x, n_txt, vec, freqs, c, vec_cond, bias)
                break
            x, c, probs = block(x, n_txt, vec, freqs, c, vec_cond, bias, capture=kinds(j))
            keep(j, probs)
        return self.head(x[:, -img.shape[1] :], grid), maps  # image rows are last

    def _check(self, tokens: Tensor, cond: Tensor | None, gamma: float, capture: Iterable[int | str]):
        """Validate the inputs; returns {block: [(entry, parsed entry)]} to capture."""
        if tokens.ndim != 3:
            raise ValueError(f"tokens must be [B, H, W] ids, got shape {tuple(tokens.shape)}")
        if self.config.downsample and (tokens.shape[1] % 2 or tokens.shape[2] % 2):
            raise ValueError(f"token grid {tuple(tokens.shape[1:])} must have even height and width")
        if cond is not None and cond.shape != tokens.shape:
            raise ValueError(f"cond shape {tuple(cond.shape)} must equal tokens shape {tuple(tokens.shape)}")
        if not gamma >= 0:
            raise ValueError(f"gamma={gamma} must be >= 0")
        parsed = [(entry, entries.parse(entry)) for entry in capture]
        logit = [entry for entry, e in parsed if e.is_logit]
        if logit:
            raise ValueError(f"map entries {logit} are made from logits by the sampler, not captured by the model")
        entries.check([entry for entry, _ in parsed], self.config.depth, self.config.num_heads)
        source = [entry for entry, e in parsed if e.needs_source]
        if source and (cond is None or gamma == 0):
            raise ValueError(
                f"source-image maps {source} ('s<i>', 'rs<i>' entries) need the condition stream: cond and gamma > 0"
            )
        wanted = {}
        for entry, e in parsed:
            wanted.setdefault(e.block, []).append((entry, e))
        return wanted

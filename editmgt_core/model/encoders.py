"""Thin wrappers around the image tokenizer (diffusers `VQModel`) and the text encoders.

Text encoders return `TextFeatures`: the sequence the transformer attends to, the pooled vector for AdaLN, and for
every sequence position whether it is a real instruction token and which characters of the prompt it covers (used to
pick keyword positions with the *same* tokenizer that produced the sequence).

With `offload=True` a text encoder's weights live on the CPU and visit the compute device only while they encode
(the published stack, CLIP + Gemma-2 2B, has about three times the transformer's parameters: see
docs/published-model.md). They visit one at a time, so the peak holds the transformer and the larger of the two.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TextFeatures:
    txt: Tensor  # [B, T, D] sequence features
    pooled: Tensor  # [B, P] pooled vector
    real: Tensor  # bool [B, T]: True at real prompt tokens (not padding, not special tokens)
    offsets: list[list[tuple[int, int]]]  # per row and position: character span in the prompt ((0, 0) if none)

    def __len__(self) -> int:
        return len(self.txt)


def _token_spans(tokenizer, prompts: list[str], max_length: int) -> dict:
    """Tokenize to a fixed length; adds character offsets and a special-token mask where the tokenizer can."""
    kwargs = dict(padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    if getattr(tokenizer, "is_fast", False):
        kwargs.update(return_offsets_mapping=True, return_special_tokens_mask=True)
    enc = tokenizer(prompts, **kwargs)
    if "offset_mapping" in enc:
        offsets = [[tuple(int(v) for v in span) for span in row] for row in enc["offset_mapping"]]
        real = enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()
    else:  # slow tokenizer: no spans; every attended position counts as a real token
        offsets = [[(0, 0)] * max_length for _ in prompts]
        real = enc["attention_mask"].bool()
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "offsets": offsets, "real": real}


@contextlib.contextmanager
def visiting(models: list[torch.nn.Module], device: torch.device, offload: bool):
    """Run `models` on `device`; with `offload`, move them there for the block and back to the CPU after it."""
    if not offload:
        yield
        return
    for m in models:
        m.to(device)
    try:
        yield
    finally:
        for m in models:
            m.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()  # hand the freed blocks back, so the transformer's peak can use them


class SingleTextEncoder:
    """Any transformers encoder (BERT, MiniLM, ...): sequence = last hidden state, pooled = its masked mean.

    device: where it encodes (default: where the model is); offload: keep the weights on the CPU between calls."""

    def __init__(self, model, tokenizer, max_length: int, device: torch.device | None = None, offload: bool = False):
        self.model, self.tokenizer, self.max_length = model.eval(), tokenizer, max_length
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.offload = offload

    @torch.inference_mode()
    def __call__(self, prompts: list[str]) -> TextFeatures:
        tok = _token_spans(self.tokenizer, prompts, self.max_length)
        device = self.device
        mask = tok["attention_mask"].to(device)
        with visiting([self.model], device, self.offload):
            out = self.model(input_ids=tok["input_ids"].to(device), attention_mask=mask).last_hidden_state
        weights = mask[..., None].to(out.dtype)
        pooled = (out * weights).sum(1) / weights.sum(1).clamp(min=1)
        return TextFeatures(out.float(), pooled.float(), tok["real"].to(device), tok["offsets"])


class ClipGemmaTextEncoder:
    """The published pair: CLIP's projected pooled embedding + Gemma-2's penultimate hidden states.

    As the reference: CLIP padded to 77, Gemma padded to 256 with the tokenizer's own padding side, and Gemma run
    without an attention mask (the model was trained that way).
    """

    def __init__(
        self,
        clip,
        clip_tokenizer,
        gemma,
        gemma_tokenizer,
        clip_length: int = 77,
        max_length: int = 256,
        device: torch.device | None = None,
        offload: bool = False,
    ):
        self.clip, self.clip_tokenizer = clip.eval(), clip_tokenizer
        self.gemma, self.tokenizer = gemma.eval(), gemma_tokenizer
        self.clip_length, self.max_length = clip_length, max_length
        self.device = torch.device(device) if device is not None else next(gemma.parameters()).device
        self.offload = offload

    @torch.inference_mode()
    def __call__(self, prompts: list[str]) -> TextFeatures:
        device = self.device
        clip_ids = self.clip_tokenizer(
            prompts, padding="max_length", truncation=True, max_length=self.clip_length, return_tensors="pt"
        ).input_ids
        tok = _token_spans(self.tokenizer, prompts, self.max_length)
        with visiting([self.clip], device, self.offload):
            pooled = self.clip(input_ids=clip_ids.to(device)).text_embeds
        with visiting([self.gemma], device, self.offload):
            out = self.gemma(input_ids=tok["input_ids"].to(device), output_hidden_states=True)
            txt = out.hidden_states[-2].float()
            del out  # the other 25 layers' states, before the weights move
        return TextFeatures(txt, pooled.float(), tok["real"].to(device), tok["offsets"])


class VQTokenizer:
    """Images [B, 3, H, W] in [0, 1] <-> token ids [B, H/f, W/f]; the VQ model stays in float32."""

    def __init__(self, vq, image_range: tuple[float, float] = (0.0, 1.0), upsampler=None):
        self.vq = vq.eval().float()
        # decodes at `scale` times the tokenizer's size when the folder has a super-resolving head (upsampler.py)
        self.upsampler = None if upsampler is None else upsampler.eval().float().to(self.device)
        self.scale = 1 if upsampler is None else upsampler.cfg.scale
        # the decoder's convolutions in channels-last layout: 0.79x the decode time on CPU (the bundle's decoder,
        # interleaved: 5.0 against 6.3 ms; oneDNN's channels-last kernels), the same values to float rounding
        for part in (self.vq.post_quant_conv, self.vq.decoder):
            part.to(memory_format=torch.channels_last)
        self.image_range = image_range
        self.factor = 2 ** (len(vq.config.block_out_channels) - 1)
        self.codebook_size = vq.config.num_vq_embeddings

    @property
    def device(self) -> torch.device:
        return next(self.vq.parameters()).device

    def _to_model(self, x: Tensor) -> Tensor:
        lo, hi = self.image_range
        return x * (hi - lo) + lo

    def _from_model(self, x: Tensor) -> Tensor:
        lo, hi = self.image_range
        return ((x - lo) / (hi - lo)).clamp(0, 1)

    @torch.inference_mode()
    def encode(self, images: Tensor) -> Tensor:
        if images.shape[-2] % self.factor or images.shape[-1] % self.factor:
            raise ValueError(f"image size {tuple(images.shape[-2:])} must be a multiple of {self.factor}")
        latents = self.vq.encode(self._to_model(images.float().to(self.device))).latents
        b, _, h, w = latents.shape
        return self.vq.quantize(latents)[2][2].reshape(b, h, w)

    @torch.inference_mode()
    def decode_reference(self, tokens: Tensor) -> Tensor:
        """`decode` in the reference's arithmetic: the decoder's default (NCHW) layout, whose float sums round as the
        reference's do (channels-last moves about 0.5% of 8-bit values by 1). The weights change layout for the
        call and back, a copy of the decoder's weights each way."""
        parts = (self.vq.post_quant_conv, self.vq.decoder)
        for part in parts:
            part.to(memory_format=torch.contiguous_format)
        try:
            return self.decode(tokens)
        finally:
            for part in parts:
                part.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def decode(self, tokens: Tensor) -> Tensor:
        """Token ids [B, h, w] -> images [B, 3, S*f*h, S*f*w] in [0, 1] (f: factor, S: scale)."""
        b, h, w = tokens.shape
        shape = (b, h, w, self.vq.config.latent_channels)
        if self.vq.config.lookup_from_codebook:
            out = self.vq.decode(tokens, force_not_quantize=True, shape=shape).sample
        else:
            quant = self.vq.quantize.get_codebook_entry(tokens.reshape(b, -1), shape)
            if self.upsampler is not None:
                return self._from_model(self.upsampler.decode(self.vq, quant, tokens))
            out = self.vq.decode(quant, force_not_quantize=True).sample
        return self._from_model(out)

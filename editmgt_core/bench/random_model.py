"""An `Editor` with random weights at a named preset's shapes, built in memory: benchmarks need no download.

    editor = random_editor("editmgt", device="cuda", dtype=torch.bfloat16)   # the published shapes, ~4B parameters
    editor = random_editor("tiny")                                          # a few thousand, for CPU smoke tests

"editmgt" builds the published stack: the 1B EditMGT transformer, a VQ tokenizer at aMUSEd's shape (the one
Meissonic reuses: 8192 codes, 64 latent channels, five blocks of 128-768 channels, 16x downsampling: a 1024x1024
image is 64x64 tokens), CLIP's text tower at the width the published pooled vector implies (24 layers of 1024, a
1024 projection) and Gemma-2 at 2B's shape (the vocabularies at their published sizes, so weight memory is the
real one). The tokenizers are word-level over a small vocabulary (the real ones are not downloaded): Gemma still
runs on its padded length of 256 and CLIP on 77, so compute is the real one too. Random weights decode noise; only
time and memory mean anything.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..model.encoders import ClipGemmaTextEncoder, SingleTextEncoder, VQTokenizer
from ..model.loading import Editor, Settings

WORDS = (
    "make turn paint the a red blue green yellow sky circle square dog cat photo into remove add bigger "
    "smaller background style of it left right top bottom"
).split()

# per preset: VQ blocks (channels), VQ latent channels, codebook, working side in pixels, text stack
SHAPES = {
    "editmgt": {"vq": (128, 256, 256, 512, 768), "latent": 64, "codes": 8192, "side": 1024, "text": "clip_gemma2"},
    "tiny": {"vq": (8, 16), "latent": 4, "codes": 64, "side": 32, "text": "single"},
}


def _vq(channels: tuple[int, ...], latent: int, codes: int):
    from diffusers import VQModel

    groups = min(32, *channels)
    return VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        block_out_channels=channels,
        layers_per_block=2 if channels[0] >= 32 else 1,
        latent_channels=latent,
        num_vq_embeddings=codes,
        norm_num_groups=groups,
        lookup_from_codebook=True,
        force_upcast=True,
        mid_block_add_attention=False,
    )


def word_tokenizer(padding_side: str = "right", bos: bool = False):
    """A fast word-level tokenizer over WORDS (offsets and special-token masks work as the real ones')."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<bos>", "<eos>"]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(specials + list(WORDS))}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        padding_side=padding_side,
        model_max_length=512,
    )


def published_text_configs(pooled: int = 1024, width: int = 2304):
    """(CLIPTextConfig, Gemma2Config) of the published model's text encoders: CLIP-H's text tower (pooled output
    of `pooled`) and Gemma-2 2B (hidden width `width`)."""
    from transformers import CLIPTextConfig, Gemma2Config

    clip_cfg = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        projection_dim=pooled,
    )
    gemma_cfg = Gemma2Config(
        vocab_size=256000,
        hidden_size=width,
        intermediate_size=9216,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
    )
    return clip_cfg, gemma_cfg


def _clip_gemma(pooled: int, width: int, device, dtype, offload: bool) -> ClipGemmaTextEncoder:
    from transformers import CLIPTextModelWithProjection, Gemma2Model

    clip_cfg, gemma_cfg = published_text_configs(pooled, width)
    home = torch.device("cpu") if offload else torch.device(device)
    with torch.device(home):
        clip, gemma = CLIPTextModelWithProjection(clip_cfg), Gemma2Model(gemma_cfg)
    return ClipGemmaTextEncoder(
        clip.to(dtype),
        word_tokenizer(),
        gemma.to(dtype),
        word_tokenizer("left", bos=True),
        device=torch.device(device),
        offload=offload,
    )


def _single(width: int, device, dtype, offload: bool) -> SingleTextEncoder:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=len(WORDS) + 4,
        hidden_size=width,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * width,
        max_position_embeddings=64,
    )
    model = BertModel(cfg).to("cpu" if offload else device, dtype)
    return SingleTextEncoder(model, word_tokenizer(), 16, device=torch.device(device), offload=offload)


def random_editor(
    config: str = "editmgt",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    offload: bool = False,
    side: int | None = None,
    layers: tuple[int | str, ...] | None = None,
) -> Editor:
    """An Editor of random weights at `config`'s shapes (see SHAPES). dtype: transformer and text encoders (the VQ
    stays float32, as load_editor keeps it); side: working side in pixels (default the preset's); layers: the map's
    entries (default: the published band 28-36 when the model has them, else its last two blocks)."""
    from .common import random_transformer

    if config not in SHAPES:
        raise ValueError(f"config {config!r}; random editors exist for {', '.join(SHAPES)}")
    shape, device = SHAPES[config], torch.device(device)
    torch.manual_seed(0)
    transformer = random_transformer(config, str(device), dtype)
    c = transformer.config
    vq = VQTokenizer(_vq(shape["vq"], shape["latent"], shape["codes"]).to(device))
    if vq.codebook_size != c.codebook_size:
        raise ValueError(f"{config}: VQ codebook {vq.codebook_size} != transformer codebook {c.codebook_size}")
    if shape["text"] == "clip_gemma2":
        text = _clip_gemma(c.pooled_projection_dim, c.joint_attention_dim, device, dtype, offload)
    else:
        text = _single(c.joint_attention_dim, device, dtype, offload)
        pooled = torch.nn.Linear(c.joint_attention_dim, c.pooled_projection_dim, bias=False).to(device, dtype)
        text = _PooledTo(text, pooled)
    band = tuple(range(28, 37)) if c.depth >= 37 else (c.depth - 2, c.depth - 1)
    side = side or shape["side"]
    settings = Settings(
        text={"kind": shape["text"]},
        pixels=side * side,
        attention_layers=layers or band,
        name=f"random weights at the {config} shapes",
        defaults={"steps": 36, "lam": 0.3},
    )
    return Editor(transformer, vq, text, settings, Path("."), device, model_id=f"random:{config}")


class _PooledTo:
    """A single encoder whose pooled vector is projected to the transformer's pooled width (tiny presets differ)."""

    def __init__(self, encoder: SingleTextEncoder, proj: torch.nn.Linear):
        self.encoder, self.proj = encoder, proj

    def __call__(self, prompts: list[str]):
        from dataclasses import replace

        f = self.encoder(prompts)
        with torch.inference_mode():
            pooled = self.proj(f.pooled.to(self.proj.weight.dtype)).float()
        return replace(f, pooled=pooled)

"""Build tiny random model folders in the published layout, for tests (nothing is downloaded).

`make_model_folder(path, text="single")` writes editmgt/ + vqvae/ + text_encoder/ (a tiny BERT with a word-level
tokenizer) + editmgt_studio.json; `text="clip_gemma2"` writes the published text stack instead (tiny CLIP with
projection + tokenizer, tiny Gemma-2 + tokenizer, padded on the left like Gemma's).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from editmgt_core.model.checkpoint import save_transformer
from editmgt_core.model.config import TransformerConfig
from editmgt_core.model.transformer import EditMGTTransformer

WORDS = (
    "make the a an red blue green yellow circle square star dog cat hat put on it bigger smaller remove add "
    "turn into left right top bottom background photo of and with birthday owl ghibli style"
).split()
TEXT_DIM = 16
CODES = 32


def _vq(folder: Path) -> None:
    from diffusers import VQModel

    torch.manual_seed(0)
    vq = VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        num_vq_embeddings=CODES,
        vq_embed_dim=4,
        norm_num_groups=4,
        sample_size=32,
    )
    vq.save_pretrained(folder, safe_serialization=True)


def _word_tokenizer(folder: Path, padding_side: str, bert: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] if bert else ["<pad>", "<unk>", "<bos>", "<eos>"]
    vocab = {t: i for i, t in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=specials[1]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bert:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
    else:
        tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=specials[0],
        unk_token=specials[1],
        bos_token=None if bert else "<bos>",
        eos_token=None if bert else "<eos>",
        cls_token="[CLS]" if bert else None,
        sep_token="[SEP]" if bert else None,
        padding_side=padding_side,
        model_max_length=512,
    )
    fast.save_pretrained(folder)
    return len(vocab)


def _bert(folder: Path) -> None:
    from transformers import BertConfig, BertModel

    n = _word_tokenizer(folder, "right", bert=True)
    torch.manual_seed(1)
    cfg = BertConfig(
        vocab_size=n,
        hidden_size=TEXT_DIM,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(folder, safe_serialization=True)


def _clip(root: Path) -> None:
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    (root / "tokenizer").mkdir(parents=True)
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    (root / "tokenizer" / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (root / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(root / "tokenizer" / "vocab.json"), str(root / "tokenizer" / "merges.txt"))
    tokenizer.save_pretrained(root / "tokenizer")
    torch.manual_seed(2)
    cfg = CLIPTextConfig(
        vocab_size=len(tokens),
        hidden_size=TEXT_DIM,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=12,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    CLIPTextModelWithProjection(cfg).save_pretrained(root / "text_encoder", safe_serialization=True)


def _gemma(folder: Path) -> None:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    n = _word_tokenizer(folder, "left", bert=False)
    torch.manual_seed(3)
    cfg = Gemma2Config(
        vocab_size=n,
        hidden_size=TEXT_DIM,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    Gemma2ForCausalLM(cfg).save_pretrained(folder, safe_serialization=True)


def make_model_folder(root: Path, text: str = "single", max_length: int = 12) -> Path:
    """Write a complete tiny model folder and return it."""
    root.mkdir(parents=True, exist_ok=True)
    _vq(root / "vqvae")
    pooled = TEXT_DIM
    if text == "single":
        _bert(root / "text_encoder")
        spec = {"kind": "single", "path": "text_encoder", "max_length": max_length}
    else:
        _clip(root)
        _gemma(root / "llm_encoder")
        spec = {"kind": "clip_gemma2", "max_length": max_length}
        pooled = 12
    config = TransformerConfig(
        num_layers=1,
        num_single_layers=2,
        num_heads=2,
        head_dim=16,
        joint_attention_dim=TEXT_DIM,
        pooled_projection_dim=pooled,
        axes_dims_rope=(4, 6, 6),
        vocab_size=CODES + 1,
        codebook_size=CODES,
        text_encoder_architecture="tiny",
    )
    torch.manual_seed(4)
    model = EditMGTTransformer(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_transformer(model, root / "editmgt")
    settings = {"name": "tiny", "text": spec, "pixels": 32 * 32, "attention_layers": [1, 2], "image_range": [-1, 1]}
    (root / "editmgt_studio.json").write_text(json.dumps(settings))
    return root

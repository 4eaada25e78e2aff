"""The super-resolving head: what it starts as, how a model folder carries it, and edits decoded at its size."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import VQModel
from PIL import Image
from tiny_model import make_model_folder

from editmgt_core.edit.editing import edit, edit_stream
from editmgt_core.model.loading import load_editor
from editmgt_core.model.upsampler import (
    Upsampler,
    UpsamplerConfig,
    decoder_features,
    load_upsampler,
    save_upsampler,
)
from editmgt_core.sampler.sampling import SamplerOptions

FAST = SamplerOptions(steps=4, guidance_scale=2.0, seed=3, negative_prompt="")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = make_model_folder(tmp_path_factory.mktemp("tiny_sr"))
    torch.manual_seed(1)
    head = Upsampler(UpsamplerConfig(scale=4, in_channels=8, width=8, fine_width=8))
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.05 * torch.randn_like(p))  # a head that draws something of its own
    save_upsampler(head, root / "vqvae")
    return root


@pytest.fixture(scope="module")
def editor(folder):
    return load_editor(folder)


def test_a_fresh_head_is_the_bicubic_upscale_of_the_decoder(folder):
    vq = VQModel.from_pretrained(folder / "vqvae").eval()
    quant = vq.quantize(vq.encode(torch.rand(2, 3, 32, 32) * 2 - 1).latents)[0]
    with torch.no_grad():
        h, y = decoder_features(vq, quant)
        assert torch.allclose(y, vq.decode(quant, force_not_quantize=True).sample, atol=1e-6)
        out = Upsampler(UpsamplerConfig(scale=4, in_channels=8))(h, y)
    assert out.shape == (2, 3, 128, 128)
    assert torch.allclose(out, F.interpolate(y, scale_factor=4, mode="bicubic", align_corners=False), atol=1e-6)


def test_folders_without_a_head_and_bad_heads(tmp_path):
    assert load_upsampler(tmp_path) is None
    (tmp_path / "upsampler.json").write_text('{"scale": 4}')
    with pytest.raises(ValueError, match="upsampler.safetensors"):
        load_upsampler(tmp_path)
    with pytest.raises(ValueError, match="power of 2"):
        Upsampler(UpsamplerConfig(scale=3))


def test_a_trunk_needs_the_tokens_and_configs_name_known_keys_only(tmp_path):
    head = Upsampler(UpsamplerConfig(scale=2, in_channels=8, width=8, trunk_width=16, trunk_blocks=1), token_dim=4)
    h, y, quant = torch.rand(1, 8, 16, 16), torch.rand(1, 3, 16, 16), torch.rand(1, 4, 4, 4)
    with torch.no_grad():
        assert head(h, y, quant).shape == (1, 3, 32, 32)
        with pytest.raises(ValueError, match="quantized tokens"):
            head(h, y)
    save_upsampler(head, tmp_path)
    again = load_upsampler(tmp_path, token_dim=4)
    with torch.no_grad():
        assert torch.equal(again(h, y, quant), head(h, y, quant))
    (tmp_path / "upsampler.json").write_text('{"scale": 4, "colour": 1}')
    with pytest.raises(ValueError, match="unknown keys"):
        load_upsampler(tmp_path)
    with pytest.raises(ValueError, match="trunk_factor"):
        Upsampler(UpsamplerConfig(trunk_width=30, trunk_factor=4))


def test_the_editor_decodes_at_the_heads_size(editor):
    tokens = torch.randint(0, editor.vq.codebook_size, (1, 16, 16))
    assert editor.vq.scale == 4 and editor.vq.decode(tokens).shape == (1, 3, 128, 128)


@pytest.mark.parametrize("size, expected", [((32, 32), (128, 128)), ((40, 24), (160, 96)), ((300, 300), (300, 300))])
def test_results_come_at_the_decoders_size_unless_the_input_is_larger(editor, size, expected):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    assert edit(editor, image, "make it red", FAST).image.size == expected


def test_kept_tokens_show_the_input_upsampled_to_the_decoded_size(editor):
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    held = edit(editor, image, "make the dog red", dataclasses.replace(FAST, lam=1.0))
    assert torch.equal(held.tokens, held.src_tokens)
    up = image.resize((128, 128), Image.Resampling.BICUBIC)
    assert np.array_equal(np.asarray(held.image), np.asarray(up))


def test_previews_come_at_the_decoders_size(editor):
    items = list(edit_stream(editor, Image.new("RGB", (32, 32), (200, 40, 40)), "add a hat", FAST))
    first = items[0].preview(editor)
    assert first.size == (128, 128) == items[-1].image.size


def test_a_trunk_that_embeds_codes_reads_the_ids_of_the_decoded_tokens(folder):
    vq = VQModel.from_pretrained(folder / "vqvae").eval()
    cfg = UpsamplerConfig(
        scale=4,
        in_channels=8,
        width=8,
        trunk_width=8,
        trunk_blocks=1,
        trunk_codes=vq.config.num_vq_embeddings,
        trunk_factor=2 ** (len(vq.config.block_out_channels) - 1),
    )
    head = Upsampler(cfg, token_dim=vq.config.vq_embed_dim)
    with torch.no_grad():
        for p in head.parameters():  # a head and trunk that draw something of their own
            p.add_(0.1 * torch.randn_like(p))
        ids = torch.randint(0, vq.config.num_vq_embeddings, (2, 4, 4))
        quant = vq.quantize.get_codebook_entry(ids.reshape(2, -1), (2, 4, 4, vq.config.vq_embed_dim))
        assert torch.equal(head.trunk_input(vq, quant), ids)
        h, y = decoder_features(vq, quant)
        other = ids.roll(1, dims=-1)
        assert torch.equal(head.decode(vq, quant), head(h, y, ids))
        assert not torch.equal(head(h, y, ids), head(h, y, other))


def test_the_domain_check_reads_a_super_resolving_decoder_at_the_working_size(editor):
    from editmgt_core.studio import domain

    image = Image.fromarray(np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    back = F.interpolate(editor.vq.decode(editor.vq.encode(x)), size=(32, 32), mode="area")
    assert domain.vq_error(editor, image) == pytest.approx(float((back - x).abs().mean()), abs=1e-6)


def test_the_decode_bench_can_time_an_untrained_head_of_any_shape():
    from editmgt_core import paths
    from editmgt_core.bench import decode

    editor = decode.with_fresh_head(load_editor(paths.BUNDLED_MODEL), 32)
    assert editor.vq.scale == 4 and editor.vq.upsampler.trunk.embed.num_embeddings == editor.vq.codebook_size
    assert editor.vq.decode(torch.zeros(1, 16, 16, dtype=torch.long)).shape == (1, 3, 256, 256)

"""The super-resolving decoder's trainer: pairs, losses, checkpoint and resume, frozen tokens, an exported folder."""

import json

import numpy as np
import pytest
import torch
from diffusers import VQModel
from safetensors.torch import load_file

from editmgt_core.model.encoders import VQTokenizer
from editmgt_core.model.upsampler import load_upsampler
from editmgt_core.train import superres, vq
from editmgt_core.world import drawing, samples


@pytest.fixture(scope="module")
def tiny_vq(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vq") / "vqvae"
    torch.manual_seed(0)
    vq.build_vq(vq.PRESETS["tiny"]).save_pretrained(folder, safe_serialization=True)
    return folder


def _args(out, vq, steps, *extra):
    flags = f"--size 32 --scale 2 --width 8 --batch 4 --ckpt-every 2 --log-every 2 --eval-images 4 --steps {steps}"
    return superres.parse_args(["--out", str(out), "--decoder-from", str(vq), *flags.split(), *extra])


def test_pairs_are_one_scene_at_two_sizes():
    small, large = superres.world_pairs(3, 5, 3, 32, 2)
    assert small.shape == (3, 3, 32, 32) and large.shape == (3, 3, 64, 64)
    rec = samples.record(3, 6, 32)  # the third image: record 6's source
    assert torch.equal(small[2], torch.from_numpy(rec.src).permute(2, 0, 1).float() / 127.5 - 1)
    want = drawing.render(rec.src_scene, 64)
    assert torch.equal(large[2], torch.from_numpy(want).permute(2, 0, 1).float() / 127.5 - 1)
    outline = superres.outline_masks(3, 5, 3, 64)
    assert outline.shape == (3, 64, 64) and outline.any() and not outline.all()


def test_gradient_loss_sees_a_blurred_edge_that_a_shift_in_flat_colour_does_not():
    sharp = torch.zeros(1, 1, 8, 8)
    sharp[..., 4:] = 1.0
    blurred = sharp.clone()
    blurred[..., 3], blurred[..., 4] = 0.25, 0.75
    assert superres.gradient_l1(sharp, sharp + 0.25) == 0  # a uniform offset has the same gradients
    assert superres.gradient_l1(blurred, sharp) > 0


def test_edge_energy_asks_for_a_sharp_edge_near_where_it_belongs():
    x = torch.arange(32, dtype=torch.float32)
    edge = lambda at, width: ((x - at) / width + 0.5).clamp(0, 1).expand(1, 1, 32, 32)  # a ramp of `width` pixels
    sharp = edge(16, 1)
    assert superres.edge_energy_l1(sharp, sharp, 8) == 0
    near, blurred = superres.edge_energy_l1(edge(17, 1), sharp, 8), superres.edge_energy_l1(edge(16, 6), sharp, 8)
    assert 0 < near < blurred  # one pixel off costs less than a six-pixel blur in the right place


def test_crop_windows_line_up_with_the_large_image():
    small = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    large = small.repeat_interleave(4, -1).repeat_interleave(4, -2)
    h, y, big = superres.crop_windows(small, small, large, 4, torch.Generator().manual_seed(0))
    assert h.shape == (2, 3, 4, 4) and big.shape == (2, 3, 16, 16)
    assert torch.equal(big, h.repeat_interleave(4, -1).repeat_interleave(4, -2))
    assert superres.crop_windows(small, small, large, 0, torch.Generator())[2] is large


def test_train_resume_and_export_keep_every_token(tmp_path, tiny_vq, capsys):
    report = superres.main(_args(tmp_path, tiny_vq, 4))
    assert (tmp_path / "ckpt" / "step_0000004" / "model.safetensors").exists()
    assert {"psnr", "psnr_bicubic", "sharpness", "sharpness_render", "sharpness_ratio"} <= set(report)
    superres.main(_args(tmp_path, tiny_vq, 6, "--resume"))
    log = capsys.readouterr().out
    assert "at step 4" in log.split("resumed from")[1] and "[sr] step 6 " in log
    assert json.loads((tmp_path / "ckpt" / "step_0000006" / "state.json").read_text())["step"] == 6

    before, after = (load_file(f / "diffusion_pytorch_model.safetensors") for f in (tiny_vq, tmp_path / "vqvae"))
    frozen = [k for k in before if not k.startswith(("decoder.", "post_quant_conv."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # encoder and codebook: same tokens
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    vq = VQTokenizer(VQModel.from_pretrained(tmp_path / "vqvae"), (-1, 1), load_upsampler(tmp_path / "vqvae"))
    assert vq.decode(torch.zeros(1, 8, 8, dtype=torch.long)).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="width"):
        superres.main(_args(tmp_path, tiny_vq, 8, "--resume", "--width", "16"))


def test_head_only_leaves_the_decoder_as_it_was(tmp_path, tiny_vq):
    superres.main(_args(tmp_path, tiny_vq, 3, "--head-only", "--crop", "8"))
    before, after = (load_file(f / "diffusion_pytorch_model.safetensors") for f in (tiny_vq, tmp_path / "vqvae"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    head = load_upsampler(tmp_path / "vqvae")
    assert head.cfg.scale == 2 and np.abs(head.expand[-1].weight.detach().numpy()).sum() > 0  # it learnt


def test_bad_arguments(tmp_path, tiny_vq):
    with pytest.raises(ValueError, match="power of 2"):
        superres.main(_args(tmp_path, tiny_vq, 2, "--scale", "3"))
    with pytest.raises(ValueError, match="vqvae folder"):
        superres.main(_args(tmp_path, tmp_path / "nowhere", 2))
    with pytest.raises(ValueError, match="--minutes"):
        superres.main(_args(tmp_path, tiny_vq, 2, "--minutes", "0"))


def test_a_trunk_grows_on_a_trained_head_and_starts_as_it(tmp_path, tiny_vq):
    first = tmp_path / "head"
    superres.main(_args(first, tiny_vq, 2, "--head-only", "--crop", "8"))
    trained = load_upsampler(first / "vqvae")
    vq_model = VQModel.from_pretrained(first / "vqvae").eval()
    model, params = superres.build(
        superres.SRConfig(
            decoder_from=str(first / "vqvae"), scale=2, width=8, trunk_width=16, trunk_blocks=2, head_only=True
        )
    )
    assert model.head.trunk is not None and {id(p) for p in model.head.trunk.parameters()} <= {id(p) for p in params}
    quant = vq_model.quantize(vq_model.encode(torch.rand(2, 3, 32, 32) * 2 - 1).latents)[0]
    with torch.no_grad():
        assert torch.equal(model.head.decode(vq_model, quant), trained.decode(vq_model, quant))

    grown = tmp_path / "grown"
    superres.main(_args(grown, first / "vqvae", 3, "--head-only", "--crop", "8", "--trunk-width", "16"))
    head = load_upsampler(grown / "vqvae")
    assert head.cfg.trunk_width == 16 and head.trunk.proj.weight.abs().sum() > 0  # the trunk learnt
    with torch.no_grad():
        assert not torch.equal(head.decode(vq_model, quant), trained.decode(vq_model, quant))
    tok = VQTokenizer(VQModel.from_pretrained(grown / "vqvae"), (-1, 1), head)
    assert tok.decode(torch.zeros(1, 8, 8, dtype=torch.long)).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="trunk_width"):
        superres.main(_args(grown, first / "vqvae", 4, "--head-only", "--resume", "--trunk-width", "32"))


def test_snapping_sharpens_an_edge_in_place_and_leaves_gradients_alone():
    from editmgt_core.train.vq_eval import psnr, snap_edges

    big = torch.full((1, 3, 64, 64), -0.8)
    big[..., :, 27:] = 0.6  # a vertical edge at a column that is not a multiple of 4
    up = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(big, 4), scale_factor=4, mode="bicubic")
    snapped = snap_edges(up)
    assert psnr(snapped, big) > psnr(up, big) + 1.5
    shifted = torch.cat([up[..., :1].expand(-1, -1, -1, 3), up[..., :-3]], -1)  # its edge 3 px off: a sharp edge
    assert psnr(snap_edges(shifted), big) < psnr(shifted, big)  # in the wrong place costs more than the blur
    ramp = torch.linspace(-0.15, 0.15, 64).expand(1, 3, 64, 64)  # a slow gradient: under the contrast floor
    assert torch.equal(snap_edges(ramp), ramp)


def test_the_feed_renders_ahead_in_workers_the_same_pairs():
    cfg = superres.SRConfig(batch=4, size=32, scale=2, steps=5, workers=2)
    feed = superres.PairFeed(cfg)
    try:
        for i in (0, 1, 3):  # in order and with a gap; the gap's step is dropped unused
            small, large = feed(i)
            want = superres.world_pairs(cfg.seed, i * 2, 4, 32, 2)
            assert torch.equal(small, want[0]) and torch.equal(large, want[1])
        assert set(feed.ahead) == {4}  # steps 4 (ahead) only: 2 was passed over
    finally:
        feed.close()


def test_decoder_and_a_code_embedding_trunk_train_together(tmp_path, tiny_vq):
    superres.main(_args(tmp_path, tiny_vq, 2, "--trunk-width", "16", "--trunk-codes", "--workers", "1"))
    head = load_upsampler(tmp_path / "vqvae")
    assert head.cfg.trunk_codes == VQModel.from_pretrained(tiny_vq).config.num_vq_embeddings
    before, after = (load_file(f / "diffusion_pytorch_model.safetensors") for f in (tiny_vq, tmp_path / "vqvae"))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    tok = VQTokenizer(VQModel.from_pretrained(tmp_path / "vqvae"), (-1, 1), head)
    assert tok.decode(torch.randint(0, 8, (1, 8, 8))).shape == (1, 3, 64, 64)


def test_overfit_trains_every_step_on_the_first_batch(tmp_path, tiny_vq, monkeypatch):
    starts = []
    real = superres.PairFeed.__call__
    monkeypatch.setattr(superres.PairFeed, "__call__", lambda self, i: starts.append(i) or real(self, i))
    superres.main(_args(tmp_path / "a", tiny_vq, 3, "--head-only", "--overfit"))
    superres.main(_args(tmp_path / "b", tiny_vq, 3, "--head-only"))
    assert starts == [0, 0, 0, 0, 1, 2]

"""Smoke tests for the VQ tokenizer trainer: checkpoint, resume, and a loadable diffusers VQModel."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from diffusers import VQModel

from editmgt_core.train import datasets, runner, vq, vq_eval


def _args(out, steps, *extra):
    flags = "--preset tiny --batch 4 --ckpt-every 2 --log-every 2 --restart-every 2 --eval-images 4 --threads 1"
    flags += " --crop 16 --crop-until 3"
    return vq.parse_args(["--out", str(out), "--steps", str(steps), *flags.split(), *extra])


def test_train_checkpoint_resume_and_load(tmp_path, capsys):
    report = vq.main(_args(tmp_path, 4))
    assert (tmp_path / "ckpt" / "step_0000004" / "model.safetensors").exists()
    assert 0.0 < report["codebook_usage"] <= 1.0 and report["psnr"] > 0

    vq.main(_args(tmp_path, 6, "--resume"))
    log = capsys.readouterr().out
    resumed = log.split("resumed from")[1]
    assert "at step 4" in resumed and "step 6/6" in resumed and "step 2/" not in resumed
    assert json.loads((tmp_path / "ckpt" / "step_0000006" / "state.json").read_text())["step"] == 6
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("step_*")) == ["step_0000004", "step_0000006"]
    keys = {"psnr", "codebook_usage", "perplexity", "flat_code_purity"}
    assert set(json.loads((tmp_path / "vq_report.json").read_text())) >= keys

    model = VQModel.from_pretrained(tmp_path / "vqvae")
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        latents = model.encode(x).latents
        tokens = vq_eval.code_indices(model, latents)
        _, _, (_, _, flat) = model.quantize(latents)
    assert latents.shape == (1, 8, 16, 16) and tokens.shape == (1, 16, 16)
    assert torch.equal(tokens.flatten(), flat.flatten())  # same codes as the model's own quantizer
    assert tokens.min() >= 0 and tokens.max() < model.config.num_vq_embeddings


def test_checkpoint_round_trip(tmp_path):
    model = vq.build_vq(vq.PRESETS["tiny"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = datasets.world_images(0, 0, 2, 32)
    vq.train_step(model, x, opt)
    usage = torch.arange(64, dtype=torch.float32)
    path = vq.save_checkpoint(tmp_path, 1, model, opt, usage, {"note": "x"})
    fresh = vq.build_vq(vq.PRESETS["tiny"])
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    state, usage2 = vq.load_checkpoint(path, fresh, fresh_opt)
    assert state["step"] == 1 and state["note"] == "x" and torch.equal(usage, usage2)
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    sa, sb = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)


def test_world_images_crops_and_bad_config():
    x = datasets.world_images(0, 0, 5, 32)
    assert x.shape == (5, 3, 32, 32) and x.min() >= -1.0 and x.max() <= 1.0
    crops = datasets.random_crops(x, 16, torch.Generator().manual_seed(0))
    assert crops.shape == (5, 3, 16, 16)
    assert torch.equal(crops, datasets.random_crops(x, 16, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="crop"):
        datasets.random_crops(x, 40, torch.Generator())
    with pytest.raises(ValueError, match="norm_num_groups"):
        vq.build_vq(vq.VQConfig(block_out_channels=(12, 16, 16), norm_num_groups=8))
    with pytest.raises(ValueError, match="preset"):
        vq.main(vq.parse_args(["--out", "unused", "--preset", "huge"]))


def test_codebook_override(tmp_path):
    report = vq.main(_args(tmp_path, 1, "--codebook", "32"))
    assert report["vq_config"]["num_vq_embeddings"] == 32
    assert VQModel.from_pretrained(tmp_path / "vqvae").config.num_vq_embeddings == 32
    with pytest.raises(ValueError, match="codebook"):
        vq.main(_args(tmp_path / "bad", 1, "--codebook", "1"))
    with pytest.raises(ValueError, match="same --preset and --codebook"):
        vq.main(_args(tmp_path, 2, "--codebook", "16", "--resume"))


def test_flat_code_purity():
    x = torch.zeros(2, 3, 8, 8)
    x[:, 0, :, 4:] = 1.0  # two flat colours: left half black, right half red; cells of 4x4 pixels
    x[1, 1, 4:, :4] = 0.5  # image 1: one more colour in its bottom-left cell
    x[1, 2, 0, 0] = 0.3  # image 1: its top-left cell is not flat
    one_code_per_colour = torch.tensor([[[0, 1], [0, 1]], [[0, 1], [2, 1]]])
    assert vq_eval.flat_code_purity(x, one_code_per_colour) == 1.0
    split = one_code_per_colour.clone()
    split[0, 1, 1] = 3  # red cells: codes 1, 3, 1, 1 -> 3 of 4 on red's most common code
    assert vq_eval.flat_code_purity(x, split) == pytest.approx(6 / 7)  # 7 flat cells, 6 on their colour's top code
    split[1, 0, 0] = 5  # a non-flat cell's code does not count
    assert vq_eval.flat_code_purity(x, split) == pytest.approx(6 / 7)


def test_decoder_fine_tune_keeps_every_token(tmp_path, capsys):
    """--decoder-from trains the decoder of a saved tokenizer and nothing else: the encoder, quant_conv and codebook
    are bitwise unchanged, so every image keeps its tokens (a transformer trained on them still fits)."""
    from safetensors.torch import load_file

    vq.main(_args(tmp_path / "base", 3))
    capsys.readouterr()
    base = tmp_path / "base" / "vqvae"
    args = ["--decoder-from", str(base), "--lr", "3e-3"]
    report = vq.main(_args(tmp_path / "dec", 4, *args))
    assert report["codes_unchanged"] == 1.0 and report["psnr_before"] > 0 and report["psnr"] > 0
    assert "restarted" not in capsys.readouterr().out  # the codebook is frozen: no dead-code restarts
    before = load_file(base / "diffusion_pytorch_model.safetensors")
    after = load_file(tmp_path / "dec" / "vqvae" / "diffusion_pytorch_model.safetensors")
    assert before.keys() == after.keys()
    frozen = [k for k in before if not k.startswith(("decoder.", "post_quant_conv."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    x = datasets.world_images(9, 0, 4, 32)
    with torch.no_grad():
        old, new = VQModel.from_pretrained(base), VQModel.from_pretrained(tmp_path / "dec" / "vqvae")
        codes = [vq_eval.code_indices(m, m.encode(x).latents) for m in (old, new)]
    assert torch.equal(*codes)
    vq.main(_args(tmp_path / "dec", 5, *args, "--resume"))  # resumes the decoder run
    with pytest.raises(ValueError, match="decoder-from"):
        vq.main(_args(tmp_path / "dec", 6, "--resume"))  # a from-scratch resume of a decoder run is refused
    with pytest.raises(ValueError, match="vqvae folder"):
        vq.main(_args(tmp_path / "x", 1, "--decoder-from", str(tmp_path)))
    with pytest.raises(ValueError, match="codebook"):
        vq.main(_args(tmp_path / "y", 1, "--decoder-from", str(base), "--codebook", "32"))


def test_world_batches_in_order_with_workers():
    """Processes draw the same batches, in step order, as the in-process loop (a resumed run starts mid-stream)."""
    alone = list(datasets.world_batches(3, 4, 32, 2, 7))
    pooled = list(datasets.world_batches(3, 4, 32, 2, 7, workers=2))
    assert len(alone) == len(pooled) == 5
    assert all(torch.equal(a, b) for a, b in zip(alone, pooled, strict=True))
    assert torch.equal(alone[0], datasets.world_images(3, 8, 4, 32))


def test_world_batches_after_parallel_torch_work():
    """The workers start after the trainer's own parallel torch work (the held-out evaluation) and still deliver:
    forked from that main thread, they hung in their first parallel op. A fresh process, so a hang is a timeout."""
    code = (
        "import torch\n"
        "from editmgt_core.train import datasets, vq, vq_eval\n"
        "torch.set_num_threads(2)\n"
        "vq_eval.evaluate(vq.build_vq(vq.PRESETS['small']), datasets.world_images(1, 0, 16, 64))\n"
        "x = list(datasets.world_batches(3, 32, 64, 0, 2, workers=2))\n"
        "assert torch.equal(x[1], datasets.world_images(3, 32, 32, 64))\n"
        "print('delivered', len(x))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the hung workers too
        proc.communicate()
        pytest.fail("the image workers hung")
    assert proc.returncode == 0 and "delivered 2" in out, err[-2000:]


def test_minutes_budget_stops_with_a_checkpoint(tmp_path, monkeypatch, capsys):
    """--minutes stops training when the wall clock is spent, saves that step and the model, and the cosine runs over
    the budget (10% of the peak at its end); --resume goes on from there."""
    cfg = vq.TrainConfig(steps=100, warmup=2, lr=1.0)
    assert runner.lr_at(50, cfg, 0.0) == pytest.approx(1.0) and runner.lr_at(50, cfg, 1.0) == pytest.approx(0.1)
    clock = iter(range(0, 10_000, 2))  # every reading of the clock is 2 s later
    monkeypatch.setattr(vq.time, "time", lambda: float(next(clock)))
    report = vq.main(_args(tmp_path, 50, "--minutes", "0.2"))  # 12 s: a few steps, far fewer than 50
    log = capsys.readouterr().out
    stopped = int(log.split("time budget reached at step ")[1].split()[0])
    assert 0 < stopped < 50 and report["steps"] == stopped
    assert vq.latest_checkpoint(tmp_path).name == f"step_{stopped:07d}"
    assert (tmp_path / "vqvae" / "config.json").exists()
    monkeypatch.undo()
    vq.main(_args(tmp_path, stopped + 2, "--resume"))
    assert f"at step {stopped}" in capsys.readouterr().out
    with pytest.raises(ValueError, match="minutes"):
        vq.main(_args(tmp_path / "x", 1, "--minutes", "0"))
    with pytest.raises(ValueError, match="workers"):
        vq.main(_args(tmp_path / "x", 1, "--workers", "0"))


def test_checkpoint_of_the_earlier_optimizer_layout_still_loads(tmp_path):
    """Run folders made before the optimizer tensors were keyed by parameter name ('<index>.<slot>' keys with the
    param_groups in state.json) resume as they are."""
    from safetensors.torch import save_file

    model = vq.build_vq(vq.PRESETS["tiny"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    vq.train_step(model, datasets.world_images(0, 0, 2, 32), opt)
    path = vq.save_checkpoint(tmp_path, 1, model, opt, torch.ones(64), {})
    sd = opt.state_dict()
    save_file(
        {**{f"{i}.{k}": v for i, s in sd["state"].items() for k, v in s.items()}, "usage": torch.ones(64)},
        path / "optim.safetensors",
    )
    (path / "state.json").write_text(json.dumps({"step": 1, "param_groups": sd["param_groups"]}))
    fresh = vq.build_vq(vq.PRESETS["tiny"])
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    state, _ = vq.load_checkpoint(path, fresh, fresh_opt)
    sa, sb = sd["state"], fresh_opt.state_dict()["state"]
    assert state["step"] == 1 and all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)

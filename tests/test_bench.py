"""The benchmark commands run and report the fields the README and notes quote (numbers come from real runs)."""

import json

import pytest
from tiny_model import make_model_folder

from editmgt_core.bench import cli


def test_forward_bench_reports_timings_and_memory(capsys):
    cli.main(
        [
            "forward",
            "--config",
            "tiny",
            "--grid",
            "8",
            "--text-len",
            "16",
            "--capture-from",
            "2",
            "--capture-count",
            "2",
            "--repeats",
            "1",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert out["capture_layers"] == [2, 3]
    assert out["median_ms"] > 0 and out["median_ms_capture"] > 0 and out["peak_rss_gb"] > 0


def test_edit_bench_splits_stages(tmp_path, capsys):
    folder = make_model_folder(tmp_path / "tiny")
    cli.main(["edit", "--model", str(folder), "--steps", "3", "--repeats", "1", "--instruction", "make it red"])
    out = json.loads(capsys.readouterr().out)
    assert set(out["plain"]["parts_ms"]) == {"text", "encode", "sampling", "decode"}
    assert out["hold"]["lam"] == 0.3 and "hold_overhead_sampling" in out


def test_random_weights_edit_bench_reports_the_published_runs_fields(capsys):
    """The GPU benchmark's CPU smoke run: whole edits of a tiny random editor in bf16, map and hold on, with the
    split, the streamed run, a profile and the eager float32 comparison (no timing asserted)."""
    cli.main(
        [
            "edit",
            "--random-weights",
            "--config",
            "tiny",
            "--dtype",
            "bf16",
            "--steps",
            "3",
            "--repeats",
            "1",
            "--threads",
            "1",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    run = out["run"]
    assert run["dtype"] == "bfloat16" and run["tokens"] == 16 and run["steps"] == 3 and run["lam"] == 0.3
    assert set(run["edit"]["parts_ms"]) == {"text", "encode", "sampling", "decode"}
    assert run["stream"]["first_frame_ms"] <= run["stream"]["median_ms"]
    assert run["stream"]["first_frame_after_text_ms"] < run["stream"]["first_frame_ms"]
    assert run["profile"] and all(row["self_ms"] >= 0 for row in run["profile"])
    assert out["eager_fp32"]["dtype"] == "float32" and out["speedup_over_eager_fp32"] > 0
    cli.main(
        [
            "edit",
            "--random-weights",
            "--config",
            "tiny",
            "--dtype",
            "bf16",
            "--steps",
            "2",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--quick",
            "--no-fp32",
        ]
    )
    captured = capsys.readouterr()
    quick = json.loads(captured.out)
    assert "stream" not in quick["run"] and "profile" not in quick["run"] and "eager_fp32" not in quick
    assert quick["run"]["edit"]["median_ms"] > 0 and quick["run"]["build_s"] >= 0
    assert "[bench] torch.bfloat16 editor built in" in captured.err and "[bench] edits: median" in captured.err


def test_random_editor_has_the_published_shapes():
    """Built on the meta device (no memory): the parameter counts docs/published-model.md quotes, a 16x VQ with the
    published codebook, the map band 28-36 and 36 steps at lambda 0.3 by default."""
    import torch

    from editmgt_core.bench.random_model import random_editor

    e = random_editor("editmgt", "meta", torch.bfloat16)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(e.transformer) == 1_009_306_624
    assert round(count(e.text.clip) / 1e6, 1) == 354.0 and round(count(e.text.gemma) / 1e6, 1) == 2614.3
    assert e.vq.factor == 16 and e.vq.codebook_size == e.transformer.config.codebook_size == 8192
    assert e.settings.pixels == 1024 * 1024 and e.settings.attention_layers == tuple(range(28, 37))
    assert e.transformer.dtype == torch.bfloat16 and next(e.vq.vq.parameters()).dtype == torch.float32


def _tiny_inputs(model, seed: int) -> dict:
    """A guidance pair of random inputs at the tiny preset's shapes (8x8 tokens, 5 text tokens, a condition image)."""
    import torch

    c, g = model.config, torch.Generator().manual_seed(seed)
    return dict(
        tokens=torch.randint(0, 64, (2, 8, 8), generator=g),
        txt=torch.randn(2, 5, c.joint_attention_dim, generator=g),
        pooled=torch.randn(2, c.pooled_projection_dim, generator=g),
        micro=torch.tensor([[32.0, 32, 0, 0, 6]]).repeat(2, 1),
        timestep=torch.full((2,), 10),
        cond=torch.randint(0, 64, (2, 8, 8), generator=g),
    )


def test_compiled_blocks_match_eager_and_compile_each_capture_once():
    """compile_transformer wires torch.compile into every block (the eager backend here: inductor needs minutes on
    this CPU); outputs and captured maps equal the uncompiled model's, with and without capture."""
    import torch

    from editmgt_core.bench.common import random_transformer
    from editmgt_core.model.loading import compile_transformer

    model = random_transformer("tiny", "cpu", torch.float32)
    x = _tiny_inputs(model, seed=1)
    with torch.inference_mode():
        ref, ref_maps = model(**x, gamma=1.1, capture=[3])
        plain, _ = model(**x, gamma=1.1, capture=[])
    compile_transformer(model, backend="eager")
    blocks = [*model.transformer_blocks, *model.single_transformer_blocks]
    assert all("forward" in vars(b) for b in blocks)  # each block's own compiled forward; weights untouched
    with torch.inference_mode():
        out, maps = model(**x, gamma=1.1, capture=[3])
        out_plain, _ = model(**x, gamma=1.1, capture=[])
    assert torch.allclose(out, ref, atol=1e-6) and torch.allclose(maps[3], ref_maps[3], atol=1e-6)
    assert torch.allclose(out_plain, plain, atol=1e-6)
    assert set(model.state_dict()) == set(random_transformer("tiny", "cpu", torch.float32).state_dict())
    with pytest.raises(ValueError, match="reduce-overhead"):
        compile_transformer(model, "fastest")


def test_cuda_graph_compile_copies_each_blocks_outputs():
    """With CUDA graphs ('reduce-overhead') a block's outputs sit in buffers the next replay of the same graph
    overwrites (seen on a GPU: 'accessing tensor output of CUDAGraphs that has been overwritten'), so each block
    hands on copies. Checked here with the eager backend (no CUDA): same values, fresh storage, the same model
    output."""
    import torch

    from editmgt_core.bench.common import random_transformer
    from editmgt_core.model.loading import compile_transformer, outputs_copied

    kept = [torch.ones(3), {"map": torch.zeros(2)}, 7]
    copied = outputs_copied(lambda: (kept[0], [kept[1]], kept[2]))()
    assert torch.equal(copied[0], kept[0]) and copied[0].data_ptr() != kept[0].data_ptr()
    assert copied[1][0]["map"].data_ptr() != kept[1]["map"].data_ptr() and copied[2] == 7
    model = random_transformer("tiny", "cpu", torch.float32)
    x = _tiny_inputs(model, seed=2)
    with torch.inference_mode():
        ref, ref_maps = model(**x, gamma=1.1, capture=[2])
    compile_transformer(model, "reduce-overhead", backend="eager")
    with torch.inference_mode():
        out, maps = model(**x, gamma=1.1, capture=[2])
    assert torch.allclose(out, ref, atol=1e-6) and torch.allclose(maps[2], ref_maps[2], atol=1e-6)

"""The transformer trainer's data: world records in worker processes, category weights, phrasings, held tokens."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from editmgt_core.train import datasets, mgt
from editmgt_core.world import hard_cases, samples


def test_hold_unchanged_keeps_source_tokens_where_pixels_did_not_change():
    src, tgt = torch.arange(16).view(1, 4, 4), 100 + torch.arange(16).view(1, 4, 4)
    src_px = torch.zeros(1, 16, 16, 3, dtype=torch.uint8)
    tgt_px = src_px.clone()
    tgt_px[0, 0, 15, 1] = 7  # one pixel in token (0, 3)
    held, changed = datasets.hold_unchanged(src, tgt, src_px, tgt_px, dilate=0)
    assert changed.sum() == 1 and changed[0, 0, 3]
    assert held[0, 0, 3] == 103 and (held[~changed] == src[~changed]).all()
    held, changed = datasets.hold_unchanged(src, tgt, src_px, tgt_px, dilate=1)
    assert changed[0].nonzero().tolist() == [[0, 2], [0, 3], [1, 2], [1, 3]]


def test_world_generation_in_worker_processes_matches_in_process():
    cfg = mgt.TrainConfig(records=10, size=32)
    one = list(datasets._world_records(cfg, workers=1, chunk=4))
    many = list(datasets._world_records(cfg, workers=2, chunk=4))
    assert [len(c[2]) for c in many] == [4, 4, 2]  # chunks come back in record order
    for (src, tgt, text), (src2, tgt2, text2) in zip(one, many, strict=True):
        assert text == text2 and (src == src2).all() and (tgt == tgt2).all()
    assert many[2][2][1] == samples.record(0, 9, 32).instruction


def test_category_weights_shift_the_training_mix():
    cfg = mgt.TrainConfig(records=400, size=32, categories="add=3,style=0,remove=0")
    cats = [
        datasets.record_category(cfg.seed, i, datasets.category_weights(cfg.categories)) for i in range(cfg.records)
    ]
    assert "style" not in cats and "remove" not in cats
    share = cats.count("add") / len(cats)
    assert 0.3 < share < 0.5  # 3 of 7.0 weight units: 0.43
    src, tgt, text = datasets._world_chunk(cfg.seed, 5, 8, cfg.size, cfg.categories)
    expected = [samples.record(cfg.seed, i, 32, cats[i]) for i in range(5, 8)]
    assert text == [r.instruction for r in expected] and (tgt == np.stack([r.tgt for r in expected])).all()
    assert datasets.category_weights("") is None and datasets.record_category(0, 3, None) is None
    uniform = datasets._world_chunk(0, 0, 2, 32)[2]
    assert uniform == [samples.record(0, i, 32).instruction for i in range(2)]  # no weights: the world's own draw


@pytest.mark.parametrize(
    "spec, message",
    [
        ("ad=2", "NAME one of"),
        ("add", "NAME=WEIGHT"),
        ("add=x", "not a number"),
        ("add=-1", ">= 0"),
        ("add=nan", ">= 0"),
        ("add=2,add=3", "named twice"),
        (",".join(f"{c}=0" for c in samples.CATEGORIES), "above 0"),
    ],
)
def test_category_weights_refuse_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        datasets.category_weights(spec)
    with pytest.raises(ValueError, match=message):  # before any world record is made
        next(datasets._world_records(mgt.TrainConfig(records=4, size=32, categories=spec), workers=1))


def test_mixed_phrasing_draws_templates_and_training_families_only():
    src, tgt, text = datasets._world_chunk(0, 0, 40, 32, "", "mixed")
    expected = [samples.record(0, i, 32, phrasing="mixed") for i in range(40)]
    assert text == [r.instruction for r in expected] and (tgt == np.stack([r.tgt for r in expected])).all()
    families = {r.edit["phrasing"] for r in expected}
    assert "template" in families and len(families) >= 5 and not any(r.edit["held_out"] for r in expected)
    assert (src == np.stack([samples.record(0, i, 32).src for i in range(40)])).all()  # same records, new wording
    assert datasets._world_chunk(0, 0, 3, 32)[2] == [samples.record(0, i, 32).instruction for i in range(3)]


def _tiny_cfg(**kw):
    return mgt.TrainConfig(records=12, size=32, text_len=8, phrasing="mixed", categories="add=2", **kw)


def test_prepared_tokens_match_the_pixel_path(tmp_path):
    """The compact stage (tokens first, text features after) gives the same training data as the older path that
    kept every record's pixels (world.safetensors)."""
    from tiny_model import _vq

    _vq(tmp_path / "vq")
    cfg = _tiny_cfg()
    datasets.prepare_world(tmp_path / "pixels", cfg)
    old = datasets.prepare_data(tmp_path / "pixels", tmp_path / "vq", cfg)
    new = datasets.prepare_data(tmp_path / "tokens", tmp_path / "vq", cfg)
    assert not (tmp_path / "tokens" / "world.safetensors").exists()
    assert (tmp_path / "tokens" / "tokens.safetensors").is_file()
    assert set(old) == set(new)
    for key in old:
        assert torch.equal(old[key], new[key]), key
    names = (tmp_path / name / "instructions.json" for name in ("pixels", "tokens"))
    assert len({p.read_text() for p in names}) == 1


def test_prepare_tokens_resumes_from_its_chunks(tmp_path, monkeypatch):
    from tiny_model import _vq

    _vq(tmp_path / "vq")
    cfg = _tiny_cfg()
    whole = datasets.prepare_tokens(tmp_path / "whole", tmp_path / "vq", cfg, chunk=5)
    assert not (tmp_path / "whole" / "token_chunks").exists()  # all of it is in tokens.safetensors
    real, made = datasets._world_chunk, []

    def stopped(*args):  # the run is killed while it generates the second chunk
        if args[1] == 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(datasets, "_world_chunk", stopped)
    with pytest.raises(KeyboardInterrupt):
        datasets.prepare_tokens(tmp_path / "a", tmp_path / "vq", cfg, chunk=5)
    chunks = tmp_path / "a" / "token_chunks"
    assert sorted(f.name for f in chunks.iterdir()) == ["00000000.json", "00000000.safetensors"]
    monkeypatch.setattr(datasets, "_world_chunk", lambda *a: made.append(a[1:3]) or real(*a))
    again = datasets.prepare_tokens(tmp_path / "a", tmp_path / "vq", cfg, chunk=5)
    assert made == [(5, 10), (10, 12)]  # only the unfinished chunks are made again
    for key in whole:
        assert torch.equal(whole[key], again[key]), key
    assert (tmp_path / "a" / "instructions.json").read_text() == (tmp_path / "whole" / "instructions.json").read_text()
    (tmp_path / "a" / "tokens.safetensors").unlink()
    chunks.mkdir()  # chunks that do not tile the records (left by another chunk size) are refused, not mixed
    for start, stop in ((0, 5), (6, 12)):
        part = {k: v[start:stop].contiguous() for k, v in whole.items() if k != "text"}
        save_file(part, chunks / f"{start:08d}.safetensors")
        (chunks / f"{start:08d}.json").write_text(json.dumps(["x"] * (stop - start)))
    with pytest.raises(RuntimeError, match="expected a chunk starting at record 5, found 00000006"):
        datasets.prepare_tokens(tmp_path / "a", tmp_path / "vq", cfg, chunk=6)


def test_slice_shares_draw_robustness_records_for_training():
    shares = datasets.slice_shares("small=0.25,overlap=0.25")
    names = [datasets.record_slice(7, i, shares) for i in range(400)]
    assert 0.18 < names.count("small") / 400 < 0.32 and 0.18 < names.count("overlap") / 400 < 0.32
    assert names.count(None) > 150 and "crowded" not in names
    src, tgt, text = datasets._world_chunk(7, 0, 6, 32, "", "mixed", "small=0.25,overlap=0.25")
    for i in range(6):
        rec = datasets.training_record(7, i, 32, None, "mixed", shares)
        expected = (
            hard_cases.slice_record(7, i, names[i], 32, "mixed")
            if names[i]
            else samples.record(7, i, 32, phrasing="mixed")
        )
        assert text[i] == rec.instruction == expected.instruction and (tgt[i] == expected.tgt).all()
    assert datasets.slice_shares("") == {} and datasets.record_slice(7, 0, {}) is None


@pytest.mark.parametrize(
    "spec, message",
    [
        ("ambiguous=0.1", "no single right edit"),
        ("tiny=0.1", "NAME one of"),
        ("small=0.6,crowded=0.6", "more than 1"),
        ("small=-1", ">= 0"),
        ("small", "NAME=WEIGHT"),
    ],
)
def test_slice_shares_refuse_bad_specs(spec, message, tmp_path, capsys):
    with pytest.raises(ValueError, match=message):
        datasets.slice_shares(spec)
    with pytest.raises(SystemExit):  # the trainer's usage error, before anything is made
        mgt.main(["--out", str(tmp_path / "run"), "--slices", spec, "--prepare-world"])
    assert message.split()[0] in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

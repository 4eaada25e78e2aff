"""Reference-compatible edits against the reference pipeline run as its infer.py runs it, case by case.

Every case folder under EDITMGT_PIPELINE_DIR (default ../shared/reference/pipeline; see its README) holds an input,
a meta.json with everything the run needs (its model folder relative to the case, the instruction as typed, the
negative prompt, steps, guidance, γ, seed, the pipeline's size), the reference's token grids after every step and
the PNG infer.py saved. The edit must give the same tokens at every step and the PNG within the README's
tolerance: max |Δ| ≤ 1 with at most 1% of values differing (exactly equal where the decoder's float sums match).
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from editmgt_core.edit.editing import EditResult, Progress, default_options, edit_stream
from editmgt_core.model.loading import load_editor

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = Path(os.environ.get("EDITMGT_PIPELINE_DIR", ROOT.parent / "shared" / "reference" / "pipeline"))
CASES = sorted(p for p in PIPELINE.glob("*") if (p / "meta.json").is_file()) if PIPELINE.is_dir() else []
_editors = {}


def editor_for(case: Path, meta: dict):
    folder = (case / meta["model"]["folder"]).resolve()
    for name, digest in meta["model"].get("sha256", {}).items():  # the folder the case was made with
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, f"{folder / name} differs"
    if folder not in _editors:
        _editors[folder] = load_editor(folder)
    return _editors[folder]


def run_case(case: Path, meta: dict):
    editor = editor_for(case, meta)
    call = meta.get("pipeline_call", {})
    temperature = call.get("left_at_defaults", {}).get("temperature", (2, 0))
    options = default_options(
        editor,
        reference_compatible=True,
        steps=meta["num_inference_steps"],
        guidance_scale=float(meta["guidance_scale"]),
        gamma=float(meta["reference_strength"]),
        seed=meta["seed"],
        negative_prompt=meta["negative_prompt"],
        temperature=tuple(float(t) for t in temperature),
    )
    pixels = call.get("height", 1024) * call.get("width", 1024)
    image = Image.open(case / meta["input"]["file"] if "input" in meta else case / "input.png")
    steps, source, result = [], None, None
    for item in edit_stream(editor, image, meta["instruction"], options, pixels=pixels):
        if isinstance(item, Progress):
            steps.append(item.record.tokens[0].cpu())
            source = item.prepared.src_tokens[0].cpu()
        else:
            result = item
    return source, steps, result


@pytest.mark.skipif(not CASES, reason=f"no pipeline cases in {PIPELINE}")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_reference_compatible_edit_is_the_reference_pipeline(case):
    meta = json.loads((case / "meta.json").read_text())
    expected = load_file(case / "tokens.safetensors")
    source, steps, result = run_case(case, meta)
    assert isinstance(result, EditResult)
    assert torch.equal(source, expected["source_tokens"].long()), "source tokens differ (squash or VQ encoder)"
    assert len(steps) == len(expected["step_tokens"]) == meta["num_inference_steps"]
    for i, (ours, theirs) in enumerate(zip(steps, expected["step_tokens"], strict=True)):
        differ = int((ours != theirs.long()).sum())
        assert differ == 0, f"step {i}: {differ} of {ours.numel()} tokens differ"
    assert torch.equal(result.tokens, expected["final_tokens"].long())

    png = np.asarray(Image.open(case / "expected.png").convert("RGB"), dtype=np.int16)
    ours = np.asarray(result.image, dtype=np.int16)
    assert ours.shape == png.shape, f"size {result.image.size}, the reference's {png.shape[1::-1]}"
    delta = np.abs(ours - png)
    assert delta.max() <= 1 and (delta > 0).mean() <= 0.01, f"max |Δ| {delta.max()}, {(delta > 0).mean():.2%} differ"

    saved = result.parameters()  # what ran, as saved with the PNG
    assert saved["reference_compatible"] and not saved["keep_pixels"] and "squashed" in saved["resize"]
    assert saved["instruction"] == meta["instruction"] and saved["size"] == list(result.image.size)

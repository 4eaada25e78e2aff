"""Forward parity with the reference implementation on every case under the fixture root.

The root defaults to the copies of the public cases in tests/fixtures/reference and can be pointed at any directory
of cases in the same format with EDITMGT_PARITY_DIR.
"""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from editmgt_core.model.checkpoint import load_state_dict
from editmgt_core.model.config import TransformerConfig
from editmgt_core.model.math import grid_ids
from editmgt_core.model.transformer import EditMGTTransformer

ROOT = Path(os.environ.get("EDITMGT_PARITY_DIR", Path(__file__).parent / "fixtures" / "reference"))
CASES = sorted(p for p in ROOT.iterdir() if (p / "weights.safetensors").is_file()) if ROOT.is_dir() else []


def test_fixture_root_has_cases():
    assert CASES, f"no parity cases found under {ROOT}"


def run_case(case: Path):
    config = TransformerConfig.from_json(case / "config.json")
    meta = json.loads((case / "meta.json").read_text())
    with torch.device("meta"):
        model = EditMGTTransformer(config)
    load_state_dict(model, load_file(case / "weights.safetensors"))
    x = load_file(case / "inputs.safetensors")
    with torch.inference_mode():
        logits, maps = model.eval()(
            x["hidden_states"],
            x["encoder_hidden_states"],
            x["pooled_projections"],
            x["micro_conds"],
            x["timestep"],
            x["reference_image_hidden_states"],
            gamma=meta["gamma"],
            capture=meta["capture_layers"],
        )
    return x, meta, logits, maps, load_file(case / "expected.safetensors")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_forward_matches_reference(case):
    x, meta, logits, maps, expected = run_case(case)
    torch.testing.assert_close(logits, expected["logits"], atol=1e-5, rtol=1e-4)
    assert sorted(maps) == sorted(meta["capture_layers"])
    for layer in meta["capture_layers"]:
        torch.testing.assert_close(maps[layer], expected[f"text_to_image.{layer}"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_uses_our_id_and_text_conventions(case):
    """We build RoPE ids ourselves; the case's ids must be exactly that grid (and text ids zero)."""
    x = load_file(case / "inputs.safetensors")
    h, w = x["hidden_states"].shape[1] // 2, x["hidden_states"].shape[2] // 2
    assert torch.equal(x["img_ids"], grid_ids(h, w))
    assert torch.equal(x["reference_image_ids"], grid_ids(h, w))
    assert not x["txt_ids"].any()

"""Reference scheduler step: bit-exact parity of reference_step with the reference fixtures.

The fixture root defaults to tests/fixtures/sampler and can be pointed at any directory of cases in the same format
with EDITMGT_SAMPLER_DIR; every setting of a case (N, step index, λ, temperature, seed, mask id, starting mask ratio)
is read from its meta.json. The sampler's reference_compatible mode is checked against chained reference steps in
test_sampling.py.
"""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from editmgt_core.sampler.reference_sampler import (
    REFERENCE_VALUES,
    check_reference_options,
    reference_step,
    reference_step_details,
)
from editmgt_core.sampler.sampling import SamplerOptions
from editmgt_core.sampler.schedule import draw_tokens, temperatures, timesteps

ROOT = Path(os.environ.get("EDITMGT_SAMPLER_DIR", Path(__file__).parent / "fixtures" / "sampler"))
CASES = sorted(p for p in ROOT.iterdir() if (p / "meta.json").is_file()) if ROOT.is_dir() else []


def test_fixture_root_has_cases():
    assert CASES, f"no sampler cases (folders with meta.json) under {ROOT}"


def run_case(case: Path):
    meta = json.loads((case / "meta.json").read_text())
    x = load_file(case / "inputs.safetensors")
    n, i = meta["num_inference_steps"], meta["step_index"]
    setting = meta["temperature_setting"]
    temps = temperatures(tuple(setting) if isinstance(setting, list) else setting, n)
    kwargs = dict(
        mask_id=meta["scheduler_config"]["mask_token_id"],
        temperatures=temps,
        lam=meta["local_guidance_lambda"],
        scores=x.get("local_scores"),
        src=x["ref_latents"],
        starting_mask_ratio=meta["starting_mask_ratio"],
    )
    seeded = lambda: torch.Generator(meta["generator_device"]).manual_seed(meta["generator_seed"])
    generator = seeded()
    out = reference_step_details(x["model_output"], i, n, x["sample"], generator, **kwargs)
    after_call = torch.rand(4, generator=generator)
    peek = seeded()
    draw_tokens(x["model_output"], peek)  # draw 1 alone
    got = {
        "prev_sample": out.prev_sample,
        "pred_original_sample": out.pred_original_sample,
        "timesteps": timesteps(n),
        "temperatures": temps,
        "temperature_used": temps[i : i + 1],
        "unknown_map": out.unknown,
        "upsampled_local_scores": out.scores,
        "hold_map": out.hold,
        "mask_len": out.mask_len,
        "selected_probs": torch.where(out.unknown, out.token_probs, torch.finfo(torch.float32).max),
        "gumbel_noise": out.gumbel,
        "confidence": out.confidence,
        "masking": out.masking,
        "rand_peek_after_multinomial": torch.rand(4, generator=peek),
        "generator_next_uniform": after_call,
    }
    pair = reference_step(x["model_output"], i, n, x["sample"], seeded(), **kwargs)
    return meta, got, pair, load_file(case / "expected.safetensors")


def compare_case(case: Path) -> dict[str, str]:
    """Every recorded tensor of one case compared bit for bit: {name: what differs} (empty when all agree)."""
    meta, got, pair, expected = run_case(case)
    problems = {}
    if timesteps(meta["num_inference_steps"])[meta["step_index"]].item() != meta["timestep"]:
        problems["timestep"] = "the schedule's timestep at step_index differs from meta.json"
    for name in sorted(set(expected) - set(got)):
        problems[name] = "unknown expected tensor"
    for name, want in expected.items():
        have = got.get(name)
        if name in problems:
            continue
        if have is None:
            problems[name] = "not computed"
        elif have.shape != want.shape or have.dtype != want.dtype:
            problems[name] = f"{have.dtype} {tuple(have.shape)} != {want.dtype} {tuple(want.shape)}"
        elif not torch.equal(have, want):
            problems[name] = f"differs in {(have != want).sum().item()} places"
    for name, have in zip(("prev_sample", "pred_original_sample"), pair, strict=True):
        if not torch.equal(have, expected[name]):
            problems[f"{name} (reference_step)"] = "differs"
    return problems


# The fixtures were recorded on torch's AVX2 CPU kernels; AVX-512 kernels round softmax differently in the last bit
# (the tokens agree, the recorded confidences do not). Bit-exactness holds for the same torch build on the same kernel
# path, so on an x86 CPU whose torch picked another path the cases run in a fresh process pinned to AVX2
# (ATEN_CPU_CAPABILITY is read once, when torch first dispatches, so it cannot change inside this process).
PINNED_KERNELS = "AVX2"


def _needs_pinned_process() -> bool:
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    return x86 and torch.backends.cpu.get_cpu_capability() != PINNED_KERNELS


@pytest.fixture(scope="module")
def pinned_results() -> dict[str, dict[str, str]]:
    """{case name: compare_case(case)} computed in a subprocess on the AVX2 kernels."""
    code = (
        "import json, sys, torch\n"
        "from pathlib import Path\n"
        "from tests.test_reference_sampler import CASES, compare_case\n"
        "torch.set_num_threads(1)\n"
        "out = {'capability': torch.backends.cpu.get_cpu_capability(),\n"
        "       'cases': {c.name: compare_case(c) for c in CASES}}\n"
        "print('RESULT ' + json.dumps(out))\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "ATEN_CPU_CAPABILITY": PINNED_KERNELS.lower(), "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert done.returncode == 0 and line, f"pinned run failed ({done.returncode}):\n{done.stderr[-3000:]}"
    result = json.loads(line[len("RESULT ") :])
    assert result["capability"] == PINNED_KERNELS, f"could not pin torch's CPU kernels to {PINNED_KERNELS}: {result}"
    return result["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reference_step_matches_fixture(case, request):
    pinned = _needs_pinned_process()
    problems = request.getfixturevalue("pinned_results")[case.name] if pinned else compare_case(case)
    assert not problems, f"{case.name}: {problems}"


def test_compare_case_catches_a_one_token_difference(tmp_path):
    """The comparison the pinned process runs reports a fixture doctored in one place (it cannot pass by comparing
    nothing)."""
    import shutil

    from safetensors.torch import save_file

    case = tmp_path / CASES[0].name
    shutil.copytree(CASES[0], case)
    expected = load_file(case / "expected.safetensors")
    expected["prev_sample"] = expected["prev_sample"].clone()
    expected["prev_sample"].view(-1)[0] += 1
    save_file(expected, case / "expected.safetensors")
    problems = compare_case(case)
    assert problems["prev_sample"] == "differs in 1 places" and "prev_sample (reference_step)" in problems


def test_check_reference_options_names_what_the_reference_lacks():
    ref = SamplerOptions(reference_compatible=True, **REFERENCE_VALUES)
    check_reference_options(ref, None)
    check_reference_options(SamplerOptions(grow=2, layers=("change",)), torch.ones(1, 2, 2, dtype=torch.bool))
    for knobs, match in [
        (dict(grow=1), "grow"),
        (dict(token_temperature=0.5, focus_gate=0.2), "focus_gate, token_temperature"),
        (dict(layers=(3, "s0")), "source-image maps"),
        (dict(layers=("3:h1",)), "head-selected"),
    ]:
        with pytest.raises(ValueError, match=match):
            check_reference_options(SamplerOptions(reference_compatible=True, **knobs), None)
    with pytest.raises(ValueError, match="user_mask"):
        check_reference_options(ref, torch.ones(1, 2, 2, dtype=torch.bool))

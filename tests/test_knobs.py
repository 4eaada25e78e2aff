"""The knob registry: one declaration per knob, consistent with SamplerOptions, and what is generated from it."""

import dataclasses

import pytest

from editmgt_core import cli
from editmgt_core.edit import knobs
from editmgt_core.sampler.hold import MASK_MODES
from editmgt_core.sampler.sampling import SamplerOptions

CONTROLS = {"slider", "number", "text", "checkbox", "radio", "chips"}


def test_every_sampler_option_is_declared_once_and_on_the_cli():
    fields = [f.name for f in dataclasses.fields(SamplerOptions)]
    assert sorted(knobs.SAMPLER) == sorted(fields)
    assert all(knobs.KNOBS[name].flags for name in fields)
    flags = [flag for k in knobs.KNOBS.values() for flag in k.flags]
    assert len(flags) == len(set(flags))
    assert set(knobs.KNOBS["mask_mode"].choices) == set(MASK_MODES)


@pytest.mark.parametrize("name", list(knobs.KNOBS))
def test_declarations_are_complete_and_hold_the_demo_default(name):
    knob = knobs.KNOBS[name]
    assert knob.label and knob.help.endswith(".") and knob.kind in {"int", "float", "bool", "text", "choice", "words",
                                                                     "layers", "pair"}  # fmt: skip
    assert (knob.app is None) == (knob.control == "") and knob.app in (None, "main", "advanced", "end")
    assert knob.control in CONTROLS | {""} and knob.api in (None, "number", "text", "checkbox")
    if knob.slider:
        assert knob.lo <= knob.slider[0] < knob.slider[1] <= knob.hi
    if knob.control == "slider" and name != "resolution":  # (the model's range)
        assert knob.lo is not None and knob.hi is not None and knob.step
    if knob.sampler and knob.lo is not None:
        default = knobs.demo_default(name)
        for value in default if isinstance(default, tuple) else (default,):
            if value is not None:
                assert knob.lo <= value <= knob.hi, (name, value)


def test_check_names_the_knob_and_the_range():
    assert knobs.KNOBS["grow"].check(2.0) == 2 and knobs.KNOBS["temperature"].check([2, 0]) == (2.0, 0.0)
    assert knobs.KNOBS["keywords"].check("circle, red ,, circle") == ("circle", "red")
    assert knobs.KNOBS["layers"].check("1-2, s0") == (1, 2, "s0") and knobs.KNOBS["layers"].check(" ") is None
    for name, value, match in [("gamma", 5.5, r"gamma=5.5; expected a number in \[0, 5\]"),
                               ("steps", 2.5, "steps=2.5; expected an integer"), ("lam", True, "lam=True"),
                               ("mask_mode", "blur", "allowed: replace, union, intersection"),
                               ("keep_pixels", "yes", "True or False"), ("negative_prompt", "x" * 1001, "1,000"),
                               ("temperature", (1, 11), "temperature=11")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            knobs.KNOBS[name].check(value)


def test_the_cli_help_is_the_knobs_help_with_the_demo_default():
    assert knobs.cli_help(knobs.KNOBS["steps"]).endswith("more steps are slower and often cleaner (demo: 36)")
    assert knobs.cli_help(knobs.KNOBS["temperature"]).endswith("(demo: 2,0)")
    assert knobs.cli_help(knobs.KNOBS["keep_pixels"]).endswith("(demo: on)")
    assert "demo:" not in knobs.cli_help(knobs.KNOBS["negative_prompt"])  # too long to show; the help says what it is
    text = " ".join(cli.build_parser()._subparsers._group_actions[0].choices["edit"].format_help().split())
    assert "--lam LAM, --lambda LAM" in text and "--no-keep-pixels" in text and "published demo: 1.1)" in text

"""The knobs: each declared once on SamplerOptions, one check for every front end, and what is generated from it."""

import dataclasses

import pytest

from editmgt_core import cli
from editmgt_core.app import controls
from editmgt_core.edit import knobs
from editmgt_core.sampler.hold import MASK_MODES
from editmgt_core.sampler.options import KINDS, SamplerOptions

CONTROLS = {"slider", "number", "text", "checkbox", "radio", "chips"}


def test_every_sampler_option_is_declared_once_and_on_the_cli():
    fields = [f.name for f in dataclasses.fields(SamplerOptions)]
    assert list(knobs.SAMPLER) == fields and list(SamplerOptions.knobs()) == fields
    assert all(knobs.KNOBS[name].flags for name in fields)
    flags = [flag for k in knobs.KNOBS.values() for flag in k.flags]
    assert len(flags) == len(set(flags))
    assert set(knobs.KNOBS["mask_mode"].choices) == set(MASK_MODES)


@pytest.mark.parametrize("name", list(knobs.KNOBS))
def test_declarations_are_complete_and_hold_the_demo_default(name):
    knob = knobs.KNOBS[name]
    assert knob.label and knob.help.endswith(".") and knob.kind in KINDS
    if name in knobs.SAMPLER:
        knob.check(name, knobs.demo_default(name))  # the default is a value the knob accepts


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"gamma": 5.5}, r"gamma=5.5; expected a number in \[0, 5\]"),
        ({"steps": 2.5}, "steps=2.5; expected an integer"),
        ({"lam": True}, "lam=True"),
        ({"mask_mode": "blur"}, "expected replace, union, intersection"),
        ({"keep_pixels": "yes"}, "True or False"),
        ({"negative_prompt": "x" * 1001}, "1,000"),
        ({"temperature": (1.0, 11.0)}, r"temperature=\(1.0, 11.0\)"),
        ({"seed": -5}, "seed=-5"),
        ({"token_temperature": 0.0}, r"in \[0.001, 2\]"),
        ({"layers": ("s0",)}, "source stream alone"),
    ],
)
def test_one_check_for_every_front_end(values, match):
    """The same value is refused with the same message by SamplerOptions (library, command line, manifests) and by
    knobs.parse (the app and the API): there is one range per knob."""
    ((name, value),) = values.items()
    with pytest.raises(ValueError, match=match) as direct:
        SamplerOptions(**values)
    with pytest.raises(ValueError) as parsed:
        knobs.parse(name, list(value) if isinstance(value, tuple) else value)
    assert str(parsed.value) == str(direct.value)


def test_parse_takes_values_as_they_arrive():
    assert knobs.parse("grow", 2.0) == 2 and knobs.parse("temperature", [2, 0]) == (2.0, 0.0)
    assert knobs.parse("keywords", "circle, red ,, circle") == ("circle", "red")
    assert knobs.parse("layers", "1-2, s0") == (1, 2, "s0") and knobs.parse("layers", " ") is None
    assert SamplerOptions(**{k: knobs.parse(k, v) for k, v in {"steps": 12.0, "lam": 1}.items()}).lam == 1.0


def test_the_cli_help_and_checks_come_from_the_declaration():
    assert knobs.cli_help("steps").endswith("more steps are slower and often cleaner (demo: 36)")
    assert knobs.cli_help("temperature").endswith("(demo: 2,0)")
    assert knobs.cli_help("keep_pixels").endswith("(demo: on)")
    assert "demo:" not in knobs.cli_help("negative_prompt")  # too long to show; the help says what it is
    text = " ".join(cli.build_parser()._subparsers._group_actions[0].choices["edit"].format_help().split())
    assert "--lam LAM, --lambda LAM" in text and "--no-keep-pixels" in text and "published demo: 1.1)" in text
    argv = ["edit", "--image", "a.png", "--instruction", "x", "--out", "b.png", "--gamma", "6"]
    args = cli.build_parser().parse_args([*argv, "--temperature", "2,0.5", "--keywords", "red, circle"])
    assert (args.gamma, args.temperature, args.keywords) == (6.0, (2.0, 0.5), ("red", "circle"))
    with pytest.raises(ValueError, match=r"gamma=6.0; expected a number in \[0, 5\]"):
        cli.check_knobs(cli.sampler_overrides(args))  # the range: SamplerOptions', as for every front end


@pytest.mark.parametrize("name", list(controls.LAYOUT))
def test_the_app_only_presents_declared_knobs(name):
    shown = controls.LAYOUT[name]
    label, help = shown.text()
    assert label and help.endswith(".")
    assert shown.section in (None, "main", "advanced", "end") and shown.control in CONTROLS | {""}
    assert (shown.section is None) == (shown.control == "") and shown.api in (None, "number", "text", "checkbox")
    knob = knobs.KNOBS.get(shown.knob)
    assert (knob is None) == (shown.knob is None)
    if shown.slider:
        assert knob.lo <= shown.slider[0] < shown.slider[1] <= knob.hi
    if shown.control == "slider" and name != "resolution":  # (the model's range)
        assert knob.lo is not None and knob.hi is not None and shown.step


def test_every_sampler_knob_reaches_the_page_and_the_api():
    shown = {controls.LAYOUT[name].knob for name in controls.SHOWN}
    api = {controls.LAYOUT[name].knob for name in controls.API}
    assert set(knobs.SAMPLER) - shown == set(knobs.SAMPLER) - api == set(controls.CLI_ONLY)


def test_a_knob_without_a_layout_gets_one_from_its_kind(monkeypatch):
    from editmgt_core.sampler.options import Knob

    monkeypatch.setitem(knobs.KNOBS, "sharpness", Knob("Sharpness", "How sharp.", "float", lo=0.0, hi=2.0))
    shown = controls.default_shown("sharpness")
    assert (shown.section, shown.control, shown.api, shown.step) == ("advanced", "slider", "number", 0.02)

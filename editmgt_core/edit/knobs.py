"""The user-facing knobs: the sampler's (declared once, on `SamplerOptions`' fields) and the few an edit request adds
(the working size, strict), as one registry the front ends are generated from.

The command line's options (`cli.add_sampler_args`), the app's and the API's checks (`validate.make_options`)
and the app's controls (`app/controls.py`, which adds only presentation: rows, sliders, element ids) all read `KNOBS`.
Defaults are `SamplerOptions`' (the published demo's), overridden by a model's settings (`editing.default_options`).
No torch here: the command line builds its parser without it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..model import entries
from ..sampler.options import SEED_MAX, TEXT_CHARS, Knob, SamplerOptions, parse_keywords

__all__ = ["KNOBS", "LIMITS", "SAMPLER", "SEED_MAX", "TEXT_CHARS", "Knob", "parse", "parse_keywords"]

# Knobs of an edit request that are not sampler fields.
REQUEST = {
    "pixels": Knob(
        "Working pixels",
        "Working pixel count: inputs are resized to about this many pixels, aspect kept "
        "(default: the model's; 1024x1024 published).",
        "int",
        lo=1,
        flags=("--pixels",),
    ),
    "strict": Knob(
        "Strict: refuse inputs the model was not trained on",
        "Refuse inputs outside what the model was trained on instead of editing them with a warning.",
        "bool",
    ),
}
SAMPLER = tuple(SamplerOptions.knobs())  # the SamplerOptions fields, all of them, in the front ends' order
KNOBS = SamplerOptions.knobs() | REQUEST
LIMITS = {name: (k.lo, k.hi) for name, k in KNOBS.items() if k.lo is not None and k.hi is not None}


def parse(name: str, value):
    """A knob's value from the app, the API or a manifest, as SamplerOptions takes it; ValueError naming it."""
    return KNOBS[name].parse(name, value)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(name: str, value, lo: float | None, hi: float | None, integer: bool = False) -> float | int:
    """value as a number in [lo, hi] (a value that is not a knob, e.g. a sweep's λ list); ValueError naming it."""
    return Knob(name, "", "int" if integer else "float", lo=lo, hi=hi).parse(name, value)


def temperature_pair(temperature: float | tuple[float, float]) -> tuple[float, float]:
    """The Gumbel temperature as (first step, last step): a single T runs down to 0.01 (sampling.temperatures)."""
    return tuple(temperature) if isinstance(temperature, (tuple, list)) else (temperature, 0.01)


def _from_text(name: str, kind: str, text: str):
    """A command-line value in the knob's type; its range is SamplerOptions' to check (cli.check_knobs)."""
    if kind == "pair":
        parts = [float(p) for p in text.split(",")]
        if len(parts) not in (1, 2):
            raise ValueError(f"{name}={text!r}; expected T or T0,T1")
        return parts[0] if len(parts) == 1 else tuple(parts)
    if kind == "words":
        return parse_keywords(name, text)
    if kind == "layers":
        return entries.from_text(text)
    return {"int": int, "float": float}.get(kind, str)(text)


def _argparse_type(name: str, kind: str) -> Callable:
    def parsed(text: str):
        try:
            return _from_text(name, kind, text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parsed.__name__ = kind  # argparse names the type in its own messages
    return parsed


def cli_options(name: str) -> dict:
    """add_argument's keywords for a knob besides its flags and help."""
    knob = KNOBS[name]
    if knob.kind == "bool":
        return {"action": argparse.BooleanOptionalAction if knob.negatable else "store_true", "default": None}
    return {"type": _argparse_type(name, knob.kind)}


def demo_default(name: str):
    """The SamplerOptions (published demo's) default of a sampler knob."""
    return SamplerOptions.__dataclass_fields__[name].default


def _short(value) -> str | None:
    """A default as the CLI's help shows it; None when it has no short form (the help text says what it is)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return f"{value:g}"
    if isinstance(value, tuple) and value and all(isinstance(v, (int, float)) for v in value):
        return ",".join(f"{v:g}" for v in value)
    return value if isinstance(value, str) and 0 < len(value) < 20 else None


def cli_help(name: str) -> str:
    """The help as the CLI words it, with the demo's default where it is short."""
    text = KNOBS[name].help.rstrip(".")
    text = text[0].lower() + text[1:]
    default = _short(demo_default(name)) if name in SAMPLER else None
    return f"{text} (demo: {default})" if default is not None else text

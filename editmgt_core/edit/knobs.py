"""The user-facing knobs, each declared once: name, label, help, range, CLI flags and where each front end shows it.

Generated from `KNOBS`: the CLI's sampler options (`cli.add_sampler_args`, `cli.KNOBS`), the checks of the app's and
API's values (`studio_inputs.make_options`, `studio_inputs.LIMITS`), and the app's controls and hidden API
parameters (`app_knobs.py`). Defaults are not repeated here: they are `SamplerOptions`' (the published demo's),
overridden by a model's settings (`editing.default_options`). `SamplerOptions` itself still validates every value;
(lo, hi) here is what the app and the API accept (beyond it the sampler overflows or the request is a mistake); the
CLI and manifests are checked by `SamplerOptions` alone. No torch here: the CLI builds its parser without it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..model import entries

TEXT_CHARS = 1000  # the text encoders read ~256 tokens at most; longer text is a mistake, not an edit
SEED_MAX = 2**63 - 1  # what a JSON number and the app's seed box carry without loss


@dataclass(frozen=True)
class Knob:
    """One knob. `kind` says what a value is: 'int', 'float', 'bool', 'text', 'choice', 'words' (keywords), 'layers'
    (map entries) or 'pair' (a number or two)."""

    name: str  # the SamplerOptions field; else (sampler=False) a request key of studio_inputs.request or the CLI
    label: str  # the app's label
    help: str  # the one description: the CLI's --help, the app's info line, the API
    kind: str
    lo: float | None = None  # range accepted from the app and the API, inclusive (None: unbounded or the model's)
    hi: float | None = None
    step: float | None = None  # the app slider's step
    slider: tuple[float, float] | None = None  # the app slider's range where narrower than (lo, hi): larger values
    # are rarely useful, and the API takes them
    choices: tuple[str, ...] = ()  # 'choice' values, in the order the app lists them
    flags: tuple[str, ...] = ()  # CLI option names, the canonical first; () = not on the CLI
    app: str | None = None  # where the app shows it: 'main', 'advanced' (the accordion) or 'end' (below it)
    control: str = ""  # how: 'slider', 'number', 'text', 'checkbox', 'radio' or 'chips' (the instruction's words)
    row: str = ""  # the app's controls with the same row sit side by side
    elem_id: str | None = None  # the app control's HTML id (browser tests select by it)
    api: str | None = None  # the /edit and /sweep parameter's component: 'number', 'text' or 'checkbox'; None = none
    api_hint: str = ""  # added to the API parameter's label (default: the choices)
    negatable: bool = False  # a 'bool' on by default: the CLI has --no-<flag> too
    sampler: bool = True  # a SamplerOptions field

    def check(self, value):
        """A value from the app or the API as SamplerOptions takes it; ValueError naming the knob otherwise."""
        if self.kind in ("int", "float"):
            return number(self.name, value, self.lo, self.hi, integer=self.kind == "int")
        if self.kind == "pair" and isinstance(value, (tuple, list)):
            return tuple(number(self.name, v, self.lo, self.hi) for v in value)
        if self.kind == "pair":
            return number(self.name, value, self.lo, self.hi)
        if self.kind == "bool" and not isinstance(value, bool):
            raise ValueError(f"{self.name}={value!r}; expected True or False")
        if self.kind == "choice" and value not in self.choices:
            raise ValueError(f"{self.name}={value!r}; allowed: {', '.join(self.choices)}")
        if self.kind == "text" and (not isinstance(value, str) or len(value) > TEXT_CHARS):
            raise ValueError(f"{self.name}: expected text of at most {TEXT_CHARS:,} characters")
        if self.kind == "words":
            return parse_keywords(value)
        if self.kind == "layers":  # the syntax; the model's depth is checked where known (studio_inputs.parse_layers)
            return entries.from_text(value) if value.strip() else None
        return value

    def cli_options(self) -> dict:
        """add_argument's keywords besides the flags and help."""
        if self.kind == "bool":
            return {"action": argparse.BooleanOptionalAction if self.negatable else "store_true", "default": None}
        types = {"int": int, "float": float, "words": _words, "pair": _pair, "layers": _layers}
        return {"type": types[self.kind]} if self.kind in types else {}


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(name: str, value, lo: float | None, hi: float | None, integer: bool = False) -> float | int:
    """value as a number in [lo, hi]; ValueError naming the knob otherwise."""
    kind = "an integer" if integer else "a number"
    where = f" in [{lo:g}, {hi:g}]" if lo is not None and hi is not None else ""
    if not is_number(value) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r}; expected {kind}{where}")
    if integer and value != int(value) or lo is not None and value < lo or hi is not None and value > hi:
        raise ValueError(f"{name}={value!r}; expected {kind}{where}")
    return int(value) if integer else float(value)


def parse_keywords(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """'circle, red' or ['circle', 'red'] -> ('circle', 'red'); empty -> () (all words)."""
    items = value.split(",") if isinstance(value, str) else value or ()
    if not isinstance(items, (list, tuple)) or not all(isinstance(k, str) for k in items):
        raise ValueError(f"keywords={value!r}; expected words separated by commas")
    return tuple(dict.fromkeys(k.strip() for k in items if k.strip()))


def _argparse_type(parse: Callable) -> Callable:
    def parsed(text: str):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parsed


def _temperature(text: str) -> float | tuple[float, float]:
    parts = [float(p) for p in text.split(",")]
    if len(parts) not in (1, 2):
        raise ValueError("expected T or T0,T1")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


_words, _pair, _layers = _argparse_type(parse_keywords), _argparse_type(_temperature), _argparse_type(entries.from_text)


def temperature_pair(temperature: float | tuple[float, float]) -> tuple[float, float]:
    """The Gumbel temperature as (first step, last step): a single T runs down to 0.01 (sampling.temperatures)."""
    return tuple(temperature) if isinstance(temperature, (tuple, list)) else (temperature, 0.01)


TEMPERATURE = dict(lo=0.0, hi=10.0, step=0.1)  # the Gumbel temperature and its first and last step: one range

# In the app's layout order (main panel, Advanced, below); the CLI lists its options in this order too.
KNOBS = {k.name: k for k in (
    Knob("keywords", "Keywords", "Instruction words whose attention forms the edit-location map M; none = all words.",
         "words", flags=("--keywords",), app="main", control="chips", elem_id="keywords", api="text",
         api_hint="comma-separated; empty = all words"),
    Knob("gamma", "γ condition strength", "Condition strength γ: attention to the source image (1 = as trained, 0 = "
         "ignore it, > 1 = stay closer).", "float", 0.0, 5.0, 0.05, slider=(0.0, 3.0), flags=("--gamma",), app="main",
         control="slider", row="hold", elem_id="gamma", api="number"),
    Knob("lam", "λ hold threshold", "Hold threshold λ in [0, 1]: tokens scoring below λ on the map are restored to the "
         "source each step (0 = off).", "float", 0.0, 1.0, 0.01, flags=("--lam", "--lambda"), app="main",
         control="slider", row="hold", elem_id="lam", api="number"),
    Knob("grow", "Grow edit region (tokens)", "Grow the map's edit region by this many tokens before holding: room for "
         "edits that reach past the object.", "int", 0, 16, 1, flags=("--grow",), app="main", control="slider",
         row="hold", elem_id="grow", api="number", api_hint="tokens"),
    Knob("steps", "Steps", "Decoding steps N: each step reveals more tokens; more steps are slower and often cleaner.",
         "int", 1, 100, 1, slider=(1, 64), flags=("--steps",), app="main", control="slider", row="decode",
         elem_id="steps", api="number"),
    Knob("guidance_scale", "Guidance", "Classifier-free guidance scale g: how strongly to follow the instruction (1 = "
         "off).", "float", 0.0, 30.0, 0.5, slider=(0.0, 15.0), flags=("--guidance-scale", "--cfg"), app="main",
         control="slider", row="decode", api="number"),
    Knob("seed", "Seed", "The same seed with the same settings reproduces an edit exactly; the seed used is saved with "
         "the result.", "int", 0, SEED_MAX, flags=("--seed",), app="main", control="number", row="seed", api="number",
         api_hint="-1 = random"),
    Knob("randomize", "Randomize seed", "Draw a fresh seed for every edit.", "bool", app="main", control="checkbox",
         row="seed", sampler=False),
    Knob("negative_prompt", "Negative prompt", "Text the edit is steered away from (the unconditional side of "
         "guidance); the published demo's is a list of quality words, '' for none.", "text",
         flags=("--negative-prompt",), app="advanced", control="text", api="text"),
    Knob("layers", "Attention layers", "Map entries: blocks whose instruction→image attention forms the map, e.g. "
         "'28-36'; 's0' block 0's attention to the source image, 'rs0' the source's rows to the instruction, ':h1' one "
         "head, 'change' the predicted change; empty = the model's.", "layers", flags=("--layers",), app="advanced",
         control="text", api="text", api_hint="e.g. '28-36'; empty = the model's"),
    Knob("temperature", "Temperature", "Randomness of the reveal order (Gumbel noise of the re-masking): T (running "
         "down to 0.01) or T0,T1 (the first and the last step, linear).", "pair", **TEMPERATURE,
         flags=("--temperature",)),
    Knob("temperature_start", "Temperature, first step", "Randomness of the reveal order (Gumbel noise) at the first "
         "step.", "float", **TEMPERATURE, app="advanced", control="slider", row="temperature", api="number",
         sampler=False),
    Knob("temperature_end", "Temperature, last step", "Randomness of the reveal order at the last step.", "float",
         **TEMPERATURE, app="advanced", control="slider", row="temperature", api="number", sampler=False),
    Knob("token_temperature", "Token temperature", "Randomness of each token's draw: 1 = the model's own "
         "probabilities; lower = more confident, cleaner shapes and colours.", "float", 0.05, 2.0, 0.05,
         flags=("--token-temperature",), app="advanced", control="slider", elem_id="token-temperature", api="number",
         api_hint="1 = the model's probabilities"),
    Knob("resolution", "Working resolution", "Working resolution: the side of a square with as many pixels as the "
         "model edits at (aspect kept).", "int", app="advanced",  # range: the model's (studio_inputs.resolution_range)
         control="slider", api="number", api_hint="working side in pixels; 0 = the model's", sampler=False),
    Knob("mask_mode", "Brush mask mode", "How a painted brush region combines with the map: replace = brush only; "
         "union = brush or map; intersection = both.", "choice", choices=("replace", "union", "intersection"),
         flags=("--mask-mode",), app="advanced", control="radio", api="text"),
    Knob("focus_gate", "Focus gate", "Hold only when the instruction's attention on the image (its share, at the first "
         "step) reaches this; below it the edit reads as a whole-image one (a style, a background) and nothing is "
         "held. 0 = always hold; calibrate-layers suggests a value.", "float", 0.0, 1.0, 0.005,
         flags=("--focus-gate",), app="advanced", control="slider", elem_id="focus-gate", api="number",
         api_hint="0 = always hold"),
    Knob("keep_pixels", "Keep original pixels where unchanged", "What the edit left as it was (held or unchanged "
         "tokens) shows the input's own pixels at full resolution, not their re-encoded version.", "bool",
         flags=("--keep-pixels",), negatable=True, app="advanced", control="checkbox", elem_id="keep-pixels",
         api="checkbox"),
    Knob("reference_compatible", "Reference-compatible", "Make every step exactly the reference implementation's "
         "scheduler step.", "bool", flags=("--reference-compatible",)),
    Knob("pixels", "Working pixels", "Working pixel count: inputs are resized to about this many pixels, aspect kept "
         "(default: the model's; 1024x1024 published).", "int", flags=("--pixels",), sampler=False),
    Knob("strict", "Strict: refuse inputs the model was not trained on", "Refuse inputs outside what the model was "
         "trained on instead of editing them with a warning.", "bool", app="end", control="checkbox",
         elem_id="strict", api="checkbox", api_hint="refuse out-of-domain inputs instead of warning", sampler=False),
    Knob("previews", "Live previews", "/edit: send a decoded preview image with the streamed steps (the first "
         "step's, then a few within 3% of the edit's time); off: the steps' progress and the result only.", "bool",
         api="checkbox", api_hint="decoded previews in /edit's streamed steps", sampler=False),
)}  # fmt: skip
SAMPLER = tuple(name for name, k in KNOBS.items() if k.sampler)  # the SamplerOptions fields, all of them
LIMITS = {name: (k.lo, k.hi) for name, k in KNOBS.items() if k.lo is not None}


def demo_default(name: str):
    """The SamplerOptions (published demo's) default of a sampler knob; imports torch."""
    from ..sampler.sampling import SamplerOptions

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


def cli_help(knob: Knob) -> str:
    """The help as the CLI words it, with the demo's default where it is short (imports torch for sampler knobs)."""
    text = knob.help.rstrip(".")
    text = text[0].lower() + text[1:]
    default = _short(demo_default(knob.name)) if knob.sampler else None
    return f"{text} (demo: {default})" if default is not None else text

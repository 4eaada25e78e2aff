"""The sampler's options: one frozen record of every knob a run uses, each field declared once with its label, help,
kind, accepted range and command-line flags (`Knob`), and checked by that declaration when the record is made.

The command line, the app's and the API's checks and the manifests all go through `SamplerOptions` (and
`Knob.parse` for values that arrive as text or JSON), so every front end accepts the same values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from editmgt_core.model import entries

# src/v2_model.py `negative_prompt`, which the published demo (infer.py) passes.
DEMO_NEGATIVE_PROMPT = (
    "worst quality, low quality, low res, blurry, distortion, watermark, logo, signature, text, jpeg artifacts, "
    "signature, sketch, duplicate, ugly, identifying mark"
)
TEXT_CHARS = 1000  # the text encoders read ~256 tokens at most; longer text is a mistake, not an edit
SEED_MAX = 2**63 - 1  # what a JSON number, a PNG's metadata and the app's seed box carry without loss
KINDS = ("int", "float", "bool", "text", "choice", "words", "layers", "pair")


@dataclass(frozen=True)
class Knob:
    """One knob's declaration. `kind` says what a value is: 'int', 'float', 'bool', 'text', 'choice', 'words'
    (keywords), 'layers' (map entries) or 'pair' (a number or a (start, end) pair)."""

    label: str  # a short name (the app's label)
    help: str  # the one description: the CLI's --help, the app's info line, the API's docs
    kind: str
    lo: float | None = None  # accepted range, inclusive (None: unbounded)
    hi: float | None = None
    choices: tuple[str, ...] = ()  # 'choice' values, in the order front ends list them
    flags: tuple[str, ...] = ()  # command-line option names, the canonical first; () = not on the command line
    negatable: bool = False  # a 'bool' on by default: the command line has --no-<flag> too
    optional: bool = False  # None is a value too (seed: fresh entropy; layers: the model's)

    def check(self, name: str, value) -> None:
        """ValueError naming the knob, the value and what is allowed, unless `value` is exactly what the sampler
        takes (use `parse` first for text, lists and whole floats)."""
        if value is None and self.optional:
            return
        ok = {
            "int": lambda v: _is_number(v) and isinstance(v, int) and self._in_range(v),
            "float": lambda v: _is_number(v) and math.isfinite(v) and self._in_range(v),
            "pair": lambda v: all(_is_number(x) and math.isfinite(x) and self._in_range(x) for x in _pair(v)),
            "bool": lambda v: isinstance(v, bool),
            "text": lambda v: isinstance(v, str) and len(v) <= TEXT_CHARS,
            "choice": lambda v: v in self.choices,
            "words": lambda v: isinstance(v, tuple) and all(isinstance(k, str) and k.strip() for k in v),
            "layers": entries.valid,
        }[self.kind]
        if not ok(value):
            raise ValueError(f"{name}={_short(value)}; expected {self.allowed()}")

    def parse(self, name: str, value):
        """A value as it arrives from a page, JSON or a text box, in the form `check` takes: whole floats as ints,
        lists as tuples, 'circle, red' as keywords, '28-36' as layers ('' = None). ValueError naming the knob."""
        if self.kind == "int" and _is_number(value) and math.isfinite(value) and value == int(value):
            value = int(value)
        elif self.kind in ("float", "pair") and _is_number(value):
            value = float(value)
        elif self.kind == "pair" and isinstance(value, (list, tuple)) and all(map(_is_number, value)):
            value = tuple(float(v) for v in value)
        elif self.kind == "words":
            value = parse_keywords(name, value)
        elif self.kind == "layers" and isinstance(value, str):
            value = entries.from_text(value) if value.strip() else None
        elif self.kind == "layers" and isinstance(value, list):
            value = tuple(value)
        self.check(name, value)
        return value

    def allowed(self) -> str:
        """What the knob takes, in words."""
        lo, hi = (f"{x:g}" if isinstance(x, float) else x for x in (self.lo, self.hi))
        where = f" in [{lo}, {hi}]" if self.lo is not None and self.hi is not None else ""
        where = where or (f" >= {lo}" if self.lo is not None else "")
        text = {
            "int": f"an integer{where}",
            "float": f"a number{where}",
            "pair": f"a number{where}, or a pair (first step, last step) of such numbers",
            "bool": "True or False",
            "text": f"text of at most {TEXT_CHARS:,} characters",
            "choice": ", ".join(self.choices),
            "words": "words separated by commas (a tuple of non-empty strings)",
            "layers": "distinct map entries (block indices, 's<i>', 'r<i>', 'rs<i>', 'change', 'kl'; see entries), "
            "at least one not read from the source stream alone",
        }[self.kind]
        return f"None or {text}" if self.optional else text

    def _in_range(self, v) -> bool:
        return (self.lo is None or v >= self.lo) and (self.hi is None or v <= self.hi)


def knob(default, label: str, help: str, kind: str, **declared):
    """A SamplerOptions field declared by its Knob (in the field's metadata)."""
    return dataclasses.field(default=default, metadata={"knob": Knob(label, help, kind, **declared)})


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pair(value) -> tuple:
    if isinstance(value, tuple) and len(value) == 2:
        return value
    return (value,) if _is_number(value) else (None,)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def parse_keywords(name: str, value: str | Sequence[str] | None) -> tuple[str, ...]:
    """'circle, red' or ['circle', 'red'] -> ('circle', 'red'); empty -> () (all words)."""
    items = value.split(",") if isinstance(value, str) else value or ()
    if not isinstance(items, (list, tuple)) or not all(isinstance(k, str) for k in items):
        raise ValueError(f"{name}={_short(value)}; expected words separated by commas")
    return tuple(dict.fromkeys(k.strip() for k in items if k.strip()))


MASK_MODES = ("replace", "union", "intersection")  # hold.MASK_MODES in the order front ends list them
TEMPERATURE = dict(lo=0.0, hi=10.0)  # the Gumbel temperature's range, at the first step and at the last


@dataclass(frozen=True)
class SamplerOptions:
    """Sampler knobs; defaults are the published demo's (infer.py) and, where it is silent, the reference pipeline's.

    `sample` reads steps, guidance_scale, lam, grow, focus_gate, temperature, token_temperature, seed, mask_mode and
    reference_compatible; gamma, keywords, layers and negative_prompt are for whoever builds logits_fn and
    text_weights, keep_pixels for whoever decodes the result (the editing engine). Each field's Knob
    (`SamplerOptions.knobs()`) declares its label, help, range and flags; the fields are in the order front ends list
    them. The comment beside each default says where it comes from.
    """

    # infer.py num_inference_steps=36 (Pipeline.__call__ default: 12)
    steps: int = knob(
        36,
        "Steps",
        "Decoding steps N: each step reveals more tokens; more steps are slower and often cleaner.",
        "int",
        lo=1,
        hi=100,
        flags=("--steps",),
    )
    # logits u + g(c - u); infer.py guidance_scale=6 (Pipeline default: 10)
    guidance_scale: float = knob(
        6.0,
        "Guidance",
        "Classifier-free guidance scale g: how strongly to follow the instruction (1 = off).",
        "float",
        lo=0.0,
        hi=30.0,
        flags=("--guidance-scale", "--cfg"),
    )
    # for logits_fn; infer.py reference_strength=1.1; 1 = no bias
    gamma: float = knob(
        1.1,
        "γ condition strength",
        "Condition strength γ: attention to the source image (1 = as trained, 0 = ignore it, > 1 = stay closer).",
        "float",
        lo=0.0,
        hi=5.0,
        flags=("--gamma",),
    )
    # Pipeline.local_guidance=0 (off); infer.py suggests 0.01
    lam: float = knob(
        0.0,
        "λ hold threshold",
        "Hold threshold λ in [0, 1]: tokens scoring below λ on the map are restored to the source each step (0 = off).",
        "float",
        lo=0.0,
        hi=1.0,
        flags=("--lam", "--lambda"),
    )
    # Pipeline.local_query_text=None (all rows)
    keywords: tuple[str, ...] = knob(
        (),
        "Keywords",
        "Instruction words whose attention forms the edit-location map M; none = all words.",
        "words",
        flags=("--keywords",),
    )
    # Gumbel scale of the re-masking; Pipeline/set_timesteps (2, 0)
    temperature: float | tuple[float, float] = knob(
        (2.0, 0.0),
        "Temperature",
        "Randomness of the reveal order (Gumbel noise of the re-masking): T (running down "
        "to 0.01) or T0,T1 (the first and the last step, linear).",
        "pair",
        **TEMPERATURE,
        flags=("--temperature",),
    )
    # tokens are drawn from softmax(logits / this); 1 = the reference's draw
    token_temperature: float = knob(
        1.0,
        "Token temperature",
        "Randomness of each token's draw: 1 = the model's own "
        "probabilities; lower = more confident, cleaner shapes and colours.",
        "float",
        lo=0.001,
        hi=2.0,
        flags=("--token-temperature",),
    )
    # None = fresh entropy (infer.py passes no generator)
    seed: int | None = knob(
        None,
        "Seed",
        "The same seed with the same settings reproduces an edit exactly; the seed used is saved with the result.",
        "int",
        lo=0,
        hi=SEED_MAX,
        flags=("--seed",),
        optional=True,
    )
    # None = the model's (infer.py: 28..36)
    layers: tuple[int | str, ...] | None = knob(
        None,
        "Attention layers",
        "Map entries: blocks whose instruction→image attention forms the map, e.g. '28-36'; "
        "'s0' block 0's attention to the source image, 'rs0' the source's rows to the instruction, ':h1' one head, "
        "'change' the predicted change; empty = the model's.",
        "layers",
        flags=("--layers",),
        optional=True,
    )
    # the unconditional text of the guidance pair; infer.py v2_model.negative_prompt
    negative_prompt: str = knob(
        DEMO_NEGATIVE_PROMPT,
        "Negative prompt",
        "Text the edit is steered away from (the "
        "unconditional side of guidance); the published demo's is a list of quality words, '' "
        "for none.",
        "text",
        flags=("--negative-prompt",),
    )
    # not in the reference
    mask_mode: str = knob(
        "replace",
        "Brush mask mode",
        "How a painted brush region combines with the map: replace = "
        "brush only; union = brush or map; intersection = both.",
        "choice",
        choices=MASK_MODES,
        flags=("--mask-mode",),
    )
    # see hold.grow_map; not in the reference
    grow: int = knob(
        0,
        "Grow edit region (tokens)",
        "Grow the map's edit region by this many tokens before holding: room for edits that reach past the object.",
        "int",
        lo=0,
        hi=16,
        flags=("--grow",),
    )
    # see hold.focus; not in the reference
    focus_gate: float = knob(
        0.0,
        "Focus gate",
        "Hold only when the instruction's attention on the image (its share, "
        "at the first step) reaches this; below it the edit reads as a whole-image one (a style, a "
        "background) and nothing is held. 0 = always hold; calibrate-layers suggests a value.",
        "float",
        lo=0.0,
        hi=1.0,
        flags=("--focus-gate",),
    )
    # for the editing engine; not in the reference
    keep_pixels: bool = knob(
        True,
        "Keep original pixels where unchanged",
        "What the edit left as it was (held or "
        "unchanged tokens) shows the input's own pixels at full resolution, not their re-encoded "
        "version.",
        "bool",
        flags=("--keep-pixels",),
        negatable=True,
    )
    reference_compatible: bool = knob(
        False,
        "Reference-compatible",
        "Make every step exactly the reference implementation's scheduler step.",
        "bool",
        flags=("--reference-compatible",),
    )

    def __post_init__(self):
        for name, declared in self.knobs().items():
            declared.check(name, getattr(self, name))

    @classmethod
    def knobs(cls) -> dict[str, Knob]:
        """Every field's declaration, by name, in the fields' order."""
        return {f.name: f.metadata["knob"] for f in dataclasses.fields(cls)}

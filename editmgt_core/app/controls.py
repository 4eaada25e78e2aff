"""How the app shows the knobs: which panel, row and control each takes, and the hidden components behind the /edit
and /sweep API parameters. What a knob is (label, help, kind, range) is declared once in the engine
(`editmgt_core/edit/knobs.py`, from `SamplerOptions`); this file adds presentation only. Starting values are the
model's defaults (`editing.default_options`)."""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass

import gradio as gr

from editmgt_core.edit import knobs
from editmgt_core.edit.editing import default_options
from editmgt_core.model import entries
from editmgt_core.model.loading import Editor
from editmgt_core.studio import streaming, validate


@dataclass(frozen=True)
class Shown:
    """One control (or API parameter): the engine knob it shows and how."""

    knob: str | None  # the knob it shows (knobs.KNOBS); None = the app's own (its label and help below)
    section: str | None = None  # 'main', 'advanced' (the accordion) or 'end' (below it); None = the API only
    control: str = ""  # 'slider', 'number', 'text', 'checkbox', 'radio' or 'chips' (the instruction's words)
    row: str = ""  # controls with the same row sit side by side
    elem_id: str | None = None  # the control's HTML id (browser tests select by it)
    step: float | None = None  # a slider's step
    slider: tuple[float, float] | None = None  # a slider's range where narrower than the knob's (the API takes more)
    api: str | None = None  # the /edit and /sweep parameter's component: 'number', 'text' or 'checkbox'
    api_hint: str = ""  # added to the API parameter's label (default: the choices)
    part: int | None = None  # a pair knob's first (0) or last (1) step
    label: str = ""  # the app's own label and help (else the knob's)
    help: str = ""

    def text(self) -> tuple[str, str]:
        """(label, help) as the control shows them."""
        if self.knob is None or self.label:
            return self.label, self.help
        knob = knobs.KNOBS[self.knob]
        return knob.label, knob.help


_TEMPERATURE = dict(knob="temperature", section="advanced", control="slider", row="temperature", step=0.1, api="number")

# In the page's order (main panel, Advanced, below), named as validate.request takes them.
LAYOUT = {
    "keywords": Shown("keywords", "main", "chips", elem_id="keywords", api="text",
                      api_hint="comma-separated; empty = all words"),
    "gamma": Shown("gamma", "main", "slider", "hold", "gamma", 0.05, (0.0, 3.0), "number"),
    "lam": Shown("lam", "main", "slider", "hold", "lam", 0.01, api="number"),
    "grow": Shown("grow", "main", "slider", "hold", "grow", 1, api="number", api_hint="tokens"),
    "steps": Shown("steps", "main", "slider", "decode", "steps", 1, (1, 64), "number"),
    "guidance_scale": Shown("guidance_scale", "main", "slider", "decode", None, 0.5, (0.0, 15.0), "number"),
    "seed": Shown("seed", "main", "number", "seed", api="number", api_hint="-1 = random"),
    "randomize": Shown(None, "main", "checkbox", "seed", label="Randomize seed",
                       help="Draw a fresh seed for every edit."),
    "negative_prompt": Shown("negative_prompt", "advanced", "text", api="text"),
    "layers": Shown("layers", "advanced", "text", api="text", api_hint="e.g. '28-36'; empty = the model's"),
    "temperature_start": Shown(**_TEMPERATURE, part=0, label="Temperature, first step",
                               help="Randomness of the reveal order (Gumbel noise) at the first step."),
    "temperature_end": Shown(**_TEMPERATURE, part=1, label="Temperature, last step",
                             help="Randomness of the reveal order at the last step."),
    "token_temperature": Shown("token_temperature", "advanced", "slider", elem_id="token-temperature", step=0.05,
                               slider=(0.05, 2.0),
                               api="number", api_hint="1 = the model's probabilities"),
    "resolution": Shown("pixels", "advanced", "slider", api="number", api_hint="working side in pixels; 0 = the "
                        "model's", label="Working resolution", help="Working resolution: the side of a square with "
                        "as many pixels as the model edits at (aspect kept)."),
    "mask_mode": Shown("mask_mode", "advanced", "radio", api="text"),
    "focus_gate": Shown("focus_gate", "advanced", "slider", elem_id="focus-gate", step=0.005, api="number",
                        api_hint="0 = always hold"),
    "keep_pixels": Shown("keep_pixels", "advanced", "checkbox", elem_id="keep-pixels", api="checkbox"),
    "strict": Shown("strict", "end", "checkbox", elem_id="strict", api="checkbox",
                    api_hint="refuse out-of-domain inputs instead of warning"),
    "previews": Shown(None, api="checkbox", api_hint="decoded previews in /edit's streamed steps",
                      label="Live previews", help="/edit: send a decoded preview image with the streamed steps (the "
                      f"first step's, then a few within {streaming.PREVIEW_BUDGET:.0%} of the edit's time); off: the "
                      "steps' progress and the result only."),
}  # fmt: skip
CLI_ONLY = ("reference_compatible",)  # reference runs are the command line's and the library's


def default_shown(name: str) -> Shown:
    """A sampler knob LAYOUT does not place: in the Advanced accordion, its control and API parameter by its kind."""
    kind = knobs.KNOBS[name].kind
    control = {"bool": "checkbox", "choice": "radio", "int": "slider", "float": "slider"}.get(kind, "text")
    api = {"bool": "checkbox", "int": "number", "float": "number"}.get(kind, "text")
    knob = knobs.KNOBS[name]
    if control == "slider" and (knob.lo is None or knob.hi is None):
        control = "number"
    step = None if control != "slider" else 1 if kind == "int" else (knob.hi - knob.lo) / 100
    return Shown(name, "advanced", control, elem_id=name.replace("_", "-"), step=step, api=api)


LAYOUT |= {name: default_shown(name) for name in knobs.SAMPLER
           if name not in CLI_ONLY and name not in {s.knob for s in LAYOUT.values()}}  # fmt: skip
SHOWN = tuple(sorted((name for name, s in LAYOUT.items() if s.section),
                     key=lambda name: ("main", "advanced", "end").index(LAYOUT[name].section)))  # fmt: skip
API = tuple(name for name, s in LAYOUT.items() if s.api)  # the /edit and /sweep parameters besides the inputs


def layers_text(layers) -> str:
    """Map entries as the layers box shows them: '28-36' for a run of blocks, else comma-separated."""
    layers = list(layers or ())
    if len(layers) > 2 and all(isinstance(i, int) for i in layers) and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ", ".join(map(str, layers))


def start_values(editor: Editor, api: bool = False) -> dict:
    """Every control's starting value from the model's defaults, as the app's controls (or the API's plain
    parameters) hold it: the temperature as its first and last step, the keywords and layers as text, the seed with
    randomize (the API: -1 = random), the working side (the API: 0 = the model's)."""
    d = default_options(editor)
    start, end = knobs.temperature_pair(d.temperature)
    values = {name: getattr(d, name) for name in knobs.SAMPLER}
    values |= {"temperature_start": start, "temperature_end": end, "randomize": d.seed is None, "strict": False,
               "previews": True}  # fmt: skip
    if api:
        seed, side, layers = -1, 0, d.layers
        values["keywords"] = ", ".join(d.keywords)
    else:  # the keyword chips are the instruction's words: none before one is typed
        seed, side, layers = 0, validate.resolution_range(editor)[1], d.layers or editor.settings.attention_layers
        values["keywords"] = []
    return values | {"seed": seed if d.seed is None else d.seed, "resolution": side, "layers": layers_text(layers)}


def control(name: str, value, editor: Editor):
    """The app's component for one control."""
    shown = LAYOUT[name]
    label, help = shown.text()
    knob = knobs.KNOBS.get(shown.knob)
    kw = {"label": label, "info": help, "elem_id": shown.elem_id or name.replace("_", "-")}
    if shown.control == "chips":
        words = entries.reads_words(editor.settings.attention_layers)  # the predicted-change map reads none
        return gr.CheckboxGroup([], value=value, interactive=words, **kw | {"info": keywords_help(words)})
    if name == "resolution":  # the model's range and token grid
        lo, _, hi = validate.resolution_range(editor)
        return gr.Slider(lo, hi, value, step=2 * editor.vq.factor, **kw)
    if shown.control == "slider":
        return gr.Slider(*(shown.slider or (knob.lo, knob.hi)), value, step=shown.step, **kw)
    if shown.control == "number":
        return gr.Number(value, precision=0 if knob.kind == "int" else None, minimum=knob.lo, **kw)
    if shown.control == "radio":
        return gr.Radio(list(knob.choices), value=value, **kw)
    return {"text": gr.Textbox, "checkbox": gr.Checkbox}[shown.control](value, **kw)


def keywords_help(reads_words: bool) -> str:
    """The keyword chips' info line: what they do, or why they are off."""
    if reads_words:
        return knobs.KNOBS["keywords"].help + " The instruction's words appear here as you type."
    return "Off: this map (the predicted change) does not read words, so keywords have no effect. Pick Map: " \
        "attention to choose words."  # fmt: skip


def input_controls(editor: Editor, section: str) -> dict:
    """The controls LAYOUT puts in `section` ('main', 'advanced' or 'end'), by name; controls with the same row side
    by side (the caller lays out the sections)."""
    start, controls = start_values(editor), {}
    names = [name for name in SHOWN if LAYOUT[name].section == section]
    for row, group in itertools.groupby(names, key=lambda name: LAYOUT[name].row):
        with gr.Row() if row else contextlib.nullcontext():
            controls |= {name: control(name, start[name], editor) for name in group}
    return controls


def api_controls(editor: Editor) -> dict:
    """Hidden components behind the /edit and /sweep parameters, by name (plain values; validate checks them)."""
    start, kinds = start_values(editor, api=True), {"number": gr.Number, "text": gr.Textbox, "checkbox": gr.Checkbox}
    controls = {}
    for name in API:
        shown = LAYOUT[name]
        knob = knobs.KNOBS.get(shown.knob)
        hint = shown.api_hint or (" | ".join(knob.choices) if knob else "")
        controls[name] = kinds[shown.api](start[name], label=f"{name} ({hint})" if hint else name)
    return controls

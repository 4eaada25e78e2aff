"""The app's knob controls, made from the knob registry (`editmgt_core/edit/knobs.py`): the input panel's sliders, boxes
and checkboxes, and the hidden components behind the /edit and /sweep API parameters. Their starting values are
the model's defaults (`editing.default_options`)."""

from __future__ import annotations

import contextlib
import itertools

import gradio as gr

from editmgt_core.edit import knobs
from editmgt_core.edit.editing import default_options
from editmgt_core.model import entries
from editmgt_core.model.loading import Editor
from editmgt_core.studio import studio_inputs

SHOWN = tuple(name for name, k in knobs.KNOBS.items() if k.app)  # the app's knobs, as studio_inputs.request names them
API = tuple(name for name, k in knobs.KNOBS.items() if k.api)  # the /edit and /sweep parameters besides the inputs


def layers_text(layers) -> str:
    """Map entries as the layers box shows them: '28-36' for a run of blocks, else comma-separated."""
    layers = list(layers or ())
    if len(layers) > 2 and all(isinstance(i, int) for i in layers) and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ", ".join(map(str, layers))


def start_values(editor: Editor, api: bool = False) -> dict:
    """Every knob's starting value from the model's defaults, as the app's controls (or the API's plain parameters)
    hold it: the temperature as its first and last step, the keywords and layers as text, the seed with randomize
    (the API: -1 = random), the working side (the API: 0 = the model's)."""
    d = default_options(editor)
    start, end = knobs.temperature_pair(d.temperature)
    values = {name: getattr(d, name) for name in knobs.SAMPLER}
    values |= {"temperature_start": start, "temperature_end": end, "randomize": d.seed is None, "strict": False,
               "previews": True}
    if api:
        seed, side, layers = -1, 0, d.layers
        values["keywords"] = ", ".join(d.keywords)
    else:  # the keyword chips are the instruction's words: none before one is typed
        seed, side, layers = 0, studio_inputs.resolution_range(editor)[1], d.layers or editor.settings.attention_layers
        values["keywords"] = []
    return values | {"seed": seed if d.seed is None else d.seed, "resolution": side, "layers": layers_text(layers)}


def control(knob: knobs.Knob, value, editor: Editor):
    """The app's component for one knob."""
    kw = {"label": knob.label, "info": knob.help, "elem_id": knob.elem_id or knob.name.replace("_", "-")}
    if knob.control == "chips":
        words = entries.reads_words(editor.settings.attention_layers)  # the predicted-change map reads none
        return gr.CheckboxGroup([], value=value, interactive=words, **kw | {"info": keywords_help(words)})
    if knob.control == "slider" and knob.name == "resolution":  # the model's range and token grid
        lo, _, hi = studio_inputs.resolution_range(editor)
        return gr.Slider(lo, hi, value, step=2 * editor.vq.factor, **kw)
    if knob.control == "slider":
        return gr.Slider(*(knob.slider or (knob.lo, knob.hi)), value, step=knob.step, **kw)
    if knob.control == "number":
        return gr.Number(value, precision=0 if knob.kind == "int" else None, minimum=knob.lo, **kw)
    if knob.control == "radio":
        return gr.Radio(list(knob.choices), value=value, **kw)
    return {"text": gr.Textbox, "checkbox": gr.Checkbox}[knob.control](value, **kw)


def keywords_help(reads_words: bool) -> str:
    """The keyword chips' info line: what they do, or why they are off."""
    if reads_words:
        return knobs.KNOBS["keywords"].help + " The instruction's words appear here as you type."
    return "Off: this map (the predicted change) does not read words, so keywords have no effect. Pick Map: " \
        "attention to choose words."  # fmt: skip


def input_controls(editor: Editor, section: str) -> dict:
    """The controls of the knobs the registry puts in `section` ('main', 'advanced' or 'end'), by name; controls
    with the same row side by side (the caller lays out the sections)."""
    start, controls = start_values(editor), {}
    shown = [knobs.KNOBS[name] for name in SHOWN if knobs.KNOBS[name].app == section]
    for row, group in itertools.groupby(shown, key=lambda k: k.row):
        with gr.Row() if row else contextlib.nullcontext():
            controls |= {k.name: control(k, start[k.name], editor) for k in group}
    return controls


def api_controls(editor: Editor) -> dict:
    """Hidden components behind the /edit and /sweep parameters, by name (plain values; studio_inputs checks them)."""
    start, kinds = start_values(editor, api=True), {"number": gr.Number, "text": gr.Textbox, "checkbox": gr.Checkbox}
    controls = {}
    for name in API:
        knob = knobs.KNOBS[name]
        hint = knob.api_hint or " | ".join(knob.choices)
        controls[name] = kinds[knob.api](start[name], label=f"{name} ({hint})" if hint else name)
    return controls

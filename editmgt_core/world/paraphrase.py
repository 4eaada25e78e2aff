"""Phrasing families for edit-world instructions: many ways people ask for the same edit, split into training and
held-out families.

A family is a sentence frame (imperative, request, question, wish, passive, "should be", topic-first, ...) filled
from a per-category lexicon (verbs and their synonyms, end states, passive participles), then varied by modifiers
shared by every family: longer referring expressions ("the small blue circle near the top"), a filler word,
British or American spelling, casing, end punctuation and an occasional typo in a frame word (never in a colour,
shape or position word, which decide the edit). Held-out families differ from the training ones in form: frames
(gerund questions, wishes, topic-first clauses, result clauses) and verbs ("get rid of", "dye", "blow up") that no
training family uses. Nothing here is used by the world's default records (samples.record with phrasing=None), which
keep the templates of sentences.py.

    text, family = phrase(rng, slots, "recolor", "heldout")   # slots: ref, color, shape, a, pos, bg
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from editmgt_core.world import sentences


@dataclass(frozen=True)
class Lexicon:
    subj: tuple[str, ...]  # what the edit is about, as a sentence subject
    vp: tuple[str, ...]  # imperative verb phrases, used by every family
    vp_held: tuple[str, ...]  # imperative verb phrases only held-out families use
    pred: tuple[str, ...]  # end state after "to be" / "should be"
    pp: tuple[str, ...]  # passive participle phrase after "needs to be"
    topic: tuple[str, tuple[str, ...]]  # topic-first clause: (topic, imperative phrases about "it")


def _it(vps: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.replace("{ref}", "it") for v in vps)


_RECOLOR_VP = ("make {ref} {color}", "paint {ref} {color}", "color {ref} {color}", "turn {ref} {color}",
               "change {ref} to {color}", "change the color of {ref} to {color}", "recolor {ref} {color}")  # fmt: skip
_REMOVE_VP = ("remove {ref}", "delete {ref}", "erase {ref}", "take away {ref}", "take out {ref}")
_REPLACE_VP = ("turn {ref} into {a} {shape}", "replace {ref} with {a} {shape}", "change {ref} into {a} {shape}",
               "make {ref} {a} {shape}", "swap {ref} for {a} {shape}", "transform {ref} into {a} {shape}")  # fmt: skip
_BIGGER_VP = ("make {ref} bigger", "enlarge {ref}", "make {ref} larger", "scale up {ref}", "grow {ref}",
              "increase the size of {ref}")  # fmt: skip
_SMALLER_VP = ("make {ref} smaller", "shrink {ref}", "reduce the size of {ref}", "scale down {ref}",
               "decrease the size of {ref}", "make {ref} a bit smaller")  # fmt: skip
_BG_VP = ("change the background to {bg}", "set the background to {bg}", "replace the background with {bg}",
          "make the background {bg}", "use {bg} for the background")  # fmt: skip
_IMAGE = ("the image", "the picture")

# a table, one row per category:
# fmt: off
LEXICON: dict[str, Lexicon] = {
    "recolor": Lexicon(
        ("{ref}",), _RECOLOR_VP,
        ("dye {ref} {color}", "switch {ref} to {color}", "fill {ref} with {color}", "shade {ref} {color}"),
        ("{color}", "colored {color}"), ("painted {color}", "colored {color}", "made {color}", "turned {color}"),
        ("{ref}", _it(_RECOLOR_VP[:5])),
    ),  # fmt: skip
    "remove": Lexicon(
        ("{ref}",), _REMOVE_VP,
        ("get rid of {ref}", "drop {ref}", "wipe out {ref}", "eliminate {ref}", "throw out {ref}"),
        ("gone", "removed"), ("removed", "deleted", "erased", "taken out"),
        ("{ref}", _it(_REMOVE_VP)),
    ),  # fmt: skip
    "add": Lexicon(
        ("{a} {color} {shape}",),
        ("add {a} {color} {shape} {pos}", "put {a} {color} {shape} {pos}", "draw {a} {color} {shape} {pos}",
         "place {a} {color} {shape} {pos}", "insert {a} {color} {shape} {pos}"),
        ("stick {a} {color} {shape} {pos}", "pop {a} {color} {shape} {pos}", "sketch {a} {color} {shape} {pos}",
         "include {a} {color} {shape} {pos}"),
        ("{pos}",), ("added {pos}", "drawn {pos}", "placed {pos}", "put {pos}"),
        ("the spot {pos}", ("add {a} {color} {shape}", "draw {a} {color} {shape}", "put {a} {color} {shape} there")),
    ),  # fmt: skip
    "replace": Lexicon(
        ("{ref}",), _REPLACE_VP,
        ("morph {ref} into {a} {shape}", "exchange {ref} for {a} {shape}", "reshape {ref} into {a} {shape}",
         "convert {ref} into {a} {shape}"),
        ("{a} {shape}",), ("turned into {a} {shape}", "replaced with {a} {shape}", "changed into {a} {shape}"),
        ("{ref}", _it(_REPLACE_VP[:4])),
    ),  # fmt: skip
    "background": Lexicon(
        ("the background",), _BG_VP,
        ("repaint the backdrop as {bg}", "switch the background to {bg}", "set the backdrop to {bg}",
         "give the scene a backdrop of {bg}"),
        ("{bg}",), ("changed to {bg}", "replaced with {bg}", "set to {bg}"),
        ("the background", ("make it {bg}", "change it to {bg}", "set it to {bg}")),
    ),  # fmt: skip
    "resize:bigger": Lexicon(
        ("{ref}",), _BIGGER_VP,
        ("blow up {ref}", "expand {ref}", "magnify {ref}", "make {ref} grow", "supersize {ref}"),
        ("bigger", "larger"), ("made bigger", "enlarged", "scaled up"),
        ("{ref}", _it(_BIGGER_VP[:4])),
    ),  # fmt: skip
    "resize:smaller": Lexicon(
        ("{ref}",), _SMALLER_VP,
        ("shrink down {ref}", "minimize {ref}", "make {ref} tinier", "cut {ref} down to size", "compress {ref}"),
        ("smaller",), ("made smaller", "shrunk", "scaled down", "reduced in size"),
        ("{ref}", _it(_SMALLER_VP[:4])),
    ),  # fmt: skip
    "style:invert": Lexicon(
        _IMAGE, ("invert the colors", "invert the image", "make it a photo negative", "apply a negative filter"),
        ("flip every color to its opposite", "turn the picture into a negative", "reverse the colors"),
        ("inverted", "a photo negative"), ("inverted", "color-inverted"),
        ("the image", ("invert it", "make it a negative")),
    ),  # fmt: skip
    "style:grayscale": Lexicon(
        _IMAGE, ("make it black and white", "convert the image to grayscale", "remove all the color",
                 "desaturate the image", "make it grayscale"),
        ("drain the color from the picture", "strip out the colors", "switch the picture to monochrome"),
        ("black and white", "grayscale", "in black and white"), ("converted to grayscale", "desaturated"),
        ("the image", ("make it grayscale", "make it black and white")),
    ),  # fmt: skip
    "style:sepia": Lexicon(
        _IMAGE, ("apply a sepia filter", "make it look like an old photo", "give it a sepia tone",
                 "turn the image sepia"),
        ("age the picture with a brown tint", "tint the picture sepia", "give the picture a vintage brown look"),
        ("sepia", "in sepia tones"), ("given a sepia tone", "tinted sepia"),
        ("the image", ("make it sepia", "give it a sepia tone")),
    ),  # fmt: skip
    "style:outline": Lexicon(
        _IMAGE, ("turn it into a line drawing", "make it a sketch", "show only the outlines",
                 "convert it to an outline drawing"),
        ("trace the outlines only", "reduce the picture to its contours", "redraw the picture as line art"),
        ("a line drawing", "just outlines"), ("turned into a line drawing", "reduced to outlines"),
        ("the image", ("turn it into a line drawing", "make it a sketch")),
    ),  # fmt: skip
}
# fmt: on

# name -> frames; {vp} an imperative phrase, {ing} its gerund, {subj}/{pred}/{pp} the end-state parts,
# {topic}/{tvp} the topic-first parts. Held-out families use frames and verbs no training family uses.
TRAINING_FAMILIES: dict[str, tuple[str, ...]] = {
    "imperative": ("{vp}",),
    "please": ("please {vp}", "{vp}, please", "{vp} please"),
    "can_you": ("can you {vp}?", "could you {vp}?", "will you {vp}?"),
    "should_be": ("{subj} should be {pred}", "{subj} must be {pred}"),
    "i_want_it": ("I want {subj} to be {pred}", "I need {subj} to be {pred}"),
    "needs_passive": ("{subj} needs to be {pp}", "{subj} has to be {pp}"),
    "filler": ("ok, {vp}", "now {vp}", "alright, {vp}", "hey, {vp}", "so, {vp}", "{vp} now"),
    "lets": ("let's {vp}", "let us {vp}"),
    "i_want_you": ("I want you to {vp}", "I need you to {vp}"),
    "thanks": ("{vp}, thanks", "{vp}, thank you", "{vp} thx"),
    "go_ahead": ("go ahead and {vp}", "try to {vp}", "just {vp}"),
}
HELDOUT_FAMILIES: dict[str, tuple[str, ...]] = {
    "wish_instead": (
        "I'd like {subj} to be {pred} instead",
        "I'd rather have {subj} {pred}",
        "I wish {subj} were {pred}",
    ),  # fmt: skip
    "mind_gerund": ("would you mind {ing}?", "do you mind {ing}?"),
    "how_about": ("how about {ing}?", "what about {ing}?", "what if {subj} were {pred}?"),
    "topic_first": ("as for {topic}, {tvp}", "{topic}: {tvp}", "{topic} - {tvp}"),
    "have_passive": ("have {subj} {pp}", "get {subj} {pp}", "{subj} ought to be {pp}"),
    "other_verbs": ("{vp_held}", "{vp_held} for me", "{vp_held}, if you can"),
    "result_clause": ("the idea is that {subj} ends up {pred}", "what I'm after is {subj} being {pred}"),
    "conditional_polite": ("it would be great if you could {vp}", "I'd appreciate it if you could {vp_held}"),
}
FAMILIES = {**TRAINING_FAMILIES, **HELDOUT_FAMILIES}
# Ways of choosing a family: the world's own templates, training families, held-out families, or (for training)
# templates and training families half and half. Held-out families are never drawn by "train" or "mixed".
MODES = ("templates", "train", "heldout", "mixed")

_DOUBLE = {"put", "get", "set", "swap", "drop", "pop", "cut", "stop", "trim"}
_FILLERS = ("hmm, ", "um, ", "right, ", "okay ", "")
_BRITISH = (("color", "colour"), ("gray", "grey"), ("center", "centre"), ("minimize", "minimise"))


def gerund(vp: str) -> str:
    """'make {ref} blue' -> 'making {ref} blue'."""
    verb, _, rest = vp.partition(" ")
    if verb in _DOUBLE:
        ing = verb + verb[-1] + "ing"
    elif verb.endswith("ie"):
        ing = verb[:-2] + "ying"
    elif verb.endswith("e") and not verb.endswith(("ee", "ye")):
        ing = verb[:-1] + "ing"
    else:
        ing = verb + "ing"
    return f"{ing} {rest}".strip()


def family_mode(family: str) -> str:
    """'train' or 'heldout' for a family name; ValueError names the families."""
    if family in TRAINING_FAMILIES:
        return "train"
    if family in HELDOUT_FAMILIES:
        return "heldout"
    raise ValueError(f"unknown phrasing family {family!r}; expected one of {sorted(FAMILIES)}")


def check_phrasing(phrasing: str) -> str:
    """`phrasing` if it is a mode (MODES) or a family name, else ValueError naming both."""
    if phrasing not in MODES and phrasing not in FAMILIES:
        raise ValueError(f"unknown phrasing {phrasing!r}; expected one of {MODES} or a family: {sorted(FAMILIES)}")
    return phrasing


def parse_phrasings(text: str) -> tuple[str, ...]:
    """'templates,train,heldout' -> a tuple of checked phrasings (ValueError on an unknown or empty one)."""
    names = tuple(p.strip() for p in text.split(","))
    if not all(names):
        raise ValueError(f"empty phrasing in {text!r}; expected a comma list such as templates,train,heldout")
    return tuple(check_phrasing(p) for p in names)


def phrasings_arg(text: str) -> tuple[str, ...]:
    """--phrasing's argparse type: `parse_phrasings`, its ValueError as argparse's own error."""
    import argparse

    try:
        return parse_phrasings(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _one(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def frame(rng: np.random.Generator, key: str, family: str) -> str:
    """A template for `key` (a sentences.TEMPLATES key) in `family`; slots {ref} {color} {a} {shape} {pos} {bg}."""
    lex, frames = LEXICON[key], FAMILIES[family]
    held = family in HELDOUT_FAMILIES
    text = _one(rng, frames)
    topic, tvps = lex.topic
    parts = {"subj": _one(rng, lex.subj), "pred": _one(rng, lex.pred), "pp": _one(rng, lex.pp), "topic": topic,
             "tvp": _one(rng, tvps), "vp": _one(rng, lex.vp), "vp_held": _one(rng, lex.vp_held),
             "ing": gerund(_one(rng, lex.vp + lex.vp_held if held else lex.vp))}  # fmt: skip
    for name, value in parts.items():
        text = text.replace("{" + name + "}", value)
    return text


def _typo(rng: np.random.Generator, template: str) -> str:
    """Swap two neighbouring letters of one frame word (slot-free, >= 5 letters)."""
    words = template.split(" ")
    spots = [i for i, w in enumerate(words) if "{" not in w and len(w) >= 5 and w.isalpha()]
    if not spots:
        return template
    i = _one(rng, spots)
    w = words[i]
    j = int(rng.integers(1, len(w) - 2))
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def decorate(rng: np.random.Generator, template: str, slots: dict[str, str]) -> str:
    """Fill `template` and vary its surface: typo, filler, spelling, casing, end punctuation."""
    if rng.random() < 0.08:
        template = _typo(rng, template)
    text = template.format(**slots)
    if rng.random() < 0.1 and not text.startswith(("ok", "now", "alright", "hey", "so,")):
        text = _one(rng, _FILLERS) + text
    if rng.random() < 0.3:
        for us, uk in _BRITISH:
            text = text.replace(us, uk)
    question = text.endswith("?")
    text = text.rstrip("?")
    case = rng.random()
    text = text.lower() if case < 0.3 else text.upper() if case < 0.33 else text[0].upper() + text[1:]
    end = "?" if question else _one(rng, ("", "", ".", "!"))
    return text + end


def phrase(rng: np.random.Generator, slots: dict[str, str], key: str, family: str) -> str:
    """The instruction for template key `key` (e.g. "resize:bigger") in phrasing family `family`."""
    family_mode(family)
    return decorate(rng, frame(rng, key, family), slots)


def pick_family(rng: np.random.Generator, phrasing: str) -> str | None:
    """The family a record uses under `phrasing` (a mode or a family name); None: the world's own templates."""
    check_phrasing(phrasing)
    if phrasing in FAMILIES:
        return phrasing
    if phrasing == "templates" or (phrasing == "mixed" and rng.random() < 0.5):
        return None
    names = sorted(HELDOUT_FAMILIES if phrasing == "heldout" else TRAINING_FAMILIES)
    return _one(rng, names)


# ---------------------------------------------------------------------------------------------------- references
# A true qualifier added to an unambiguous description keeps it unambiguous, so these lengthen a reference without
# changing what it names.


def size_word(obj) -> str | None:
    """'small' / 'big' when the object's radius is clearly below / above the world's usual range, else None."""
    if obj.r < 0.1:
        return "small"
    if obj.r > 0.145:
        return "big"
    return None


def place_phrase(obj) -> str | None:
    """Where the object's centre lies, when it is clearly inside one of the 3x3 cells ('near the top'), else None."""
    col = 0 if obj.x < 0.3 else 2 if obj.x > 0.7 else 1 if 0.4 < obj.x < 0.6 else None
    row = 0 if obj.y < 0.3 else 2 if obj.y > 0.7 else 1 if 0.4 < obj.y < 0.6 else None
    if col is None or row is None:
        return None
    vertical, horizontal = ("top", "", "bottom")[row], ("left", "", "right")[col]
    if not vertical and not horizontal:
        return "in the middle"
    if vertical and horizontal:
        return f"in the {vertical} {horizontal}"
    return f"near the {vertical}" if vertical else f"on the {horizontal}"


def lengthen(rng: np.random.Generator, ref: str, kind: str, obj) -> str:
    """'the blue circle' -> 'the small blue circle near the top' (only qualifiers true of `obj`)."""
    size, place = size_word(obj), place_phrase(obj)
    if size and kind in ("color_shape", "shape", "color") and rng.random() < 0.7:
        ref = "the " + size + " " + ref[len("the ") :]
    if place and kind != "position" and rng.random() < 0.7:
        ref = f"{ref} {place}"
    return ref


# ---------------------------------------------------------------------------------------------------- records


def template_key(edit: dict) -> str:
    """The sentences.TEMPLATES key of an edit: its category, or "resize:bigger", "style:sepia", ..."""
    if edit["category"] == "resize":
        return f"resize:{edit['new']['direction']}"
    if edit["category"] == "style":
        return f"style:{edit['new']['style']}"
    return edit["category"]


def edit_slots(rng: np.random.Generator, edit: dict, long_refs: float = 0.35) -> dict[str, str]:
    """Template slots for a structured edit; with probability `long_refs` the reference gets true qualifiers."""
    slots, new = {}, edit.get("new") or {}
    if edit.get("ref") is not None:
        ref = edit["ref"]
        if edit["ref_kind"] != "ambiguous" and rng.random() < long_refs:  # a true qualifier would disambiguate
            ref = lengthen(rng, ref, edit["ref_kind"], SimpleNamespace(**edit["target"]))
        slots["ref"] = ref
    if "color" in new:
        slots["color"] = new["color"]
    if "shape" in new:
        slots.update(shape=new["shape"], a=sentences.article(new["shape"]))
    if edit["category"] == "add":
        phrases = sentences.POSITIONS[new["position"]][2]
        slots.update(a=sentences.article(new["color"]), pos=phrases[int(rng.integers(len(phrases)))])
    if edit["category"] == "background":
        bg = new["background"]
        slots["bg"] = sentences.background_phrase(bg["kind"], tuple(bg["colors"]))
    return slots


def rephrase(rec, phrasing: str, rng: np.random.Generator):
    """`rec` with its instruction reworded under `phrasing` (a paraphrase mode or family name); the edit gains
    `phrasing` (the family, or "template") and `held_out` (whether training ever sees that family)."""
    family = pick_family(rng, phrasing)
    if family is None:
        instruction = rec.instruction
    else:
        key = template_key(rec.edit)
        instruction = phrase(rng, edit_slots(rng, rec.edit), key, family)
    held_out = family is not None and family_mode(family) == "heldout"
    edit = {**rec.edit, "phrasing": family or "template", "held_out": held_out}
    return dataclasses.replace(rec, instruction=instruction, edit=edit)

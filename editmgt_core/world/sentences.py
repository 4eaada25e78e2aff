"""Instruction text for the edit world: templates per edit category, position words and referring expressions.

Objects are described by anything with `shape`, `color`, `x`, `y` attributes (`drawing.Obj`); `x`, `y` are the
object's centre as fractions of the image side, so "left" is the viewer's left.
"""

import numpy as np

# Each category has >= 5 phrasings; `{ref}` is a referring expression ("the red circle"), `{a}` the article for the
# word after it. Resize and style are keyed by their sub-kind so the template id is e.g. "resize:bigger:2".
TEMPLATES: dict[str, tuple[str, ...]] = {
    "recolor": (
        "make {ref} {color}",
        "change the color of {ref} to {color}",
        "paint {ref} {color}",
        "turn {ref} {color}",
        "recolor {ref} to {color}",
        "{ref} should be {color}",
        "can you make {ref} {color}?",
        "repaint {ref} in {color}",
    ),
    "remove": (
        "remove {ref}",
        "delete {ref}",
        "erase {ref}",
        "get rid of {ref}",
        "take away {ref}",
        "make {ref} disappear",
        "take {ref} out of the picture",
    ),
    "add": (
        "add {a} {color} {shape} {pos}",
        "put {a} {color} {shape} {pos}",
        "draw {a} {color} {shape} {pos}",
        "place {a} {color} {shape} {pos}",
        "insert {a} {color} {shape} {pos}",
        "{pos}, add {a} {color} {shape}",
        "there should be {a} {color} {shape} {pos}",
    ),
    "replace": (
        "turn {ref} into {a} {shape}",
        "replace {ref} with {a} {shape}",
        "change {ref} into {a} {shape}",
        "make {ref} {a} {shape}",
        "swap {ref} for {a} {shape}",
        "change the shape of {ref} to {a} {shape}",
        "transform {ref} into {a} {shape}",
    ),
    "background": (
        "change the background to {bg}",
        "replace the background with {bg}",
        "set the background to {bg}",
        "swap the background for {bg}",
        "use {bg} for the background",
        "give the picture a background of {bg}",
        "put everything on {bg}",
    ),
    "resize:bigger": (
        "make {ref} bigger",
        "enlarge {ref}",
        "make {ref} larger",
        "increase the size of {ref}",
        "scale up {ref}",
        "grow {ref}",
    ),
    "resize:smaller": (
        "make {ref} smaller",
        "shrink {ref}",
        "reduce the size of {ref}",
        "scale down {ref}",
        "make {ref} a bit smaller",
        "decrease the size of {ref}",
    ),
    "style:invert": (
        "invert the colors",
        "invert the image",
        "make it look like a photo negative",
        "apply a negative filter",
    ),
    "style:grayscale": (
        "make it black and white",
        "convert the image to grayscale",
        "remove all the color",
        "desaturate the image",
        "make it grayscale",
    ),
    "style:sepia": (
        "apply a sepia filter",
        "make it look like an old photo",
        "give it a sepia tone",
        "turn the image sepia",
    ),
    "style:outline": (
        "turn it into a line drawing",
        "make it a sketch",
        "show only the outlines",
        "convert it to an outline drawing",
    ),
}

# Named 3x3 cells for "add": key -> (column, row, phrasings); column/row in {0, 1, 2}.
POSITIONS: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "top left": (0, 0, ("in the top left", "in the upper left corner")),
    "top": (1, 0, ("at the top", "near the top")),
    "top right": (2, 0, ("in the top right", "in the upper right corner")),
    "left": (0, 1, ("on the left", "on the left side")),
    "center": (1, 1, ("in the center", "in the middle")),
    "right": (2, 1, ("on the right", "on the right side")),
    "bottom left": (0, 2, ("in the bottom left", "in the lower left corner")),
    "bottom": (1, 2, ("at the bottom", "near the bottom")),
    "bottom right": (2, 2, ("in the bottom right", "in the lower right corner")),
}

# A position word refers to the extreme member of a group only if it beats every other member by this margin.
POSITION_MARGIN = 0.12


def article(word: str) -> str:
    """'a' or 'an' for `word`."""
    return "an" if word[0] in "aeiou" else "a"


def fill(rng: np.random.Generator, key: str, **slots: str) -> tuple[str, str]:
    """Pick a template for `key` and fill it; returns (instruction, template id like "remove:3")."""
    templates = TEMPLATES[key]
    k = int(rng.integers(len(templates)))
    text = templates[k].format(**slots)
    return text[0].upper() + text[1:], f"{key}:{k}"


def background_phrase(kind: str, colors: tuple[str, str]) -> str:
    """Noun phrase for a background, e.g. 'pink and gray stripes'."""
    c0, c1 = colors
    if kind == "flat":
        return f"plain {c0}"
    if kind == "stripes":
        return f"{c0} and {c1} stripes"
    if kind == "checks":
        return f"a {c0} and {c1} checkerboard"
    if kind == "gradient":
        return f"a {c0} to {c1} gradient"
    raise ValueError(f"unknown background kind {kind!r}; expected flat, stripes, checks or gradient")


def _extreme_words(group: list, target) -> list[str]:
    """Position words ('left', 'top', ...) naming `target` as the clear extreme of `group` (which contains it)."""
    others = [o for o in group if o is not target]
    words = []
    if all(target.x + POSITION_MARGIN <= o.x for o in others):
        words.append("left")
    if all(target.x - POSITION_MARGIN >= o.x for o in others):
        words.append("right")
    if all(target.y + POSITION_MARGIN <= o.y for o in others):
        words.append("top")
    if all(target.y - POSITION_MARGIN >= o.y for o in others):
        words.append("bottom")
    return words


_PAIR_FORMS = {
    "left": ("the left {n}", "the {n} on the left"),
    "right": ("the right {n}", "the {n} on the right"),
    "top": ("the top {n}", "the upper {n}", "the {n} at the top"),
    "bottom": ("the bottom {n}", "the lower {n}", "the {n} at the bottom"),
}
_MANY_FORMS = {
    "left": ("the leftmost {n}",),
    "right": ("the rightmost {n}",),
    "top": ("the topmost {n}", "the highest {n}"),
    "bottom": ("the lowest {n}", "the bottommost {n}"),
}


def referring_expressions(objects, idx: int) -> list[tuple[str, str]]:
    """Unambiguous descriptions of `objects[idx]` as (phrase, kind); kind: color_shape, shape, color or position."""
    t = objects[idx]
    same_shape = [o for o in objects if o.shape == t.shape]
    same_color = [o for o in objects if o.color == t.color]
    same_both = [o for o in same_shape if o.color == t.color]
    out = []
    if len(same_both) == 1:
        out.append((f"the {t.color} {t.shape}", "color_shape"))
    if len(same_shape) == 1:
        out.append((f"the {t.shape}", "shape"))
    if len(same_color) == 1:
        out += [(f"the {t.color} one", "color"), (f"the {t.color} shape", "color"), (f"the {t.color} object", "color")]
    if len(objects) == 1:
        out += [("the shape", "shape"), ("the object", "shape")]
    groups = [(same_shape, t.shape), (same_both, f"{t.color} {t.shape}"), (list(objects), "shape")]
    for group, noun in groups:
        if len(group) < 2:
            continue
        forms = _PAIR_FORMS if len(group) == 2 else _MANY_FORMS
        for word in _extreme_words(group, t):
            out += [(f.format(n=noun), "position") for f in forms[word]]
    return out


def refer(rng: np.random.Generator, objects, idx: int) -> tuple[str, str] | None:
    """One unambiguous description of `objects[idx]` (kind drawn first, to balance kinds), or None if none exists."""
    options = referring_expressions(objects, idx)
    if not options:
        return None
    kinds = sorted({k for _, k in options})
    kind = kinds[int(rng.integers(len(kinds)))]
    phrases = [p for p, k in options if k == kind]
    return phrases[int(rng.integers(len(phrases)))], kind

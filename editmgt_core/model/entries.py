"""Map entries: which signals the localization map is made of, parsed, formatted and validated in one place.

An entry names one map source. Attention entries are read from one block's attention (captured by the model):

    i        instruction -> target: block i's text queries over [text, target] keys, target columns (the reference's)
    s<i>     instruction -> source image: text queries over [text, source] keys, source columns (C_V)
    r<i>     target rows -> instruction: each target position's softmax mass (over all keys) on the instruction
    rs<i>    source rows -> instruction: each source position's softmax mass (over all keys) on the instruction

Every attention map is laid out [B, heads, T, I] (text rows, image columns), so the instruction's words (or the
keywords M) pick its rows the same way for all four. A head selector `:h<a>+<b>` keeps those heads only ('5:h1+3',
'rs0:h2'). Logit entries are made by the sampler from the first step's logits, not captured:

    change   1 - p(source token) under the instruction: where this model is about to change the image
    kl       1 - exp(-KL(instruction || negative prompt)) per token: where the instruction moves the prediction

Text form: a comma list, with ranges ('28-36', 's0-2', 'rs0-1:h1').
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass

ATTENTION_KINDS = {
    "": "instruction -> target",
    "s": "instruction -> source image",
    "r": "target rows -> instruction",
    "rs": "source rows -> instruction",
}
LOGIT_ENTRIES = {
    "change": "predicted change: 1 - p(source token) under the instruction, first step",
    "kl": "instruction vs negative prompt: 1 - exp(-KL) of the token distributions, first step",
}
SOURCE_KINDS = ("s", "rs")  # need the condition stream (cond, gamma > 0)
_PATTERN = re.compile(r"(rs|s|r)?(\d+)(?::h(\d+(?:\+\d+)*))?")


@dataclass(frozen=True)
class Entry:
    kind: str  # '', 's', 'r', 'rs' (attention, see ATTENTION_KINDS) or 'change', 'kl' (logits)
    block: int | None = None  # global block index (dual-stream first); None for logit entries
    heads: tuple[int, ...] | None = None  # heads kept (attention entries); None = all

    @property
    def is_logit(self) -> bool:
        return self.kind in LOGIT_ENTRIES

    @property
    def needs_source(self) -> bool:
        return self.kind in SOURCE_KINDS

    @property
    def text_queries(self) -> bool:
        """Read from the text rows' softmax (the reference's direction), as opposed to image rows or logits."""
        return self.kind in ("", "s")


def parse(entry) -> Entry:
    """One entry (an int block index or its text form, see the module docstring) -> Entry; ValueError otherwise."""
    if isinstance(entry, numbers.Integral) and not isinstance(entry, bool):
        if entry < 0:
            raise ValueError(f"capture entry {entry!r}: block indices are >= 0")
        return Entry("", int(entry))
    if isinstance(entry, str):
        if entry in LOGIT_ENTRIES:
            return Entry(entry)
        m = _PATTERN.fullmatch(entry)
        if m and (m[1] or m[3]):  # a bare block index is an int, not a string
            heads = None if m[3] is None else tuple(int(h) for h in m[3].split("+"))
            if heads is not None and len(set(heads)) != len(heads):
                raise ValueError(f"capture entry {entry!r} names a head twice")
            return Entry(m[1] or "", int(m[2]), heads)
    raise ValueError(
        f"capture entry {entry!r}: expected a block index, 's<i>', 'r<i>' or 'rs<i>' (optionally with "
        f"':h<a>+<b>' heads), or one of {sorted(LOGIT_ENTRIES)}"
    )


def from_text(text: str) -> tuple[int | str, ...]:
    """'28-36', '5, s0', 'rs0-1:h2, change' -> entries; ranges a-b expand with the same prefix and heads. Duplicates
    dropped; ValueError on anything else."""
    out = []
    for part in text.replace(" ", "").split(","):
        if part in LOGIT_ENTRIES:
            out.append(part)
            continue
        m = re.fullmatch(r"(rs|s|r)?(\d+)(?:-(\d+))?(:h\d+(?:\+\d+)*)?", part)
        if not m or (m[3] and int(m[3]) < int(m[2])):
            raise ValueError(
                f"attention layers {text!r}: write block indices like '28-36' or '5, 7', 's0' for "
                "block 0's source-image map, 'rs0' for its source rows -> instruction, ':h1+2' for heads, "
                "or "
                f"{' / '.join(LOGIT_ENTRIES)}"
            )
        for i in range(int(m[2]), int(m[3] or m[2]) + 1):
            out.append(f"{m[1] or ''}{i}{m[4] or ''}" if m[1] or m[4] else i)  # a plain block index is an int
    for e in out:
        parse(e)  # a head named twice
    return tuple(dict.fromkeys(out))


def to_text(entries) -> str:
    return ", ".join(str(e) for e in entries)


def check(entries, depth: int, heads: int | None = None) -> None:
    """ValueError naming entries whose block or heads are out of range for a model of `depth` blocks and `heads`
    heads (heads None: not checked)."""
    bad = []
    for e in entries:
        p = parse(e)
        if (
            p.block is not None
            and not 0 <= p.block < depth
            or heads is not None
            and p.heads is not None
            and not all(0 <= h < heads for h in p.heads)
        ):
            bad.append(e)
    if bad:
        limit = f"0..{depth - 1}" + ("" if heads is None else f" (heads 0..{heads - 1})")
        raise ValueError(f"capture layers {bad} out of range {limit}")


def valid(entries) -> bool:
    """A tuple of distinct entries (see parse) with at least one map that is not from the source stream alone: the
    map needs something to read at γ = 0 and in reference-compatible runs."""
    if not isinstance(entries, tuple) or not entries or len(set(entries)) != len(entries):
        return False
    try:
        parsed = [parse(e) for e in entries]
    except ValueError:
        return False
    return any(not p.needs_source for p in parsed)


def reads_words(layers) -> bool:
    """Whether the instruction's words (keywords M) shape a map of these entries: attention entries do, logit
    entries (the model's predicted change) do not."""
    return any(not parse(e).is_logit for e in layers)


def map_views(recipe, reference_band) -> dict[str, tuple]:
    """The maps a front end offers: {label: entries}. The model's own recipe; its attention part (or its reference
    band), where the instruction's words point; and the predicted change, where the model is about to edit."""
    attention = tuple(e for e in recipe if not parse(e).is_logit) or tuple(reference_band)
    views = {"model's map": tuple(recipe), "attention": attention, "predicted change": ("change",)}
    out = {}
    for label, layers in views.items():  # each map once, under the first name that fits
        if layers and layers not in out.values():
            out[label] = layers
    return out

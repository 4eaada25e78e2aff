"""Map entries: the text form, parsing, validation, and what each kind asks of the model."""

import pytest

from editmgt_core.model import entries
from editmgt_core.model.entries import Entry, from_text, parse


def test_parse_every_kind():
    assert parse(5) == Entry("", 5)
    assert parse("s0") == Entry("s", 0) and parse("s0").needs_source and parse("s0").text_queries
    assert parse("r3") == Entry("r", 3) and not parse("r3").needs_source and not parse("r3").text_queries
    assert parse("rs12:h1+4") == Entry("rs", 12, (1, 4)) and parse("rs12:h1+4").needs_source
    assert parse("7:h2") == Entry("", 7, (2,))
    assert parse("change").is_logit and parse("kl").is_logit and parse("change").block is None
    for bad in ("5", "x1", "s", "s-1", "rs1:h", "r1:h1+1", -1, True, 1.5, "change2"):
        with pytest.raises(ValueError, match="capture entry"):
            parse(bad)


def test_text_form_round_trip():
    assert from_text("28-30, 5") == (28, 29, 30, 5)
    assert from_text("5,s0, s2-3 ,5") == (5, "s0", "s2", "s3")
    assert from_text("rs0-1:h2, change, 4:h0+1, kl") == ("rs0:h2", "rs1:h2", "change", "4:h0+1", "kl")
    assert from_text(entries.to_text(("rs0:h2", 3, "change"))) == ("rs0:h2", 3, "change")
    for bad in ("", "5,", "a", "3-1", "rs", "5;6", "change-2", "r1:h1+1"):
        with pytest.raises(ValueError):
            from_text(bad)


def test_valid_and_check():
    assert entries.valid((5, "s0")) and entries.valid(("change",)) and entries.valid(("rs1", "r2"))
    assert not entries.valid(("s0",)) and not entries.valid(("rs0", "s1"))  # nothing without the source stream
    assert not entries.valid(()) and not entries.valid((1, 1)) and not entries.valid([1])
    entries.check((0, "rs3:h1", "change"), depth=4, heads=2)
    with pytest.raises(ValueError, match=r"capture layers \['rs4'\] out of range"):
        entries.check((0, "rs4"), depth=4)
    with pytest.raises(ValueError, match=r"\['1:h2'\] out of range 0..3 \(heads 0..1\)"):
        entries.check(("1:h2",), depth=4, heads=2)


def test_map_views_and_words():
    assert entries.map_views((5, "s0", "change"), (5,)) == {
        "model's map": (5, "s0", "change"),
        "attention": (5, "s0"),
        "predicted change": ("change",),
    }
    assert entries.map_views(("change",), (5,)) == {"model's map": ("change",), "attention": (5,)}
    assert entries.reads_words((5, "change")) and not entries.reads_words(("change", "kl"))

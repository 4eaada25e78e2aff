"""Tests for the phrasing families: coverage per category, the training / held-out split, faithful wording (the words
that decide an edit always survive), true long references, and records that differ from the default only in wording."""

import re

import numpy as np
import pytest

from editmgt_core.world import paraphrase as wp
from editmgt_core.world import samples, sentences
from editmgt_core.world.samples import Obj

SLOTS = {"ref": "the red circle", "color": "blue", "shape": "star", "a": "a", "pos": "at the top", "bg": "plain pink"}


def test_every_category_has_at_least_twelve_families_with_every_frame_filled():
    assert set(wp.LEXICON) == set(sentences.TEMPLATES)
    assert len(wp.FAMILIES) >= 12 and not set(wp.TRAINING_FAMILIES) & set(wp.HELDOUT_FAMILIES)
    rng = np.random.default_rng(0)
    for key in wp.LEXICON:
        for family in wp.FAMILIES:
            for _ in range(6):
                template = wp.frame(rng, key, family)
                assert "{vp" not in template and "{subj}" not in template and "{ing}" not in template, template
                text = template.format(**SLOTS)
                assert "{" not in text and "  " not in text, (key, family, text)


def test_held_out_families_differ_in_form_from_training_ones():
    training_frames = {f for frames in wp.TRAINING_FAMILIES.values() for f in frames}
    assert not training_frames & {f for frames in wp.HELDOUT_FAMILIES.values() for f in frames}
    for key, lex in wp.LEXICON.items():
        training_verbs = {vp.split(" ")[0] for vp in lex.vp}
        held_verbs = {vp.split(" ")[0] for vp in lex.vp_held}
        assert held_verbs - training_verbs, key  # verbs no training family uses
        assert not set(lex.vp) & set(lex.vp_held), key


@pytest.mark.parametrize("mode, allowed", [("train", "train"), ("mixed", "train"), ("heldout", "heldout")])
def test_modes_draw_only_their_split(mode, allowed):
    families = set()
    for i in range(300):
        rec = samples.record(555, i, 32, phrasing=mode)
        family = rec.edit["phrasing"]
        families.add(family)
        assert rec.edit["held_out"] == (allowed == "heldout")
        if family != "template":
            assert wp.family_mode(family) == allowed
    expected = set(wp.HELDOUT_FAMILIES if allowed == "heldout" else wp.TRAINING_FAMILIES)
    assert expected <= families  # every family of the split is drawn
    assert ("template" in families) == (mode == "mixed")


def _words(text: str) -> str:
    return " " + re.sub(r"[^a-z ]", " ", text.lower().replace("grey", "gray").replace("centre", "center")) + " "


def test_reworded_records_keep_images_edit_and_deciding_words():
    for i in range(200):
        plain = samples.record(777, i, 32)
        for mode in ("train", "heldout"):
            rec = samples.record(777, i, 32, phrasing=mode)
            assert np.array_equal(rec.src, plain.src) and np.array_equal(rec.tgt, plain.tgt)
            assert rec.edit["template"] == plain.edit["template"] and rec.edit["target"] == plain.edit["target"]
            text, new = _words(rec.instruction), rec.edit["new"] or {}
            for word in (new.get("color"), new.get("shape")):
                assert word is None or f" {word} " in text, (rec.instruction, word)
            if rec.category == "background":
                for c in new["background"]["colors"][: 1 if new["background"]["kind"] == "flat" else 2]:
                    assert f" {c} " in text, rec.instruction
            if rec.edit["ref"] is not None:  # the reference survives whole (maybe lengthened), never misspelt
                core = rec.edit["ref"].split(" ", 1)[1]
                assert all(f" {w} " in text for w in core.split()), (rec.instruction, rec.edit["ref"])
    assert samples.record(777, 3, 32, phrasing="templates").instruction == samples.record(777, 3, 32).instruction


def test_unknown_phrasing_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="heldout"):
        samples.record(1, 1, 32, phrasing="pirate")
    with pytest.raises(ValueError, match="unknown phrasing family"):
        wp.phrase(np.random.default_rng(0), SLOTS, "remove", "templates")


def test_gerunds():
    assert [wp.gerund(v) for v in ("make it", "get rid of it", "dye it", "swap it", "add it", "tie it")] == [
        "making it",
        "getting rid of it",
        "dyeing it",
        "swapping it",
        "adding it",
        "tying it",
    ]


def test_long_references_only_add_what_is_true():
    small_top = Obj("circle", "blue", 0.5, 0.15, 0.07)
    big_left = Obj("star", "red", 0.2, 0.5, 0.16)
    middling = Obj("heart", "green", 0.35, 0.5, 0.12)  # between cells and sizes: nothing to add
    assert (wp.size_word(small_top), wp.place_phrase(small_top)) == ("small", "near the top")
    assert (wp.size_word(big_left), wp.place_phrase(big_left)) == ("big", "on the left")
    assert (wp.size_word(middling), wp.place_phrase(middling)) == (None, None)
    refs = {wp.lengthen(np.random.default_rng(s), "the blue circle", "color_shape", small_top) for s in range(40)}
    longest = "the small blue circle near the top"
    allowed = {"the blue circle", "the small blue circle", "the blue circle near the top", longest}
    assert longest in refs and refs <= allowed
    assert {wp.lengthen(np.random.default_rng(s), "the heart", "shape", middling) for s in range(20)} == {"the heart"}


def test_typos_never_touch_slots():
    rng = np.random.default_rng(0)
    for _ in range(200):
        template = wp._typo(rng, "please make {ref} {color} right now")
        assert "{ref} {color}" in template

"""Sampler: the step generator's contract on a mock model, and reference_compatible against chained reference steps.

The reference step's bit-exact parity with the reference fixtures is in test_reference_sampler.py.
"""

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from editmgt_core.sampler.consolidate import adaptive_filter, attention_scores, map_grid, min_max, upsample
from editmgt_core.sampler.hold import combine_hold, focus, grow_map
from editmgt_core.sampler.reference_sampler import reference_step
from editmgt_core.sampler.sampling import SamplerOptions, sample, sample_to_end
from editmgt_core.sampler.schedule import mask_len, temperatures

# ---- a mock model ------------------------------------------------------------------------------------------------

K, MASK, TEXT = 16, 16, 6


def mock_model(seed=0, calls=None, stride=2):
    """Deterministic random logits per (timestep, row); maps with an attention bump in the top-left quarter.

    stride: the model's token downsample (2 published; 1 = attention on the full token grid)."""

    def logits_fn(tokens, timestep, capture):
        n, h, w = tokens.shape
        g = torch.Generator().manual_seed(seed * 1000 + timestep)
        logits = 2.0 * torch.randn(n, K, h, w, generator=g) + 0.1 * (tokens[:, None] % K)
        if calls is not None:
            calls.append((tokens.clone(), timestep, capture))
        if not capture:
            return logits, {}
        gh, gw = h // stride, w // stride
        y, x = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
        bump = torch.exp(-((y - gh / 4) ** 2 + (x - gw / 4) ** 2) / (0.02 * gh * gw)).flatten()
        maps = {L: 1e-3 * torch.rand(n, 2, TEXT, gh * gw, generator=g) + 1e-2 * bump for L in (7, 8)}
        return logits, maps

    return logits_fn


def make_src(b, h, w, seed=123):
    return torch.randint(0, K, (b, h, w), generator=torch.Generator().manual_seed(seed))


def run(options, src, **kwargs):
    weights = torch.ones(src.shape[0], TEXT)
    return list(sample(kwargs.pop("fn", mock_model()), src, options, mask_id=MASK, text_weights=weights, **kwargs))


OPTS = SamplerOptions(steps=6, seed=0)


def test_last_step_commits_everything_and_reveals_each_token_once():
    src = make_src(2, 8, 8)
    records = run(OPTS, src)
    assert [r.step for r in records] == list(range(6)) and all(r.num_steps == 6 for r in records)
    final = records[-1].tokens
    assert not (final == MASK).any() and final.min() >= 0 and final.max() < K
    revealed = torch.stack([r.revealed for r in records])
    assert torch.equal(revealed.sum(0), torch.ones_like(src))  # each position decided exactly once
    for before, after in zip(records, records[1:], strict=False):
        kept = before.tokens != MASK
        assert torch.equal(after.tokens[kept], before.tokens[kept])  # decided tokens never change
    assert all(r.scores is None and r.hold is None and r.held_fraction == 0.0 for r in records)
    assert records[0].confidence.shape == src.shape and 0 < records[0].confidence.min() <= 1


@pytest.mark.parametrize("steps, grid", [(6, (8, 8)), (12, (16, 16)), (5, (6, 10)), (1, (4, 4))])
def test_masked_count_follows_cosine_schedule_exactly(steps, grid):
    records = run(dataclasses.replace(OPTS, steps=steps), make_src(2, *grid))
    previous = grid[0] * grid[1]
    for k, r in enumerate(records):
        want = 0 if k == steps - 1 else max(1, min(previous - 1, mask_len(k, steps, grid[0] * grid[1])))
        assert (r.tokens == MASK).sum(dim=(1, 2)).tolist() == [want, want]
        previous = want


def test_seed_reproducible_and_different_seeds_differ():
    src = make_src(1, 8, 8)
    a, b = (sample_to_end(mock_model(), src, OPTS, mask_id=MASK) for _ in range(2))
    c = sample_to_end(mock_model(), src, dataclasses.replace(OPTS, seed=1), mask_id=MASK)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_held_tokens_equal_src_and_never_change():
    src = make_src(2, 8, 8)
    records = run(dataclasses.replace(OPTS, lam=0.5), src)
    held = torch.zeros_like(src, dtype=torch.bool)
    for r in records:
        assert r.scores.shape == src.shape and r.scores.min() >= 0 and r.scores.max() <= 1
        assert (r.hold | ~held).all()  # monotone: once held, held for good
        assert torch.equal(r.tokens[r.hold], src[r.hold])
        held = r.hold
    assert 0 < records[-1].held_fraction < 1 and records[-1].held_fraction == held.float().mean().item()
    assert records[0].hold.any(dim=(1, 2)).all()  # both rows hold something from step 0


def test_map_on_the_full_token_grid_for_a_model_without_downsample():
    src = make_src(2, 8, 8)
    records = run(dataclasses.replace(OPTS, lam=0.5), src, fn=mock_model(stride=1))
    for r in records:
        assert r.scores.shape == src.shape and torch.equal(r.tokens[r.hold], src[r.hold])
    top_left = records[0].scores[:, :4, :4].mean()
    assert top_left > records[0].scores[:, 4:, 4:].mean()  # the bump is where the maps put it, not upsampled away
    assert map_grid({7: torch.zeros(1, 2, TEXT, 64)}, 8, 8) == (8, 8)
    assert map_grid({7: torch.zeros(1, 2, TEXT, 16)}, 8, 8) == (4, 4)
    with pytest.raises(ValueError, match="image keys"):
        map_grid({7: torch.zeros(1, 2, TEXT, 20)}, 8, 8)


def test_grow_frees_a_band_around_the_maps_region():
    scores = torch.zeros(1, 6, 6)
    scores[0, 2, 3] = 0.9
    grown = grow_map(scores, 1)
    assert torch.equal(grown[0] > 0.5, torch.nn.functional.pad(torch.ones(3, 3), (2, 1, 1, 2)).bool())
    assert torch.equal(grow_map(scores, 0), scores)
    assert (grow_map(scores, 9) == 0.9).all()  # larger than the grid: every token sees the peak
    src = make_src(2, 8, 8)
    plain = run(dataclasses.replace(OPTS, lam=0.5), src)
    grown_run = run(dataclasses.replace(OPTS, lam=0.5, grow=1), src)
    assert torch.equal(grown_run[0].scores, plain[0].scores)  # the map as made; held by its grown version
    held, held_grown = plain[-1].hold, grown_run[-1].hold
    assert held_grown.sum() < held.sum() and not (held_grown & ~held).any()  # a subset: grow only frees tokens
    assert torch.equal(grown_run[-1].tokens[held_grown], src[held_grown])
    with pytest.raises(ValueError, match="grow"):
        run(dataclasses.replace(OPTS, lam=0.5, grow=1, reference_compatible=True), src)


def test_token_temperature_sharpens_the_draw():
    src = make_src(2, 8, 8)
    masked = torch.full_like(src, MASK)
    argmax = mock_model()(masked, 0, False)[0].argmax(1)  # steps=1: one draw at timestep 0 commits every token
    one_step = dataclasses.replace(OPTS, steps=1, guidance_scale=1.0)  # unguided: those logits are the draw's
    agree = lambda t: (run(dataclasses.replace(one_step, token_temperature=t), src)[-1].tokens == argmax).float().mean()
    assert agree(1e-3) == 1  # the draw becomes the argmax
    assert agree(1.0) < agree(0.5) < agree(0.1) < 1  # 1: the reference's draw from the softmax itself (0.48 here)
    with pytest.raises(ValueError, match="token_temperature"):
        SamplerOptions(token_temperature=0)
    with pytest.raises(ValueError, match="token_temperature"):
        run(dataclasses.replace(OPTS, token_temperature=0.5, reference_compatible=True), src)


def test_focus_gate_skips_the_hold_of_rows_that_attend_less_to_the_image():
    base = mock_model()

    def fn(tokens, timestep, capture):  # row 1 puts a third of row 0's attention on the image
        logits, maps = base(tokens, timestep, capture)
        scale = torch.tensor([1.0, 1 / 3] * (tokens.shape[0] // 2))[:, None, None, None]
        return logits, {layer: m * scale for layer, m in maps.items()}

    src = make_src(2, 8, 8)
    plain = run(dataclasses.replace(OPTS, lam=0.5), src, fn=fn)
    f = plain[0].focus
    masked = torch.full((4, 8, 8), MASK)  # the first step's guidance pair; its conditional half made the map
    cond = {layer: m.chunk(2)[1] for layer, m in fn(masked, OPTS.steps - 1, True)[1].items()}
    assert torch.allclose(f, focus(cond, torch.ones(2, TEXT)))
    assert 2.5 < f[0] / f[1] < 3.5 and plain[0].gated is None  # (the random part of the maps differs per row)
    gate = float(f.mean())
    gated = run(dataclasses.replace(OPTS, lam=0.5, focus_gate=gate), src, fn=fn)
    assert gated[-1].gated.tolist() == [False, True] and torch.equal(gated[-1].focus, f)
    assert torch.equal(gated[-1].hold[0], plain[-1].hold[0]) and plain[-1].hold[1].any()
    assert not gated[-1].hold[1].any() and torch.equal(gated[0].scores, plain[0].scores)  # row 1: nothing held
    brush = torch.zeros(2, 8, 8, dtype=torch.bool)
    brush[:, :, :4] = True
    painted = run(
        dataclasses.replace(OPTS, lam=0.5, focus_gate=gate, mask_mode="intersection"), src, fn=fn, user_mask=brush
    )
    assert torch.equal(painted[-1].hold[1], ~brush[1])  # a gated row still keeps the brush's protected tokens
    with pytest.raises(ValueError, match="focus_gate"):
        run(dataclasses.replace(OPTS, lam=0.5, focus_gate=0.1, reference_compatible=True), src)


def test_source_maps_join_the_map_but_not_the_focus():
    """Captured 's<i>' maps are averaged into the map like any block, and left out of the instruction focus."""
    base = mock_model()

    def fn(tokens, timestep, capture):  # a source map on the right half (the mock's target maps: top left)
        logits, maps = base(tokens, timestep, capture)
        if not capture:
            return logits, maps
        right = torch.zeros_like(maps[7]).view(*maps[7].shape[:-1], 4, 4)
        right[..., 2:] = 0.05
        return logits, {**maps, "s0": right.flatten(-2)}

    src = make_src(1, 8, 8)
    both = run(dataclasses.replace(OPTS, lam=0.3), src, fn=fn)
    target_only = run(dataclasses.replace(OPTS, lam=0.3), src)
    assert torch.equal(both[0].focus, target_only[0].focus)
    assert not torch.equal(both[0].scores, target_only[0].scores)
    side = lambda r, cols: r[0].scores[0, :, cols].mean()
    assert side(target_only, slice(0, 3)) > side(target_only, slice(5, 8))
    assert side(both, slice(5, 8)) > side(both, slice(0, 3))  # the map now leans to where the source map points
    assert focus({1: torch.ones(1, 2, TEXT, 16) / 32, "s0": torch.ones(1, 2, TEXT, 16)}, torch.ones(1, TEXT)) == 0.5
    with pytest.raises(ValueError, match="source-image maps"):
        run(dataclasses.replace(OPTS, layers=(1, "s0"), reference_compatible=True), src)


def test_layers_from_text():
    from editmgt_core.model.entries import from_text as layers_from_text

    assert layers_from_text("28-30, 5") == (28, 29, 30, 5)
    assert layers_from_text("5,s0, s2-3 ,5") == (5, "s0", "s2", "s3")
    for bad in ("", "5,", "a", "3-1", "s", "s-1", "5;6"):
        with pytest.raises(ValueError, match="attention layers"):
            layers_from_text(bad)


def test_show_map_makes_the_map_at_lam_zero_and_changes_no_token():
    src = make_src(2, 8, 8)
    plain = run(OPTS, src)
    shown = run(OPTS, src, show_map=True)
    assert all(r.scores is None for r in plain) and all(r.scores is not None and r.hold is None for r in shown)
    assert all(torch.equal(a.tokens, b.tokens) for a, b in zip(plain, shown, strict=True))
    assert shown[0].focus is not None and shown[-1].held_fraction == 0.0


def test_lam_one_holds_everything():
    src = make_src(2, 8, 8)
    records = run(dataclasses.replace(OPTS, lam=1.0), src)
    assert records[0].held_fraction == 1.0
    assert torch.equal(records[-1].tokens, src)


def test_gamma_zero_and_lam_zero_paths_run_without_capture():
    calls = []
    src = make_src(1, 8, 8)
    records = run(SamplerOptions(steps=4, seed=3, gamma=0.0, lam=0.0), src, fn=mock_model(calls=calls))
    assert len(records) == 4 and not any(capture for _, _, capture in calls)
    assert [t for _, t, _ in calls] == [3, 2, 1, 0]


def test_guidance_stacks_uncond_then_cond_and_uses_cond_maps():
    g = 4.0
    src = make_src(2, 8, 8)
    calls = []
    guided = run(dataclasses.replace(OPTS, guidance_scale=g, lam=0.4), src, fn=mock_model(calls=calls))
    tokens, _, capture = calls[0]
    assert tokens.shape[0] == 4 and torch.equal(tokens[:2], tokens[2:]) and capture

    def combined(tokens, timestep, capture):  # the CFG done by hand on the [uncond, cond] rows
        logits, maps = mock_model()(torch.cat([tokens, tokens]), timestep, capture)
        uncond, cond = logits.chunk(2)
        return uncond + g * (cond - uncond), {k: v.chunk(2)[1] for k, v in maps.items()}

    by_hand = run(dataclasses.replace(OPTS, guidance_scale=1.0, lam=0.4), src, fn=combined)
    for a, b in zip(guided, by_hand, strict=True):
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.hold, b.hold)


def test_guidance_off_batch_with_hold():
    calls = []
    src = make_src(3, 8, 8)
    for ref in (False, True):  # the reference crashes here (chunk(2) of the maps); we use the rows as they are
        options = SamplerOptions(steps=5, seed=2, guidance_scale=1.0, lam=0.3, reference_compatible=ref)
        records = run(options, src, fn=mock_model(calls=calls))
        assert not (records[-1].tokens == MASK).any()
        assert all(tokens.shape[0] == 3 for tokens, _, _ in calls)


def test_user_mask_modes():
    src = make_src(2, 8, 8)
    brush = torch.zeros(2, 8, 8, dtype=torch.bool)
    brush[:, :, 4:] = True  # right half editable
    calls = []
    replace = run(dataclasses.replace(OPTS, mask_mode="replace"), src, user_mask=brush, fn=mock_model(calls=calls))
    assert not any(capture for _, _, capture in calls)  # the brush alone needs no attention map
    assert torch.equal(replace[0].hold, ~brush) and torch.equal(replace[-1].tokens[~brush], src[~brush])
    assert not (replace[-1].tokens[brush] == src[brush]).all()

    lam = 0.5
    union = run(dataclasses.replace(OPTS, lam=lam, mask_mode="union"), src, user_mask=brush)
    inter = run(dataclasses.replace(OPTS, lam=lam, mask_mode="intersection"), src, user_mask=brush)
    attention = run(dataclasses.replace(OPTS, lam=lam), src)[0].scores  # same seed and model: same step-0 map
    low = attention < lam
    assert torch.equal(union[0].hold, low & ~brush)
    assert torch.equal(inter[0].hold, low | ~brush)
    assert torch.equal(union[0].scores, combine_hold(attention, brush, "union"))
    no_lam = run(dataclasses.replace(OPTS, mask_mode="intersection"), src, user_mask=brush)
    assert torch.equal(no_lam[0].hold, ~brush)  # lam 0: the map holds nothing, the brush still protects
    assert not run(dataclasses.replace(OPTS, mask_mode="union"), src, user_mask=brush)[-1].hold.any()


def chain_reference(fn, src, options, weights):
    """The reference pipeline's loop, written out with reference_step (CFG pair, consolidation, one generator)."""
    b, h, w = src.shape
    n, g = options.steps, options.guidance_scale
    temps = temperatures(options.temperature, n)
    generator = torch.Generator().manual_seed(options.seed)
    tokens, states = torch.full_like(src, MASK), []
    for i in range(n):
        logits, maps = fn(torch.cat([tokens, tokens]), n - 1 - i, True)
        uncond, cond = logits.chunk(2)
        logits = uncond + g * (cond - uncond)
        local = attention_scores({k: v.chunk(2)[1] for k, v in maps.items()}, weights)
        scores = adaptive_filter(min_max(local).view(b, h // 2, w // 2))
        scores = scores.flatten(1) if h * w == 4096 else upsample(scores, (h, w)).flatten(1)
        kwargs = dict(mask_id=MASK, temperatures=temps, lam=options.lam, scores=scores, src=src)
        tokens, _ = reference_step(logits, i, n, tokens, generator, **kwargs)
        states.append(tokens)
    return states


@pytest.mark.parametrize("grid", [(64, 64), (8, 12)])
def test_reference_compatible_equals_chained_reference_steps(grid):
    src = make_src(1, *grid)
    options = SamplerOptions(steps=4, seed=5, guidance_scale=3.0, lam=0.3, reference_compatible=True)
    records = run(options, src)
    states = chain_reference(mock_model(), src, options, torch.ones(1, TEXT))
    for r, state in zip(records, states, strict=True):
        assert torch.equal(r.tokens, state)
    assert records[-1].hold.any()


def test_normal_mode_without_hold_equals_reference_mode():
    src = make_src(2, 8, 8)
    normal = run(OPTS, src)
    ref = run(dataclasses.replace(OPTS, reference_compatible=True), src)
    for a, b in zip(normal, ref, strict=True):
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.revealed, b.revealed)
        assert_close(a.confidence, b.confidence, rtol=0, atol=0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("steps", 0),
        ("guidance_scale", -1.0),
        ("gamma", float("nan")),
        ("lam", 1.5),
        ("keywords", ["owl"]),
        ("keywords", ("",)),
        ("temperature", (1.0,)),
        ("temperature", -0.1),
        ("seed", -1),
        ("layers", ()),
        ("layers", (3, 3)),
        ("layers", ("s0",)),  # a source map needs a target block beside it (the focus reads those)
        ("layers", (3, "x3")),
        ("layers", (3, True)),
        ("layers", (3, "s0", "s0")),
        ("negative_prompt", None),
        ("mask_mode", "xor"),
        ("grow", -1),
        ("grow", 1.5),
        ("focus_gate", 1.5),
        ("focus_gate", float("nan")),
        ("keep_pixels", 1),
        ("reference_compatible", 1),
    ],
)
def test_options_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SamplerOptions(**{field: value})


def test_defaults_are_the_published_demo():
    o = SamplerOptions()
    assert (o.steps, o.guidance_scale, o.gamma, o.lam, o.temperature) == (36, 6.0, 1.1, 0.0, (2.0, 0.0))
    assert o.seed is None and o.layers is None and o.keywords == () and not o.reference_compatible
    assert o.negative_prompt.startswith("worst quality")


def test_sample_input_errors():
    src = make_src(1, 8, 8)
    with pytest.raises(ValueError, match="text_weights"):
        list(sample(mock_model(), src, dataclasses.replace(OPTS, lam=0.2), mask_id=MASK))
    with pytest.raises(ValueError, match="reference"):
        brush = torch.ones(1, 8, 8, dtype=torch.bool)
        list(
            sample(
                mock_model(), src, dataclasses.replace(OPTS, reference_compatible=True), mask_id=MASK, user_mask=brush
            )
        )
    no_maps = lambda tokens, t, capture: (mock_model()(tokens, t, False)[0], {})
    with pytest.raises(ValueError, match="no attention maps"):
        run(dataclasses.replace(OPTS, lam=0.2), src, fn=no_maps)
    with pytest.raises(ValueError, match="int64"):
        list(sample(mock_model(), src.float(), OPTS, mask_id=MASK))


def test_predicted_change_map_is_made_from_the_first_steps_logits_and_kept():
    """'change': the map is 1 - p(source token) of the instruction's row at the first step (blurred), kept for every
    step; the model is asked for no attention, and the hold keeps what the model was sure to leave alone."""
    src = make_src(1, 8, 8)
    calls = []

    def fn(tokens, timestep, capture):  # the instruction row is sure of the source token on the right half only
        calls.append(capture)
        n = tokens.shape[0]
        logits = torch.zeros(n, K, 8, 8)
        sure = torch.nn.functional.one_hot(src, K).permute(0, 3, 1, 2).float() * 12.0  # (1, K, 8, 8)
        logits[-1:, :, :, 4:] = sure[:, :, :, 4:]
        logits[:-1] = 0.5 * sure  # the negative prompt's row: mildly sure everywhere
        return logits, {}

    opts = dataclasses.replace(OPTS, layers=("change",), lam=0.5, guidance_scale=2.0)
    records = run(opts, src, fn=fn)
    assert calls and not any(calls)  # no attention was asked for
    scores = records[0].scores[0]
    assert scores[:, :2].min() > 0.85 and scores[:, 6:].max() < 0.15  # left: about to change; right: not (blurred)
    assert all(torch.equal(r.scores, records[0].scores) for r in records)  # the first step's map, kept
    held = records[-1].hold[0]
    assert held[:, 6:].all() and not held[:, :2].any()
    assert torch.equal(records[-1].tokens[0][:, 6:], src[0][:, 6:])
    assert records[0].focus is None and records[0].gated is None  # no instruction -> target map: no focus


def test_logit_and_attention_maps_mix_and_kl_needs_guidance():
    src = make_src(1, 8, 8)
    both = run(dataclasses.replace(OPTS, layers=(7, "change"), lam=0.3), src)
    attention = run(dataclasses.replace(OPTS, layers=(7,), lam=0.3), src)
    assert both[0].focus is not None and torch.equal(both[0].focus, attention[0].focus)
    assert not torch.equal(both[0].scores, attention[0].scores)
    assert both[0].scores.min() >= 0 and both[0].scores.max() <= 1
    run(dataclasses.replace(OPTS, layers=("kl",), lam=0.3, guidance_scale=3.0), src)
    with pytest.raises(ValueError, match="needs guidance"):
        run(dataclasses.replace(OPTS, layers=("kl",), lam=0.3, guidance_scale=1.0), src)
    for layers in (("change",), (7, "r7"), ("7:h1",)):
        with pytest.raises(ValueError, match="reference_compatible"):
            run(dataclasses.replace(OPTS, layers=layers, lam=0.3, reference_compatible=True), src)

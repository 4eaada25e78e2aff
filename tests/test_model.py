"""Behaviour of the transformer beyond the reference cases: γ, capture, statelessness, dtypes, bad input."""

import json
from pathlib import Path

import pytest
import torch

from editmgt_core.model.config import PRESETS, TransformerConfig
from editmgt_core.model.layers import AdaNorm
from editmgt_core.model.transformer import EditMGTTransformer

REFERENCE = Path(__file__).parent / "fixtures" / "reference"


def random_model(config=PRESETS["tiny"], seed=0):
    torch.manual_seed(seed)
    model = EditMGTTransformer(config).eval()
    with torch.no_grad():  # no layer is zero or identity, as in the reference cases
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def random_inputs(config, b=2, h=8, w=8, t=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, config.codebook_size, (b, h, w), generator=g)
    tokens[:, ::2] = config.mask_id
    return dict(
        tokens=tokens,
        txt=torch.randn(b, t, config.joint_attention_dim, generator=g),
        pooled=torch.randn(b, config.pooled_projection_dim, generator=g),
        micro=torch.tensor([[64.0, 64.0, 0, 0, 6.0]]).repeat(b, 1),
        timestep=torch.full((b,), 5),
        cond=torch.randint(0, config.codebook_size, (b, h, w), generator=g),
    )


@pytest.fixture(scope="module")
def model():
    return random_model()


@pytest.fixture(scope="module")
def inputs():
    return random_inputs(PRESETS["tiny"])


@torch.inference_mode()
def test_gamma_zero_cuts_the_condition_off(model, inputs):
    without = model(**{**inputs, "cond": None})[0]
    zero = model(**inputs, gamma=0.0)[0]
    assert torch.isfinite(zero).all()
    torch.testing.assert_close(zero, without)
    assert not torch.allclose(model(**inputs, gamma=1.0)[0], without, atol=1e-4)


@torch.inference_mode()
def test_gamma_changes_output_monotonically_away_from_one(model, inputs):
    base = model(**inputs, gamma=1.0)[0]
    near = (model(**inputs, gamma=1.1)[0] - base).abs().mean()
    far = (model(**inputs, gamma=2.0)[0] - base).abs().mean()
    assert 0 < near < far


@torch.inference_mode()
def test_capture_changes_nothing_and_leaves_no_state(model, inputs):
    plain, none = model(**inputs, gamma=1.1)
    assert none == {}
    captured, maps = model(**inputs, gamma=1.1, capture=[0, 3])
    torch.testing.assert_close(captured, plain, atol=0, rtol=0)
    assert sorted(maps) == [0, 3]
    assert maps[3].shape == (2, 2, 12, 16)  # [B, heads, T, (H/2)(W/2)]
    assert (maps[3] >= 0).all() and (maps[3].sum(-1) <= 1 + 1e-6).all()
    again, maps_again = model(**inputs, gamma=1.1)  # γ and capture were arguments, not module state
    torch.testing.assert_close(again, plain, atol=0, rtol=0)
    assert maps_again == {}


def test_source_probs_mirror_the_target_capture():
    """Instruction -> source attention is the reference's instruction -> target capture with the two image streams'
    keys swapped: the target keys leave the softmax, the source (condition) keys take their place."""
    from editmgt_core.model.math import text_to_image_probs, text_to_source_probs

    g = torch.Generator().manual_seed(3)
    n_txt, n_img = 5, 6
    q, k = torch.randn(2, 3, n_txt + 2 * n_img, 8, generator=g), torch.randn(2, 3, n_txt + 2 * n_img, 8, generator=g)
    swapped = torch.cat([k[:, :, :n_txt], k[:, :, n_txt + n_img :], k[:, :, n_txt : n_txt + n_img]], dim=2)
    got = text_to_source_probs(q, k, n_txt, n_img)
    assert got.shape == (2, 3, n_txt, n_img)
    torch.testing.assert_close(got, text_to_image_probs(q, swapped, n_txt, n_img))
    assert not torch.allclose(got, text_to_image_probs(q, k, n_txt, n_img))


@torch.inference_mode()
def test_source_maps_read_the_source_not_the_target(model, inputs):
    """'s<i>' entries capture block i's instruction -> source map next to (not instead of) the target map. In block 0
    the text and source streams have not met the target yet: its source map ignores the target tokens and follows
    the source tokens, while its target map follows the target tokens."""
    last = model.config.depth - 1
    plain, target_only = model(**inputs, gamma=1.1, capture=[0, last])
    logits, maps = model(**inputs, gamma=1.1, capture=[0, "s0", last, f"s{last}"])
    torch.testing.assert_close(logits, plain, atol=0, rtol=0)
    assert list(maps) == [0, "s0", last, f"s{last}"]
    for i in (0, last):
        torch.testing.assert_close(maps[i], target_only[i], atol=0, rtol=0)
        assert maps[f"s{i}"].shape == maps[i].shape and (maps[f"s{i}"].sum(-1) <= 1 + 1e-6).all()
    other_target = {**inputs, "tokens": torch.flip(inputs["tokens"], dims=[2])}
    _, moved = model(**other_target, gamma=1.1, capture=[0, "s0"])
    torch.testing.assert_close(moved["s0"], maps["s0"])
    assert not torch.allclose(moved[0], maps[0], atol=1e-4)
    other_source = {**inputs, "cond": torch.flip(inputs["cond"], dims=[2])}
    assert not torch.allclose(model(**other_source, gamma=1.1, capture=["s0"])[1]["s0"], maps["s0"], atol=1e-4)


@torch.inference_mode()
@pytest.mark.parametrize("entry", ["x1", "s", "s-1", True, 1.5, "0"])
def test_bad_capture_entries_are_refused(model, inputs, entry):
    with pytest.raises(ValueError, match="capture entry"):
        model(**inputs, capture=[entry])


@torch.inference_mode()
def test_source_maps_need_the_source_stream(model, inputs):
    with pytest.raises(ValueError, match="condition stream"):
        model(**{**inputs, "cond": None}, capture=["s1"])
    with pytest.raises(ValueError, match="condition stream"):
        model(**inputs, gamma=0.0, capture=[0, "s1"])
    with pytest.raises(ValueError, match="out of range"):
        model(**inputs, capture=[f"s{model.config.depth}"])


def test_inference_shortcuts_equal_the_autograd_path(model, inputs):
    """Without autograd the blocks write into shared buffers, run GELU in place, and the last block computes only
    the image rows' outputs; with autograd (training) they take the plain path. Both must give the same logits."""
    with torch.enable_grad():
        train_path = model(**inputs, gamma=1.1)[0].detach()
    with torch.inference_mode():
        fast = model(**inputs, gamma=1.1)[0]
        last = model.config.depth - 1
        full_last_block = model(**inputs, gamma=1.1, capture=[last])[0]  # capture keeps the last block whole
    torch.testing.assert_close(fast, train_path, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast, full_last_block, atol=1e-5, rtol=1e-5)


def test_rope_leaves_text_rows_untouched():
    from editmgt_core.model.math import apply_rope, grid_ids, rope

    ids = torch.cat([torch.zeros(5, 3), grid_ids(3, 4)])
    x = torch.randn(2, 3, len(ids), 16)
    out = apply_rope(x, rope(ids, (4, 6, 6)))
    assert torch.equal(out[:, :, :5], x[:, :, :5])  # id 0: rotation by exactly 0
    assert not torch.allclose(out[:, :, 6:], x[:, :, 6:])
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))  # a rotation keeps lengths


@torch.inference_mode()
def test_batch_rows_are_independent(model, inputs):
    both = model(**inputs, gamma=1.3, capture=[2])
    first = model(**{k: v[:1] for k, v in inputs.items()}, gamma=1.3, capture=[2])
    torch.testing.assert_close(both[0][:1], first[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(both[1][2][:1], first[1][2], atol=1e-6, rtol=1e-4)


@torch.inference_mode()
def test_non_square_grid_and_text_length(model):
    x = random_inputs(PRESETS["tiny"], b=1, h=6, w=12, t=5)
    logits, maps = model(**x, capture=[1])
    assert logits.shape == (1, 64, 6, 12)
    assert maps[1].shape == (1, 2, 5, 18)


@torch.inference_mode()
def test_bf16_stays_close_to_fp32(model, inputs):
    ref = model(**inputs, gamma=1.1)[0]
    half = random_model().to(torch.bfloat16)
    out = half(**{k: (v.bfloat16() if v.is_floating_point() else v) for k, v in inputs.items()}, gamma=1.1)[0]
    assert out.dtype == torch.bfloat16
    # measured: max |diff| 0.045, mean 0.0067 on logits of mean magnitude 0.70 (weight rounding alone: 0.033 / 0.004)
    err = (out.float() - ref).abs()
    assert err.mean() < 0.03 * ref.abs().mean(), err.mean()
    assert err.max() < 0.05 * ref.abs().max(), err.max()
    # the decision that matters for sampling: the argmax token agrees almost everywhere
    assert (out.float().argmax(1) == ref.argmax(1)).float().mean() > 0.95


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(tokens=torch.zeros(2, 7, 8, dtype=torch.long)), "even"),
        (dict(tokens=torch.zeros(2, 8, 8, 1, dtype=torch.long)), r"\[B, H, W\]"),
        (dict(cond=torch.zeros(2, 8, 6, dtype=torch.long)), "cond shape"),
    ],
)
def test_bad_shapes_raise(model, inputs, change, message):
    with pytest.raises(ValueError, match=message):
        model(**{**inputs, **change})


def test_bad_gamma_and_capture_raise(model, inputs):
    with pytest.raises(ValueError, match="gamma"):
        model(**inputs, gamma=-0.5)
    with pytest.raises(ValueError, match=r"capture layers \[4\]"):
        model(**inputs, capture=[4])


@pytest.mark.parametrize("name, preset", [("editmgt", "editmgt"), ("meissonic", "meissonic")])
def test_published_key_inventory(name, preset):
    """State-dict keys, shapes and parameter count equal the reference inventory (built on the meta device)."""
    inventory = json.loads((REFERENCE.parent / f"{name}_transformer_keys.json").read_text())
    config = TransformerConfig.from_dict(inventory["config"])
    assert config == PRESETS[preset]
    with torch.device("meta"):
        model = EditMGTTransformer(config)
    ours = {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}
    theirs = {k: (shape, dtype) for k, shape, dtype in inventory["keys"]}
    assert ours == theirs
    assert sum(p.numel() for p in model.parameters()) == inventory["num_parameters"]


def test_config_round_trip_and_errors(caplog):
    config = PRESETS["editmgt"]
    assert TransformerConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with caplog.at_level("WARNING", logger="editmgt.model"):  # the reference's loader warns and ignores them too
        assert TransformerConfig.from_dict({**config.to_dict(), "num_blocks": 3, "sample_size": 64}) == config
    assert [r.getMessage() for r in caplog.records] == [
        "transformer config keys ['num_blocks', 'sample_size'] are not used by this architecture and are ignored"
    ]
    with pytest.raises(ValueError, match="axes_dims_rope"):
        TransformerConfig(head_dim=64)
    with pytest.raises(ValueError, match="guidance_embeds"):
        TransformerConfig.from_dict({**config.to_dict(), "guidance_embeds": True})


# ---- image rows -> instruction maps, head selectors, chunking and memory -------------------------------------------


def test_row_maps_equal_the_full_softmax_in_any_chunking():
    from editmgt_core.model.math import rows_to_text_probs

    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 3, 30, 8, generator=g), torch.randn(2, 3, 30, 8, generator=g)
    bias = torch.zeros(30, 30)
    bias[:20, 20:], bias[20:, :20] = -0.4, -0.4  # a γ bias between main and cond rows
    full = ((q @ k.transpose(-1, -2)) * 8**-0.5 + bias).softmax(dim=-1)  # (2, 3, 30, 30)
    want = full[:, :, 5:20, :5].transpose(-1, -2)  # target rows 5..19 -> text keys 0..4
    for chunk in (1, 4, 7, 15, 100):
        got = rows_to_text_probs(q, k, 5, slice(5, 20), bias, chunk)
        torch.testing.assert_close(got, want)
        assert got.shape == (2, 3, 5, 15)
    torch.testing.assert_close(rows_to_text_probs(q, k, 5, slice(20, 30), bias, 3), full[:, :, 20:, :5].mT)


@torch.inference_mode()
def test_row_maps_and_head_selectors_from_the_model(model, inputs):
    _, maps = model(**inputs, capture=[1, "r1", "rs1", "rs2:h1", "2:h0", "s0"])
    b, t, i = 2, inputs["txt"].shape[1], (inputs["tokens"].shape[1] // 2) * (inputs["tokens"].shape[2] // 2)
    assert maps["r1"].shape == maps["rs1"].shape == (b, 2, t, i) and maps["rs2:h1"].shape == (b, 1, t, i)
    _, whole = model(**inputs, capture=[2, "rs2"])
    torch.testing.assert_close(maps["2:h0"], whole[2][:, :1])
    torch.testing.assert_close(maps["rs2:h1"], whole["rs2"][:, 1:])
    # each image row's mass on the text keys: a share of its softmax, so in [0, 1]; text-query maps are unaffected
    assert (maps["r1"].sum(dim=2) <= 1 + 1e-6).all() and (maps["r1"] > 0).all()
    torch.testing.assert_close(maps[1], model(**inputs, capture=[1])[1][1])
    with pytest.raises(ValueError, match="source-image maps"):
        model(**{**inputs, "cond": None}, capture=["rs1"])
    with pytest.raises(ValueError, match="out of range"):
        model(**inputs, capture=["r1:h2"])  # the tiny model has heads 0..1
    with pytest.raises(ValueError, match="logits"):
        model(**inputs, capture=["change"])


class PeakMemory(torch.utils._python_dispatch.TorchDispatchMode):
    """Peak bytes of the tensors ops create while it is active (storages counted once, released when the last
    tensor on them dies): what the code allocates, deterministically, whatever the allocator caches."""

    def __init__(self):
        super().__init__()
        self.refs, self.sizes, self.live, self.peak = {}, {}, 0, 0

    def _release(self, ptr):
        self.refs[ptr] -= 1
        if not self.refs[ptr]:
            del self.refs[ptr]
            self.live -= self.sizes.pop(ptr)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        import weakref

        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                ptr = t.untyped_storage().data_ptr()
                if ptr not in self.refs:
                    self.refs[ptr], self.sizes[ptr] = 0, t.untyped_storage().nbytes()
                    self.live += self.sizes[ptr]
                    self.peak = max(self.peak, self.live)
                self.refs[ptr] += 1
                weakref.finalize(t, self._release, ptr)
        return out


@torch.inference_mode()
def test_captured_step_at_a_64x64_token_grid_costs_little_memory(model):
    """Every direction of map captured at a 64x64 token grid (32x32 attention grid): the row maps are computed a
    chunk at a time, so the step's peak stays within 1.2x of the uncaptured step's."""
    x = random_inputs(PRESETS["tiny"], b=1, h=64, w=64, t=12)
    peaks = {}
    for name, capture in (("plain", []), ("captured", [1, "s0", "r1", "rs1", "rs2:h1"])):
        with PeakMemory() as meter:
            logits, maps = model(**x, capture=capture)
        peaks[name] = meter.peak
        del logits, maps
    assert peaks["plain"] > 0 and peaks["captured"] <= 1.2 * peaks["plain"], peaks
    # and without chunking the same capture would not fit: one full score matrix of the rows alone
    full_scores = 1 * 2 * 1024 * (12 + 2048) * 4  # (B, heads, image rows, keys) float32
    assert full_scores > 0.2 * peaks["plain"]


def test_initialize_weights_is_adaln_zero():
    """A fresh model for training: every block starts as the identity (modulation zero) and predicts uniformly."""
    config = PRESETS["tiny"]
    model = EditMGTTransformer(config).eval()
    model.initialize_weights()
    blocks = [*model.transformer_blocks, *model.single_transformer_blocks]
    assert all(
        not m.linear.weight.any() and not m.linear.bias.any()
        for b in blocks
        for m in b.modules()
        if isinstance(m, AdaNorm)
    )
    tokens = torch.randint(config.codebook_size, (1, 4, 4))
    txt, pooled = torch.randn(1, 3, config.joint_attention_dim), torch.randn(1, config.pooled_projection_dim)
    logits, _ = model(tokens, txt, pooled, torch.zeros(1, 5), torch.tensor([3]), tokens)
    assert not logits.any()

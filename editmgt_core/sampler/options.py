"""The sampler's options: one frozen record of every knob a run uses, checked when it is made."""

from __future__ import annotations

import math
from dataclasses import dataclass

from editmgt_core.model import entries
from editmgt_core.sampler.hold import MASK_MODES

# src/v2_model.py `negative_prompt`, which the published demo (infer.py) passes.
DEMO_NEGATIVE_PROMPT = (
    "worst quality, low quality, low res, blurry, distortion, watermark, logo, signature, text, jpeg artifacts, "
    "signature, sketch, duplicate, ugly, identifying mark"
)


@dataclass(frozen=True)
class SamplerOptions:
    """Sampler knobs; defaults are the published demo's (infer.py) and, where it is silent, the reference pipeline's.

    `sample` reads steps, guidance_scale, lam, grow, focus_gate, temperature, token_temperature, seed, mask_mode and
    reference_compatible; gamma, keywords, layers and negative_prompt are for whoever builds logits_fn and
    text_weights, keep_pixels for whoever decodes the result (the editing engine).
    """

    steps: int = 36  # decoding steps N; infer.py num_inference_steps=36 (Pipeline.__call__ default: 12)
    guidance_scale: float = 6.0  # CFG scale g, logits u + g(c - u); infer.py guidance_scale=6 (Pipeline default: 10)
    gamma: float = 1.1  # source-attention strength γ, for logits_fn; infer.py reference_strength=1.1; 1 = no bias
    lam: float = 0.0  # region-hold threshold λ in [0, 1]; Pipeline.local_guidance=0 (off), infer.py suggests 0.01
    keywords: tuple[str, ...] = ()  # words whose text rows form the map; Pipeline.local_query_text=None (all rows)
    temperature: float | tuple[float, float] = (2.0, 0.0)  # Gumbel scale of re-masking; Pipeline/set_timesteps (2, 0)
    token_temperature: float = 1.0  # tokens are drawn from softmax(logits / this); 1 = the reference's draw
    seed: int | None = None  # generator seed; None = fresh entropy (infer.py passes no generator)
    layers: tuple[int | str, ...] | None = None  # map entries (see entries); None = the model's (infer.py: 28..36)
    negative_prompt: str = DEMO_NEGATIVE_PROMPT  # unconditional text of the CFG pair; infer.py v2_model.negative_prompt
    mask_mode: str = "replace"  # brush mask with the map: 'union' | 'intersection' | 'replace' (not in the reference)
    grow: int = 0  # grow the map's edit region by this many tokens before holding (see grow_map; not in the reference)
    focus_gate: float = 0.0  # hold only rows whose instruction focus (see focus) reaches this; 0 = always (not in ref.)
    keep_pixels: bool = True  # unchanged tokens show the input's own pixels in the output (editing; not in the ref.)
    reference_compatible: bool = False  # every step exactly the reference's Scheduler.step (see sample)

    def __post_init__(self):
        def bad(name, allowed):
            raise ValueError(f"{name}={getattr(self, name)!r}; allowed: {allowed}")

        integer = lambda x: isinstance(x, int) and not isinstance(x, bool)
        number = lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
        if not integer(self.steps) or self.steps < 1:
            bad("steps", "an integer >= 1")
        if not number(self.guidance_scale) or self.guidance_scale < 0:
            bad("guidance_scale", "a finite number >= 0 (1 = no guidance)")
        if not number(self.gamma) or self.gamma < 0:
            bad("gamma", "a finite number >= 0 (1 = no bias)")
        if not number(self.lam) or not 0 <= self.lam <= 1:
            bad("lam", "[0, 1]")
        if not isinstance(self.keywords, tuple) or not all(isinstance(k, str) and k.strip() for k in self.keywords):
            bad("keywords", "a tuple of non-empty strings")
        t = self.temperature
        if not (number(t) and t >= 0 or isinstance(t, tuple) and len(t) == 2 and all(number(x) and x >= 0 for x in t)):
            bad("temperature", "a number >= 0 or a pair (start, end) of numbers >= 0")
        if not number(self.token_temperature) or self.token_temperature <= 0:
            bad("token_temperature", "a finite number > 0 (1 = the reference's draw; lower = more confident tokens)")
        if self.seed is not None and (not integer(self.seed) or not 0 <= self.seed < 2**64):
            bad("seed", "None or an integer in [0, 2**64)")
        if self.layers is not None and not entries.valid(self.layers):
            bad("layers", "None or a tuple of distinct map entries (block indices >= 0, 's<i>', 'r<i>', 'rs<i>', "
                "'change', 'kl'; see entries), at least one not read from the source stream alone")  # fmt: skip
        if not isinstance(self.negative_prompt, str):
            bad("negative_prompt", "a string")
        if self.mask_mode not in MASK_MODES:
            bad("mask_mode", MASK_MODES)
        if not integer(self.grow) or self.grow < 0:
            bad("grow", "an integer >= 0 (tokens)")
        if not number(self.focus_gate) or not 0 <= self.focus_gate <= 1:
            bad("focus_gate", "[0, 1] (0 = always hold)")
        if not isinstance(self.keep_pixels, bool):
            bad("keep_pixels", "True or False")
        if not isinstance(self.reference_compatible, bool):
            bad("reference_compatible", "True or False")

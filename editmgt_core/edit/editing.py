"""One edit, assembled in one place: `edit_stream` (used by the app, the CLI and the tests) and `edit`.

PIL image + instruction -> working-size RGB -> VQ tokens -> text features -> streamed region-hold MaskGIT decoding
-> decoded image composited at the input's own (full) resolution, unchanged tokens showing the input's own pixels
(options.keep_pixels, see composite; a super-resolving decoder's larger image is composited the same way), with every
parameter actually used (seed included) to reproduce it.

A reference-compatible run is the reference's `infer.py` for any input (see reference_io): the input squashed to
the reference's square size with PIL's default filter, the instruction as written, the result decoded and rounded as
the reference does and resized back to the input's size; no compositing.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

from ..model import entries
from ..model.encoders import TextFeatures
from ..model.loading import Editor
from ..sampler.consolidate import text_weights_for
from ..sampler.hold import pixel_mask_to_tokens
from ..sampler.reference_sampler import REFERENCE_VALUES
from ..sampler.sampling import SamplerOptions, StepRecord, sample
from . import reference_io
from .composite import composite

MAX_ASPECT = 8.0  # wider or taller images are refused rather than squeezed into a sliver of tokens


@dataclass(frozen=True)
class EditResult:
    image: Image.Image  # the edited image at the input's size (RGB)
    instruction: str
    options: SamplerOptions  # every knob actually used; options.seed is always set
    work_size: tuple[int, int]  # (width, height) the model ran at
    src_tokens: Tensor  # int64 [H, W] source tokens (CPU)
    tokens: Tensor  # int64 [H, W] edited tokens (CPU)
    scores: Tensor | None  # float [H, W] final localization map in [0, 1] (CPU), None when not computed
    hold: Tensor | None  # bool [H, W] tokens held to the source (CPU), None when hold is off
    timings: dict[str, float]  # seconds: text, encode, sampling, decode
    focus: float | None = None  # instruction focus at the first step (hold.focus), None when no map was made
    gated: bool = False  # region-hold by the map was skipped: focus below options.focus_gate (a whole-image edit)
    model: str = ""  # the model it was made with (hub id or folder; Editor.model_id)
    revision: str | None = None  # the hub commit of the model's weights (Editor.revision); None: a local folder
    input_size: tuple[int, int] = (0, 0)  # (width, height) of the upright input; the result has this size

    @property
    def held_fraction(self) -> float:
        return 0.0 if self.hold is None else float(self.hold.float().mean())

    def parameters(self) -> dict:
        """JSON-able record of the edit (embedded in saved PNGs and sidecars)."""
        opts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self.options).items()}
        run = {"model": self.model, "revision": self.revision, "instruction": self.instruction}
        return {**run, "work_size": list(self.work_size), "size": list(self.image.size), "resize": self.resize, **opts}

    @property
    def resize(self) -> str:
        """How the working-size result became the returned image, in words (saved with it)."""
        (w, h), (iw, ih) = self.work_size, self.input_size
        if self.options.reference_compatible:
            return f"as infer.py: input squashed to {w}x{h} (PIL bicubic), result resized back to {iw}x{ih} (bicubic)"
        if self.options.keep_pixels:
            return (f"full resolution {iw}x{ih}: the input's own pixels outside changed tokens, decoded tokens "
                    f"upscaled (LANCZOS) and feathered over half a cell")  # fmt: skip
        return f"decoded at {w}x{h}, resized to {iw}x{ih} (LANCZOS)"


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB: EXIF orientation applied, alpha composited on white, 16-bit / CMYK / palette converted."""
    if not isinstance(image, Image.Image):
        raise ValueError(f"expected a PIL image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"image has no pixels ({image.width}x{image.height})")
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grey: scale to 8 bits, keep the range
        arr = np.asarray(image, dtype=np.float64)
        hi = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        image = Image.fromarray(np.clip(arr / hi * 255 + 0.5, 0, 255).astype(np.uint8))
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image) * 255 + 0.5, 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert("RGB")


def work_size(width: int, height: int, pixels: int, multiple: int) -> tuple[int, int]:
    """About `pixels` pixels with the input's aspect ratio, both sides multiples of `multiple`."""
    aspect = max(width / height, height / width)
    if aspect > MAX_ASPECT:
        raise ValueError(f"image is {width}x{height}: aspect ratio {aspect:.1f} exceeds {MAX_ASPECT:g}:1")
    scale = math.sqrt(pixels / (width * height))
    return (max(multiple, round(width * scale / multiple) * multiple),
            max(multiple, round(height * scale / multiple) * multiple))  # fmt: skip


def image_to_tensor(image: Image.Image) -> Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]  # (1, 3, H, W)


def tensor_to_image(x: Tensor) -> Image.Image:
    arr = (x[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(arr)


def keep_source_pixels(out: Image.Image, source: Image.Image, keep: Tensor) -> Image.Image:
    """`composite` for a same-size output: keep (bool [h, w]) marks the tokens that show the source's own pixels."""
    if out.size != source.size:
        raise ValueError(f"output {out.size} and source {source.size} differ in size")
    return composite(out, source, ~keep)


def output_image(decoded: Tensor, source: Image.Image, keep: Tensor | None, work: tuple[int, int]) -> Image.Image:
    """The decoded pixels [1, 3, H, W] as the edit's image: at the input's size, or, when the decoder draws more
    pixels than the working size `work` (a super-resolving decoder) and more than the input has, at the decoder's
    size (the input's aspect ratio restored). keep: bool [h, w] tokens whose source pixels are kept
    (`keep_source_pixels`; the input upsampled to the output's size when it is smaller), or None."""
    out = tensor_to_image(decoded)
    scale = min(out.width / source.width, out.height / source.height)
    larger = out.width > work[0] and scale > 1
    size = (round(source.width * scale), round(source.height * scale)) if larger else source.size
    if out.size != size:
        out = out.resize(size, Image.Resampling.LANCZOS)
    if keep is None:
        return out
    src = source if source.size == size else source.resize(size, Image.Resampling.BICUBIC)
    return keep_source_pixels(out, src, keep)


@torch.inference_mode()
def preview(editor: Editor, record: StepRecord, src_tokens: Tensor, src_pixels: Tensor, dim: float = 0.4) -> Tensor:
    """Pixels [1, 3, H, W] in [0, 1] of a partially decoded state: decided tokens decoded, undecided ones shown as
    the dimmed source image (never black)."""
    masked = record.tokens == editor.mask_id
    pixels = editor.vq.decode(torch.where(masked, src_tokens, record.tokens))  # at the decoder's size
    up = F.interpolate(masked[:, None].float(), size=pixels.shape[-2:], mode="nearest").bool()
    src_pixels = src_pixels.to(pixels.device)
    if src_pixels.shape[-2:] != pixels.shape[-2:]:
        src_pixels = F.interpolate(src_pixels, size=pixels.shape[-2:], mode="bilinear", align_corners=False)
    return torch.where(up, src_pixels * dim, pixels)


def logits_fn_for(editor: Editor, prepared: Prepared, gamma: float, layers: tuple[int, ...]):
    """The network as the sampler sees it for a prepared edit: fn(tokens, timestep, capture) -> (logits, maps).

    A batch of 2 rows is the guidance pair [negative, instruction]; 1 row is the instruction alone. The condition
    stream is the source tokens.
    """
    feats, src, model = prepared.feats, prepared.src_tokens, editor.transformer
    layers = tuple(e for e in layers if not entries.parse(e).is_logit)  # the sampler makes those from the logits
    micro = torch.tensor([[*prepared.work_size, 0.0, 0.0, 6.0]], device=editor.device)

    def logits_fn(tokens: Tensor, timestep: int, capture: bool):
        n = tokens.shape[0]
        rows = slice(0, 2) if n == 2 else slice(1, 2)
        t = torch.full((n,), timestep, device=tokens.device)
        return model(
            tokens,
            feats.txt[rows].to(model.dtype),
            feats.pooled[rows].to(model.dtype),
            micro.expand(n, -1),
            t,
            src.expand(n, -1, -1),
            gamma=gamma,
            capture=layers if capture else (),
        )

    return logits_fn


@dataclass(frozen=True)
class Prepared:
    """An edit's inputs encoded once; runs that change only sampler knobs (λ, γ, seed, steps, ...) reuse it."""

    image: Image.Image  # the upright RGB input at its own size
    instruction: str  # whitespace-normalized (reference-compatible: as written)
    work_size: tuple[int, int]  # (width, height) the model runs at
    src_pixels: Tensor  # [1, 3, H, W] working-size source in [0, 1]
    src_tokens: Tensor  # int64 [1, h, w]
    feats: TextFeatures  # rows [negative prompt, instruction]
    weights: Tensor  # [1, T] text rows of the localization map
    user_mask: Tensor | None  # bool [1, h, w] brush (True = may edit) or None
    negative_prompt: str
    keywords: tuple[str, ...]
    timings: dict[str, float]


@dataclass(frozen=True)
class Progress:
    """One streamed decoding step of an edit."""

    record: StepRecord
    prepared: Prepared
    options: SamplerOptions

    def preview(self, editor: Editor, dim: float = 0.4) -> Image.Image:
        """The partially decoded image at the decoder's size (undecided areas show the dimmed source)."""
        return tensor_to_image(preview(editor, self.record, self.prepared.src_tokens, self.prepared.src_pixels, dim))


def resolve_options(editor: Editor, options: SamplerOptions | None) -> SamplerOptions:
    """Fill what the user left open: the model's defaults, a fresh seed, the model's attention band.

    Entries that read the source stream ('s<i>', 'rs<i>', see entries) are dropped at gamma 0 (there is no source
    stream to attend to). A reference-compatible run without layers of its own reads the model's reference band
    (settings.reference_band: instruction -> target maps only)."""
    options = default_options(editor) if options is None else options
    if options.seed is None:
        options = dataclasses.replace(options, seed=int(torch.randint(0, 2**31 - 1, ()).item()))
    if options.reference_compatible and options.keep_pixels:  # infer.py saves the decoded image: say what runs
        options = dataclasses.replace(options, keep_pixels=False)
    config = editor.transformer.config
    if options.reference_compatible and not options.layers:
        layers = editor.settings.reference_band  # the reference's capture: instruction -> target maps only
        if not layers:
            raise ValueError(
                f"the model's map ({entries.to_text(editor.settings.attention_layers)}) has no "
                "instruction -> target block for a reference-compatible run; pass layers (block indices)"
            )
    else:
        layers = options.layers or editor.settings.attention_layers
    entries.check(layers, config.depth, config.num_heads)
    if options.gamma == 0:
        layers = [e for e in layers if not entries.parse(e).needs_source]  # no source stream to read
        if not layers:
            raise ValueError("at γ = 0 there is no source stream: the map needs an entry that does not read it")
    return dataclasses.replace(options, layers=tuple(layers))


def sync_device(device: torch.device) -> None:
    """Wait for a CUDA device's queued work (once per stage of an edit, so its timings are true); no-op elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _brush(user_mask: Image.Image | np.ndarray, size: tuple[int, int], grid: tuple[int, int], device) -> Tensor:
    m = user_mask
    if isinstance(m, np.ndarray):
        m = Image.fromarray((m.astype(np.float32) * (255 if m.dtype == bool or m.max() <= 1 else 1)).astype(np.uint8))
    m = np.asarray(m.convert("L").resize(size, Image.Resampling.BILINEAR), dtype=np.float32) / 255
    return pixel_mask_to_tokens(torch.from_numpy(m)[None].to(device), grid)


@torch.inference_mode()
def prepare(
    editor: Editor,
    image: Image.Image,
    instruction: str,
    options: SamplerOptions,
    *,
    user_mask: Image.Image | np.ndarray | None = None,
    pixels: int | None = None,
) -> Prepared:
    """Orient, convert and resize the image, encode it to tokens, encode the text and pick the map's text rows.
    Reference-compatible: the input squashed to the reference's square, the instruction as written (reference_io)."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("the instruction is empty; describe the edit, e.g. 'make the red circle blue'")
    ref = options.reference_compatible
    instruction = instruction if ref else " ".join(instruction.split())
    clock = time.perf_counter()
    rgb = to_rgb(image)
    pixels, multiple = pixels or editor.settings.pixels, 2 * editor.vq.factor
    if ref:
        size = reference_io.square_size(pixels, multiple)
        src_pixels = image_to_tensor(reference_io.squash(rgb, size)).to(editor.device)
        feats = reference_io.encode_text(editor.text, options.negative_prompt, instruction)
    else:
        size = work_size(*rgb.size, pixels, multiple)
        src_pixels = image_to_tensor(rgb.resize(size, Image.Resampling.LANCZOS)).to(editor.device)
        feats = editor.text([options.negative_prompt, instruction])
    weights = text_weights_for(feats.offsets[1:], feats.real[1:].cpu(), instruction, options.keywords)
    sync_device(editor.device)  # the stage timings are the device's, not the launch queue's
    text_time, clock = time.perf_counter() - clock, time.perf_counter()
    src = editor.vq.encode(src_pixels)  # (1, h, w)
    mask = None if user_mask is None else _brush(user_mask, size, tuple(src.shape[1:]), editor.device)
    sync_device(editor.device)
    timings = {"text": text_time, "encode": time.perf_counter() - clock}
    return Prepared(
        rgb,
        instruction,
        size,
        src_pixels,
        src,
        feats,
        weights,
        mask,
        options.negative_prompt,
        options.keywords,
        timings,
    )


def finish(editor: Editor, prepared: Prepared, options: SamplerOptions, tokens: Tensor) -> Image.Image:
    """The final tokens [1, h, w] as the returned image: reference-compatible as infer.py saves it (at the input's
    size); otherwise at the input's own (full) resolution, or the decoder's when that is larger (output_image),
    composited over the input (keep_pixels) or the decoded image resized."""
    if options.reference_compatible:
        decoded = editor.vq.decode_reference(reference_io.decodable(tokens, editor.mask_id))
        return reference_io.resize_back(reference_io.to_image(decoded), prepared.image.size)
    keep = (tokens == prepared.src_tokens)[0].cpu() if options.keep_pixels else None
    return output_image(editor.vq.decode(tokens), prepared.image, keep, prepared.work_size)


@torch.inference_mode()
def run(
    editor: Editor, prepared: Prepared, options: SamplerOptions, *, show_map: bool = False
) -> Iterator[Progress | EditResult]:
    """Decode a prepared edit: one Progress per step, then the EditResult. options must be resolved. show_map: make
    the localization map at λ = 0 too (for display; it changes no token)."""
    if (options.negative_prompt, options.keywords) != (prepared.negative_prompt, prepared.keywords):
        raise ValueError("negative_prompt and keywords must match the ones the edit was prepared with")
    if options.seed is None or options.layers is None:
        raise ValueError("options must be resolved first (resolve_options): seed and layers set")
    clock = time.perf_counter()
    p = prepared
    logits_fn = logits_fn_for(editor, p, options.gamma, options.layers)
    kw = dict(mask_id=editor.mask_id, text_weights=p.weights, user_mask=p.user_mask, show_map=show_map)
    record = None
    for record in sample(logits_fn, p.src_tokens, options, **kw):
        yield Progress(record, p, options)
    sync_device(editor.device)
    sampling, clock = time.perf_counter() - clock, time.perf_counter()
    focus, gated = record.gate_of(0)
    out = finish(editor, p, options, record.tokens)
    yield EditResult(
        image=out,
        instruction=p.instruction,
        options=options,
        work_size=p.work_size,
        src_tokens=p.src_tokens[0].cpu(),
        tokens=record.tokens[0].cpu(),
        scores=None if record.scores is None else record.scores[0].float().cpu(),
        hold=None if record.hold is None else record.hold[0].cpu(),
        timings={**p.timings, "sampling": sampling, "decode": time.perf_counter() - clock},
        focus=focus,
        gated=gated,
        model=editor.model_id,
        revision=editor.revision,
        input_size=p.image.size,
    )


def edit_stream(
    editor: Editor,
    image: Image.Image,
    instruction: str,
    options: SamplerOptions | None = None,
    *,
    user_mask: Image.Image | np.ndarray | None = None,
    pixels: int | None = None,
    show_map: bool = False,
) -> Iterator[Progress | EditResult]:
    """The one place an edit is assembled: yield a Progress per decoding step, then the EditResult.

    options None: the model folder's defaults (`editmgt_studio.json`), else the published demo's; an unset seed
    is drawn and reported. user_mask: optional brush (white / True = may edit) at the image's size, combined with
    the attention map per options.mask_mode. pixels: working pixel count (default: the model's; 1024^2 published).
    show_map: make the localization map at λ = 0 too, for display (it changes no token).
    """
    options = resolve_options(editor, options)
    prepared = prepare(editor, image, instruction, options, user_mask=user_mask, pixels=pixels)
    yield from run(editor, prepared, options, show_map=show_map)


def default_options(editor: Editor, **overrides) -> SamplerOptions:
    """SamplerOptions with this model's defaults (its settings file), then `overrides`. With reference_compatible
    the model's defaults for knobs the reference lacks (reference_sampler.REFERENCE_VALUES) give way to the
    reference's; a value passed in `overrides` still counts (and `sample` refuses it)."""
    defaults = dict(editor.settings.defaults)
    if overrides.get("reference_compatible"):
        defaults = {k: v for k, v in defaults.items() if k not in REFERENCE_VALUES}
    for key in ("temperature", "keywords", "layers"):
        if isinstance(defaults.get(key), list):
            defaults[key] = tuple(defaults[key])
    return SamplerOptions(**{**defaults, **overrides})


def edit(editor: Editor, image: Image.Image, instruction: str, options: SamplerOptions | None = None, **kw):
    """Run `edit_stream` to the end and return its EditResult."""
    *_, result = edit_stream(editor, image, instruction, options, **kw)
    return result

"""The streamed edit and the λ/γ sweep as CPU data: `stream` yields a Frame per decoding step then the Final,
`sweep` one Cell per (γ, λ) value (the app runs either on its compute thread, `ComputeThread.prefetch`).

Everything here yields PIL images, numpy arrays and plain Python values: a GPU worker (ZeroGPU) runs `stream` /
`sweep` and only CPU objects cross back to the web process. No gradio here; `app.py` is the UI, `validate`
checks what goes in and `render` draws what comes out.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from editmgt_core.edit import files
from editmgt_core.edit.editing import EditResult, Progress, edit_stream, prepare, resolve_options, run, to_rgb
from editmgt_core.model.loading import Editor
from editmgt_core.sampler.sampling import SamplerOptions
from editmgt_core.studio import render
from editmgt_core.studio.render import PREVIEW_SIDE, fit, mean_change_outside

PREVIEW_BUDGET = 0.03  # share of an edit's time that decoding previews may take after the first step's


class FrameClock:
    """Paces what goes to a screen, in one place: an update is due when forced (the first step, a step with a
    preview) or when `interval` seconds have passed since the last one that went."""

    def __init__(self, interval: float):
        self.interval, self.last = interval, None

    def due(self, force: bool = False) -> bool:
        now = time.monotonic()
        if force or self.last is None or now - self.last >= self.interval:
            self.last = now
            return True
        return False


@dataclass(frozen=True)
class Frame:
    """One decoding step, CPU only."""

    step: int  # 0-based
    num_steps: int
    preview: Image.Image | None  # decided tokens decoded, undecided as dimmed source (working size, capped); None:
    # not decoded at this step (preview budget spent), the last decoded one still stands
    revealed: np.ndarray  # bool [h, w] tokens decided at this step
    scores: np.ndarray | None  # float [h, w] map compared with λ (brush applied), None when not computed
    hold: np.ndarray | None  # bool [h, w] tokens held to the source so far, None when hold is off
    held_fraction: float
    focus: float | None = None  # instruction focus at the first step (hold.focus), None without a map
    gated: bool = False  # the map holds nothing: focus below the focus gate (a whole-image edit)


@dataclass(frozen=True)
class Final:
    """A finished edit, CPU only."""

    image: Image.Image  # at the input's size
    source: Image.Image  # the RGB input it was made from
    parameters: dict  # EditResult.parameters(): everything needed to reproduce it (seed included)
    scores: np.ndarray | None  # float [h, w]
    hold: np.ndarray | None  # bool [h, w]
    held_fraction: float
    timings: dict[str, float]
    focus: float | None = None
    gated: bool = False
    mask: np.ndarray | None = None  # bool [H, W] the brush or mask the edit was given (at source's size), or None


def _np(t) -> np.ndarray | None:
    return None if t is None else t[0].float().cpu().numpy() if t.dtype.is_floating_point else t[0].cpu().numpy()


def _frame(p: Progress, preview: Image.Image | None) -> Frame:
    r = p.record
    return Frame(
        r.step, r.num_steps, preview, _np(r.revealed), _np(r.scores), _np(r.hold), r.held_fraction, *r.gate_of(0)
    )


def _final(result: EditResult, source: Image.Image, mask: np.ndarray | None = None) -> Final:
    """CPU copy of a result; its parameters name the model by hub id or folder name, never a server's path."""
    t = lambda x: None if x is None else x.numpy()
    parameters = result.parameters()
    parameters["model"] = files.public_model(parameters.get("model"))
    return Final(
        result.image,
        source,
        parameters,
        t(result.scores),
        t(result.hold),
        result.held_fraction,
        dict(result.timings),
        result.focus,
        result.gated,
        mask,
    )


def stream(
    editor: Editor,
    image: Image.Image,
    instruction: str,
    options: SamplerOptions,
    *,
    user_mask: np.ndarray | None = None,
    pixels: int | None = None,
    preview_side: int = PREVIEW_SIDE,
    preview_budget: float = PREVIEW_BUDGET,
    preview_interval: float = 0.0,
    show_map: bool = True,
) -> Iterator[Frame | Final]:
    """`edit_stream` as CPU data: a Frame per decoding step, then the Final. The map is made at λ = 0 too (show_map),
    so the app always shows where the model attends.

    A preview costs a full VQ decode (on a 2-core CPU up to a fifth of the bundled model's step), so the first step
    has one and later steps only while decoding stays within preview_budget of the time spent so far (1 = every
    step, 0 = none at all), at most once per preview_interval seconds (a screen that shows a frame every 0.1 s
    gains nothing from more). The last step has none: the Final's image is that step decoded.
    """
    clock, spent, cost, last = time.perf_counter(), 0.0, 0.0, None
    for item in edit_stream(editor, image, instruction, options, user_mask=user_mask, pixels=pixels, show_map=show_map):
        if not isinstance(item, Progress):
            yield _final(item, to_rgb(image), user_mask)
            continue
        now, preview = time.perf_counter(), None
        due = (last is None or now - last >= preview_interval) and item.record.step < item.record.num_steps - 1
        affordable = last is None or spent + cost <= preview_budget * (now - clock + cost)
        if due and preview_budget > 0 and affordable:
            last = now
            preview = fit(item.preview(editor), preview_side, enlarge=False)
            cost = time.perf_counter() - now
            spent += cost
        yield _frame(item, preview)


@dataclass(frozen=True)
class Cell:
    """One finished cell of a threshold sweep."""

    index: int
    lam: float
    gamma: float
    result: Final
    change_outside: float  # mean |after - before| (0..255) over pixels outside the hold region

    @property
    def label(self) -> str:
        return (
            f"λ={self.lam:g} γ={self.gamma:g} · {self.result.held_fraction:.0%} held · "
            f"Δ outside hold {self.change_outside:.1f}"
        )

    def summary(self) -> dict:
        keys = ("index", "lam", "gamma", "change_outside")
        return {**{k: getattr(self, k) for k in keys}, "held_fraction": self.result.held_fraction}


@dataclass(frozen=True)
class CellStep:
    """Sweep progress: cell `index` of `cells` is at decoding step `step` of `num_steps`."""

    index: int
    cells: int
    step: int
    num_steps: int
    lam: float
    gamma: float


def sweep(
    editor: Editor,
    image: Image.Image,
    instruction: str,
    options: SamplerOptions,
    lams: Sequence[float],
    gammas: Sequence[float],
    *,
    user_mask: np.ndarray | None = None,
    pixels: int | None = None,
) -> Iterator[CellStep | Cell]:
    """One edit per (γ, λ) cell, all with one seed. The image and text are encoded once; only the sampler re-runs
    (λ and γ enter only the sampler and the transformer's attention bias). Yields CellStep progress and each Cell."""
    options = resolve_options(editor, options)
    prepared = prepare(editor, image, instruction, options, user_mask=user_mask, pixels=pixels)
    grid = [(g, lam) for g in gammas for lam in lams]
    for index, (gamma, lam) in enumerate(grid):
        for item in run(editor, prepared, dataclasses.replace(options, gamma=gamma, lam=lam)):
            if isinstance(item, Progress):
                r = item.record
                yield CellStep(index, len(grid), r.step, r.num_steps, lam, gamma)
            else:
                final = _final(item, prepared.image, user_mask)
                yield Cell(index, lam, gamma, final, mean_change_outside(final.source, final.image, final.hold))


def save_result(final: Final, folder: Path, extra: dict | None = None) -> tuple[Path, Path]:
    """The edit as a PNG with its parameters in an 'editmgt' text chunk, plus the same JSON as a sidecar file. Both
    record a hash of the source image and, when a brush or mask was used, its hash; the JSON also carries the
    mask itself (a PNG data URL, white = may edit), so a brushed edit can be made again from its download."""
    folder.mkdir(parents=True, exist_ok=True)
    mask = final.mask
    record = {
        **final.parameters,
        "held_fraction": final.held_fraction,
        "focus": final.focus,
        "gated": final.gated,
        "timings": final.timings,
        "source_sha256": files.image_sha256(final.source),
        "mask_sha256": None if mask is None else files.mask_sha256(mask),
        **(extra or {}),
    }
    stem = f"editmgt-{final.parameters['seed']}-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6:06d}"
    png, sidecar = folder / f"{stem}.png", folder / f"{stem}.json"
    files.save_image(final.image, png, record)
    copy = None if mask is None else render.png_data_url(files.mask_image(mask))
    files.write_json_atomic(sidecar, {**record, "mask_png": copy})
    return png, sidecar

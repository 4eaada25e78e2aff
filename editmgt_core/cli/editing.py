"""`editmgt edit` (one image) and `editmgt batch` (every item of a manifest, resumable, data-parallel)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..edit.files import open_image
from .common import (
    DEFAULT_MODEL,
    add_model_args,
    add_sampler_args,
    check_knobs,
    editor_from_args,
    sampler_overrides,
    writable,
)


class _ModelHelp:
    """A knob's help naming the default model's value first: `editmgt edit` edits with the bundled model unless
    --model says otherwise, and its defaults (12 steps, γ 1) are not the published demo's (36 steps, γ 1.1)."""

    def __init__(self, help, defaults: dict, name: str):
        self.help, self.defaults, self.name = help, defaults, name

    def __str__(self) -> str:
        text = str(self.help)
        if self.name not in self.defaults:
            return text
        value = self.defaults[self.name]
        shown = f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(value)
        model = "the bundled model"
        if "(demo: " in text:
            return text.replace("(demo: ", f"(default with {model}: {shown}; published demo: ", 1)
        return f"{text} (default with {model}: {shown})"


def _bundle_defaults() -> dict:
    """The bundled model's own sampler defaults, read from its settings file (no torch); {} when it is missing."""
    import json

    try:
        return dict(json.loads((DEFAULT_MODEL / "editmgt_studio.json").read_text()).get("defaults") or {})
    except (OSError, ValueError):
        return {}


def _name_model_defaults(p: argparse.ArgumentParser) -> None:
    defaults = _bundle_defaults()
    for action in p._actions:
        if hasattr(action, "knob_help"):
            action.knob_help = _ModelHelp(action.knob_help, defaults, action.dest)


def _check_edit_args(args: argparse.Namespace) -> Path:
    """Check the output names, the instruction and the knobs before any model loads; returns the --out path."""
    from PIL import Image

    out = writable(args.out, "--out")
    if out.suffix.lower() not in Image.registered_extensions():
        raise ValueError(f"--out {out.name}: unknown image extension; use .png")
    if args.save_steps and Path(args.save_steps).suffix.lower() not in (".gif", ".webp"):
        raise ValueError(f"--save-steps {args.save_steps}: must end in .gif or .webp")
    if args.save_attention and Path(args.save_attention).suffix.lower() != ".png":
        raise ValueError(f"--save-attention {args.save_attention}: must end in .png")
    if not args.instruction.strip():
        raise ValueError("--instruction is empty; describe the edit, e.g. 'make the red circle blue'")
    check_knobs(sampler_overrides(args))
    if args.save_attention and args.lam == 0:
        raise ValueError("--save-attention needs region-hold on (--lam > 0): the map is only computed then")
    return out


def _save_steps(frames: list, final, path: str) -> None:
    """The reveal frames and the final image as an animation, at most 512 pixels on the long side."""
    from PIL import Image

    from ..edit.files import save_animation

    scale = min(1.0, 512 / max(final.size))
    size = (max(1, round(final.size[0] * scale)), max(1, round(final.size[1] * scale)))
    frames = [f.resize(size, Image.Resampling.LANCZOS) for f in [*frames, final]]
    save_animation(frames, writable(path, "--save-steps"))


def _report_edit(out: Path, result) -> None:
    seconds = sum(result.timings.values())
    print(
        f"wrote {out} (seed {result.options.seed}, {result.options.steps} steps, λ={result.options.lam:g}, "
        f"{result.held_fraction:.0%} held, {seconds:.2f} s)"
    )
    if result.gated:
        print(
            f"note: nothing held by the map: the instruction reads as a whole-image edit (focus {result.focus:.3f} "
            f"< --focus-gate {result.options.focus_gate:g})",
            file=sys.stderr,
        )


def cmd_edit(args: argparse.Namespace) -> int:
    image = open_image(args.image)
    brush = open_image(args.mask, "mask").convert("L") if args.mask else None
    out = _check_edit_args(args)
    editor = editor_from_args(args)

    from tqdm import tqdm

    from ..edit.editing import EditResult, default_options, edit_stream, resolve_options
    from ..edit.files import map_image, save_image

    options = resolve_options(editor, default_options(editor, **sampler_overrides(args)))
    if args.save_attention and options.lam == 0:
        raise ValueError("--save-attention needs region-hold on (--lam > 0): the map is only computed then")
    frames, result = [], None
    with tqdm(total=options.steps, desc="edit", unit="step", disable=args.quiet, file=sys.stderr) as bar:
        for x in edit_stream(editor, image, args.instruction, options, user_mask=brush, pixels=args.pixels):
            if isinstance(x, EditResult):
                result = x
                continue
            bar.update(1)
            if args.save_steps:
                frames.append(x.preview(editor))
    params = {**result.parameters(), "model": args.model, "image": str(args.image), "timings": result.timings}
    save_image(result.image, out, params)
    if args.save_attention and result.scores is not None:
        save_image(map_image(result.scores.numpy(), result.image.size), writable(args.save_attention, "map"))
    if args.save_steps:
        _save_steps(frames, result.image, args.save_steps)
    _report_edit(out, result)
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from ..edit.batch import run_batch
    from ..edit.manifests import read_manifest

    read_manifest(args.manifest)  # a missing or empty manifest fails here, before any model loads
    base = {"seed": 0, **sampler_overrides(args)}
    check_knobs(base)
    if args.pixels is not None:
        base["pixels"] = args.pixels
    summary = run_batch(
        args.manifest,
        args.out,
        lambda device: editor_from_args(args, device),
        base=base,
        model=args.model,
        device=args.device,
        progress=not args.quiet,
    )
    if summary:
        print(
            f"batch: {summary['ok']} ok, {summary['error']} failed, {summary['pending']} pending of "
            f"{summary['items']} ({summary['skipped']} already done; {summary['processes']} process(es)); "
            f"results in {Path(args.out) / 'results.jsonl'}"
        )
    return 0 if summary.get("error", 0) == 0 else 3


def add_edit(sub) -> None:
    p = sub.add_parser(
        "edit",
        help="edit one image",
        description="Edit one image; the output PNG carries every "
        "parameter used (seed included) and the model as JSON in its 'editmgt' text chunk.",
    )
    p.add_argument("--image", required=True, help="input image (any format PIL reads)")
    p.add_argument("--instruction", required=True, help="the edit, e.g. 'make the red circle blue'")
    p.add_argument(
        "--out", required=True, help="output image (.png keeps the parameters; other formats get a <out>.json sidecar)"
    )
    p.add_argument("--mask", help="optional brush mask image, white = may edit (combined per --mask-mode)")
    p.add_argument(
        "--save-attention",
        metavar="MAP.png",
        help="also save the final localization map (grey, white = edit here) at the output's size; needs --lam > 0",
    )
    p.add_argument(
        "--save-steps",
        metavar="STEPS.webp",
        help="also save the token reveal as an animated .gif or .webp (undecided areas show the dimmed source)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_args(p)
    add_sampler_args(p)
    _name_model_defaults(p)
    p.set_defaults(run=cmd_edit)


def add_batch(sub) -> None:
    p = sub.add_parser(
        "batch",
        help="edit every item of a manifest (resumable, data-parallel)",
        description="Edit every item of a JSON Lines manifest into --out. Re-running skips finished items. "
        "Launch with `accelerate launch --multi_gpu --num_processes P -m editmgt_core batch ...` (one process per "
        "GPU; CPU processes on a machine without GPUs) or `torchrun --nproc_per_node P -m editmgt_core batch ...` "
        "to split the items over P processes (`accelerate launch --cpu` starts only one process without MPI). "
        "Exit status 3 when some items failed (see results.jsonl).",
    )
    p.add_argument(
        "--manifest",
        required=True,
        help="JSON Lines: source, instruction, optional id, target, mask, "
        "brush and per-item sampler knobs (see manifests.py)",
    )
    p.add_argument("--out", required=True, help="output folder: images/, maps/, hold/, items/, logs/, results.jsonl")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_args(p)
    add_sampler_args(p, "every item (an item's own keys win; the seed defaults to 0)")
    p.set_defaults(run=cmd_batch)

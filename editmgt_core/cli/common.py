"""The command line's shared pieces: the model and sampler option groups, the editor loader, small parsers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from editmgt_core import paths
from editmgt_core.edit import knobs
from editmgt_core.model.config import add_runtime_args

DEFAULT_MODEL = paths.BUNDLED_MODEL
PUBLISHED = "WeiChow/EditMGT"
KNOBS = knobs.SAMPLER  # the SamplerOptions fields the CLI sets


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=str(DEFAULT_MODEL),
        help=f"model folder or hub id (default: the bundled model; the published model is {PUBLISHED})",
    )
    g.add_argument(
        "--device",
        help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available, else cpu; "
        "under accelerate: each process's device)",
    )
    add_runtime_args(g)


class _Help:
    """A knob's help, worded when --help is printed (argparse fills '%(knob_help)s' from the action's attributes)."""

    def __init__(self, name: str):
        self.name = name

    def __str__(self) -> str:
        return knobs.cli_help(self.name)


def add_sampler_args(p: argparse.ArgumentParser, what: str = "the edit") -> None:
    """The knobs with command-line flags (knobs.KNOBS) as options; unset ones are None (sampler_overrides)."""
    g = p.add_argument_group(f"sampler knobs for {what} (default: the model's settings, else the published demo's)")
    for name, knob in knobs.KNOBS.items():
        if knob.flags:
            action = g.add_argument(*knob.flags, dest=name, help="%(knob_help)s", **knobs.cli_options(name))
            action.knob_help = _Help(name)


def sampler_overrides(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in KNOBS if getattr(args, k, None) is not None}


def check_knobs(values: dict) -> None:
    """Validate sampler knobs before any model loads (SamplerOptions names the bad field and the allowed values)."""
    from editmgt_core.sampler.sampling import SamplerOptions

    SamplerOptions(**{k: v for k, v in values.items() if k in KNOBS})


def editor_from_args(args: argparse.Namespace, device: str | None = None):
    """The editor the model options name, on `device` (default: --device, else cuda when available, else cpu)."""
    import torch
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from editmgt_core.edit.editing import default_options
    from editmgt_core.model.loading import ModelNotFoundError, cpu_warning, load_editor

    transformers_logging.disable_progress_bar()  # stderr keeps our own progress and error lines only
    diffusers_logging.disable_progress_bar()
    device = device or args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        editor = load_editor(
            args.model,
            device=device,
            dtype=args.dtype,
            offload=args.offload,
            compile=args.compile,
            revision=getattr(args, "revision", None),
        )
        warning = cpu_warning(editor, getattr(args, "steps", None) or default_options(editor).steps)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        return editor
    except ModelNotFoundError as err:
        hint = (
            f" (pass --model with a model folder, or --model {PUBLISHED})" if args.model == str(DEFAULT_MODEL) else ""
        )
        raise ModelNotFoundError(f"{err}{hint}") from None


def writable(path: str, what: str) -> Path:
    """`path` as an output file name, its folder created; a folder there is an error naming the option `what`."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def world_phrasings(text: str) -> tuple[str, ...]:
    """--phrasing's type: a comma list of phrasings, checked as argparse parses it."""
    from editmgt_core.world.paraphrase import phrasings_arg  # numpy only

    return phrasings_arg(text)

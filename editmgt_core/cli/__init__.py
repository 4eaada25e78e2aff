"""Command line: `editmgt COMMAND ...` or `python -m editmgt_core COMMAND ...` (`--help` on each).

    python -m editmgt_core edit --image IN.png --instruction "make the red circle blue" --out OUT.png
    python -m editmgt_core batch --manifest M.jsonl --out DIR
    accelerate launch --multi_gpu --num_processes 2 -m editmgt_core batch --manifest M.jsonl --out DIR
    python -m editmgt_core evaluate --manifest M.jsonl --pred DIR
    python -m editmgt_core world-eval --manifest WORLD/manifest.jsonl --out DIR
    python -m editmgt_core world-eval --world-seed 2027 --n 300 --phrasing templates,train,heldout --out DIR
    python -m editmgt_core convert magicbrush --input MagicBrush/test --out DIR
    editmgt app --model WeiChow/EditMGT --offload          # the browser app (app.py), from a clone
    editmgt deploy-space --repo USER/NAME --dry-run         # a Hugging Face Space from this checkout

User errors (missing or unreadable files, bad knob values, a missing model) end with one `error: ...` line on
stderr and exit status 1; argparse usage errors exit with 2. Heavy libraries load only once the inputs are checked.

The commands live by group: editing.py (edit, batch), evaluation.py (evaluate, world-eval, tune-hold,
calibrate-layers, convert), app.py (app, deploy-space); common.py holds the shared options and the editor loader.
"""

from __future__ import annotations

import argparse
import sys

from .app import add_app, add_deploy_space, cmd_app, cmd_deploy_space
from .common import (
    DEFAULT_MODEL,
    KNOBS,
    PUBLISHED,
    add_model_args,
    add_sampler_args,
    check_knobs,
    editor_from_args,
    sampler_overrides,
)
from .editing import add_batch, add_edit, cmd_batch, cmd_edit
from .evaluation import (
    add_calibrate_layers,
    add_convert,
    add_evaluate,
    add_tune_hold,
    add_world_eval,
    cmd_calibrate_layers,
    cmd_convert,
    cmd_evaluate,
    cmd_tune_hold,
    cmd_world_eval,
)

__all__ = [
    "DEFAULT_MODEL",
    "KNOBS",
    "PUBLISHED",
    "add_model_args",
    "add_sampler_args",
    "build_parser",
    "check_knobs",
    "cmd_app",
    "cmd_batch",
    "cmd_calibrate_layers",
    "cmd_convert",
    "cmd_deploy_space",
    "cmd_edit",
    "cmd_evaluate",
    "cmd_tune_hold",
    "cmd_world_eval",
    "editor_from_args",
    "main",
    "sampler_overrides",
]


def version() -> str:
    from .. import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="editmgt", description="EditMGT Studio command line.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_app(sub)
    add_deploy_space(sub)
    add_edit(sub)
    add_batch(sub)
    add_evaluate(sub)
    add_world_eval(sub)
    add_tune_hold(sub)
    add_calibrate_layers(sub)
    add_convert(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["app"]:  # everything after `app` is app.py's (argparse's REMAINDER drops leading options)
        args = argparse.Namespace(run=cmd_app, app_args=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (OSError, ValueError) as err:  # missing/unreadable files, bad values, no model: one line, no traceback
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

"""`editmgt app` (the browser app) and `editmgt deploy-space` (a Hugging Face Space)."""

from __future__ import annotations

import argparse

from editmgt_core.cli.common import PUBLISHED


def cmd_app(args: argparse.Namespace) -> int:
    """Serve the browser app (editmgt_core.app.server) with app.py's options."""
    from editmgt_core.app.server import main

    main(args.app_args)
    return 0


def cmd_deploy_space(args: argparse.Namespace) -> int:
    from huggingface_hub import HfApi

    from editmgt_core.release import deploy

    api = HfApi()  # a dry run only reads: the model's file list for preload_from_hub
    kw = {
        "hardware": args.hardware,
        "private": args.private,
        "model": args.space_model,
        "revision": args.space_revision,
        "dry_run": args.dry_run,
    }
    deploy.deploy(api, args.repo, deploy.ROOT, **kw)
    return 0


def add_app(sub) -> None:
    p = sub.add_parser(
        "app",
        help="launch the browser app (app.py; options: editmgt app --help)",
        description="Launch the browser app; every option after `app` goes to app.py (--model, --dtype, --port, ...).",
        add_help=False,
    )
    p.add_argument("app_args", nargs=argparse.REMAINDER, help="app.py's options")
    p.set_defaults(run=cmd_app)


def add_deploy_space(sub) -> None:
    p = sub.add_parser(
        "deploy-space",
        help="upload the working tree as a Hugging Face Space (binaries through Xet/LFS)",
        description="Create or update a Gradio Space from this checkout with huggingface_hub's upload API "
        "(log in first: `hf auth login`, or set HF_TOKEN). See editmgt_core/release/deploy.py.",
    )
    p.add_argument("--repo", required=True, help="the Space, USER/NAME")
    p.add_argument("--dry-run", action="store_true", help="list every file and where it goes, and the front matter")
    p.add_argument(
        "--hardware", help="request this Space hardware, e.g. cpu-basic, zero-a10g (ZeroGPU), t4-small (default: keep)"
    )
    p.add_argument("--private", action="store_true", help="create the Space private")
    p.add_argument(
        "--space-model",
        default=PUBLISHED,
        help=f"the model the Space loads on GPU hardware (its EDITMGT_MODEL variable; default {PUBLISHED})",
    )
    p.add_argument(
        "--space-revision",
        help="pin the model to this branch, tag or commit (the Space's EDITMGT_REVISION "
        "and the preloaded files' commit; default: main)",
    )
    p.set_defaults(run=cmd_deploy_space)

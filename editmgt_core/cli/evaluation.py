"""The measuring commands: `evaluate` (benchmark metrics), `world-eval`, `tune-hold`, `calibrate-layers`, and
`convert` (benchmark test sets into manifests)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from editmgt_core.cli.common import (
    add_model_args,
    add_sampler_args,
    check_knobs,
    editor_from_args,
    sampler_overrides,
    world_phrasings,
)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from editmgt_core.evaluation.evaluate import METRICS, FeatureModels, run_evaluate

    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    bad = [m for m in names if m not in METRICS]
    if bad:
        raise ValueError(f"--metrics: unknown {bad}; choose from {','.join(METRICS)}")
    preds = [Path(p) for p in args.pred]
    for p in preds:
        if not p.is_dir():
            raise FileNotFoundError(f"prediction folder not found: {p}")
    labels = args.name or [p.name for p in preds]
    if len(labels) != len(preds):
        raise ValueError(f"--name: give one name per --pred ({len(preds)}), got {len(labels)}")
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    models = FeatureModels.load(names, args.clip_model, args.dino_model, device)
    out = Path(args.out) if args.out else preds[0]
    report = run_evaluate(Path(args.manifest), preds, labels, out, models, names, args.benchmark, args.batch_size)
    print(report["table"], end="")
    for m in report["methods"]:
        if m["missing"] or m["invalid"]:
            print(
                f"{m['name']}: {len(m['missing'])} items without a prediction, {len(m['invalid'])} unusable "
                "manifest lines (not counted)",
                file=sys.stderr,
            )
    print(f"wrote {out / 'eval.md'} and {out / 'eval.json'}", file=sys.stderr)
    return 0


def cmd_calibrate_layers(args: argparse.Namespace) -> int:
    from editmgt_core.evaluation.calibrate import report

    if args.records < 1 or args.width < 1:
        raise ValueError("--records and --width must be >= 1")
    report(editor_from_args(args), args.seed, args.records, args.size, args.width, write=args.write)
    return 0


def cmd_tune_hold(args: argparse.Namespace) -> int:
    from editmgt_core.evaluation.tune_hold import main
    from editmgt_core.model.entries import from_text

    floats = lambda text: [float(v) for v in text.split(",")] if text.strip() else []
    lams, grows = floats(args.lam_values), [int(v) for v in floats(args.grow_values)]
    layers = from_text(args.layers) if args.layers else None
    summary = main(editor_from_args(args), args.manifest, lams, grows, args.limit, args.max_drop, layers)
    return 0 if summary["suggested"] else 1


def _world_manifest(args: argparse.Namespace):
    """--manifest, or the records generated for --world-seed (phrasings / a slice) under OUT/world."""
    if args.world_seed is None:
        if not args.manifest or args.phrasing or args.slice:
            raise ValueError("give --manifest, or --world-seed and --n (with --phrasing / --slice) to generate records")
        return args.manifest
    from editmgt_core.world.dataset import write_dataset
    from editmgt_core.world.samples import EVALUATION_SEED

    if args.manifest or args.n is None or args.n < 1:
        raise ValueError("--world-seed needs --n N (>= 1) and no --manifest")
    manifest = write_dataset(
        Path(args.out) / "world",
        args.n,
        args.world_seed,
        args.world_size,
        phrasings=args.phrasing,
        slice_name=args.slice,
    )
    if args.world_seed != EVALUATION_SEED:
        print(
            f"note: world seed {args.world_seed} is not the evaluation seed {EVALUATION_SEED}; report "
            "numbers from that one",
            file=sys.stderr,
        )
    return manifest


def cmd_world_eval(args: argparse.Namespace) -> int:
    from editmgt_core.edit.manifests import read_manifest
    from editmgt_core.evaluation.world_eval import run_world_eval

    args.manifest = _world_manifest(args)
    read_manifest(args.manifest)
    base = sampler_overrides(args)
    check_knobs(base)
    lam, seed = base.pop("lam", None), base.pop("seed", 0)
    if args.pixels is not None:
        base["pixels"] = args.pixels
    editor = editor_from_args(args)
    report = run_world_eval(
        editor,
        args.manifest,
        args.out,
        base=base,
        lam=lam,
        limit=args.limit,
        seed=seed,
        max_error=args.max_error,
        min_change=args.min_change,
        iou_threshold=args.iou_threshold,
        n_examples=args.examples,
        progress=not args.quiet,
    )
    print(report["table"], end="")
    if report["lam"] == 0:
        print("note: region-hold is off at the model's default (λ = 0); pass --lam to compare", file=sys.stderr)
    print(f"wrote world_eval.json, world_eval.md, world_eval.png, world_examples.png to {args.out}", file=sys.stderr)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from editmgt_core.evaluation.convert import convert_emu_edit, convert_magicbrush

    if args.layout == "emu-edit":
        manifest = convert_emu_edit(args.input, args.out, args.split)
    else:
        manifest = convert_magicbrush(args.input, args.out)
    n = sum(1 for line in manifest.read_text().splitlines() if line.strip())
    print(f"wrote {manifest} ({n} items)")
    return 0


def add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="benchmark metrics of predictions (CLIP-I, CLIP-out, L1, DINO, leakage)",
        description="Score prediction folders against a manifest in the paper's Table 1 layout plus "
        "a leakage column; writes eval.json and eval.md.",
    )
    p.add_argument("--manifest", required=True, help="manifest with source, target, optional mask / output_caption")
    p.add_argument("--pred", required=True, nargs="+", help="prediction folder(s): batch outputs or <id>.png files")
    p.add_argument("--name", nargs="+", help="method name per --pred (default: the folder names)")
    p.add_argument("--out", help="where eval.json / eval.md go (default: the first --pred folder)")
    p.add_argument("--benchmark", help="benchmark name in the table (default: the manifest's folder name)")
    p.add_argument(
        "--metrics",
        default="clip-i,clip-out,l1,dino,leakage",
        help="comma-separated subset of clip-i,clip-out,l1,dino,leakage (default: all)",
    )
    p.add_argument(
        "--clip-model",
        default="openai/clip-vit-base-patch32",
        help="CLIPModel id or folder for CLIP-I / CLIP-out (default: CLIP ViT-B/32, as the benchmarks)",
    )
    p.add_argument(
        "--dino-model",
        default="facebook/dino-vits16",
        help="ViTModel id or folder for DINO (default: DINO ViT-S/16, as the benchmarks)",
    )
    p.add_argument("--device", help="device of the metric models (default: cuda when available, else cpu)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.set_defaults(run=cmd_evaluate)


def add_world_eval(sub) -> None:
    p = sub.add_parser(
        "world-eval",
        help="success / leakage / IoU on edit-world records, region-hold off vs on",
        description="Run the editor on a world manifest (python -m editmgt_core.world.samples) with λ=0 and "
        "the model's default λ (or --lam) and report success, leakage and localization "
        "IoU per category (see world_eval.py for the criteria).",
    )
    p.add_argument("--manifest", help="world manifest.jsonl (source, target, mask, category)")
    p.add_argument("--out", required=True, help="folder for world_eval.json/.md/.png and world_examples.png")
    p.add_argument(
        "--world-seed",
        type=int,
        help="instead of --manifest: generate --n records of this world seed "
        "under OUT/world (2027 is the evaluation seed; 555 and 777 are for development)",
    )
    p.add_argument("--n", type=int, help="records to generate with --world-seed")
    p.add_argument("--world-size", type=int, default=64, help="generated records' side in pixels (default 64)")
    p.add_argument(
        "--phrasing",
        type=world_phrasings,
        default=(),
        help="with --world-seed: comma list of templates, train, heldout, mixed or family names; each "
        "record is evaluated under each, side by side",
    )
    p.add_argument(
        "--slice",
        choices=("small", "overlap", "crowded", "ambiguous"),
        help="with --world-seed: records of a robustness slice",
    )
    p.add_argument("--limit", type=int, help="evaluate only the first N records")
    p.add_argument(
        "--max-error",
        type=float,
        default=0.1,
        help="success needs mean |output - target| inside the edit mask <= this (default 0.1)",
    )
    p.add_argument(
        "--min-change",
        type=float,
        default=0.1,
        help="pixels changed by the edit: source/target differ by more than this (default 0.1)",
    )
    p.add_argument("--iou-threshold", type=float, default=0.5, help="map threshold for the IoU (default 0.5)")
    p.add_argument("--examples", type=int, default=6, help="records shown in world_examples.png (default 6)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_args(p)
    add_sampler_args(p, "every record (--lam is the region-hold λ compared with λ=0; record i uses seed --seed + i)")
    p.set_defaults(run=cmd_world_eval)


def add_tune_hold(sub) -> None:
    p = sub.add_parser(
        "tune-hold",
        help="measure what each region-hold λ and grow costs (success) and buys (change far from the edit)",
        description="Decode world records with the hold off and with each (λ, grow), same seed, and suggest the "
        "setting that cuts change beyond one token of the edit most while success drops by at most --max-drop "
        "(see tune_hold.py). Use a validation seed.",
    )
    p.add_argument("--manifest", required=True, help="edit-world manifest.jsonl (python -m editmgt_core.world.samples)")
    p.add_argument("--lam-values", default="0.05,0.1,0.2,0.3", help="λ values, comma-separated")
    p.add_argument("--grow-values", default="1,2", help="grow values (tokens), comma-separated")
    p.add_argument("--layers", default=None, help="map entries (default: the model's), e.g. 'change' or '5, s0'")
    p.add_argument("--limit", type=int, default=None, help="only the first N records")
    p.add_argument("--max-drop", type=float, default=0.01, help="largest success drop allowed (default 0.01)")
    add_model_args(p)
    p.set_defaults(run=cmd_tune_hold)


def add_calibrate_layers(sub) -> None:
    p = sub.add_parser(
        "calibrate-layers",
        help="score every block's attention map against edit-world masks to pick the attention band",
        description="Per block: AUC and top-k IoU of the instruction->image attention at the first decoding step "
        "against the edit masks of local edit-world records (see calibrate.py). Use a validation seed.",
    )
    p.add_argument("--seed", type=int, default=555, help="edit-world seed (not the training or evaluation seed)")
    p.add_argument("--records", type=int, default=64, help="local-category records to score (default 64)")
    p.add_argument("--size", type=int, default=64, help="world image side in pixels (default 64)")
    p.add_argument("--width", type=int, default=3, help="longest band to report (default 3 blocks)")
    p.add_argument(
        "--write",
        action="store_true",
        help="write the suggested map recipe and gate to the model's "
        "editmgt_studio.json (attention_layers, defaults.focus_gate)",
    )
    add_model_args(p)
    p.set_defaults(run=cmd_calibrate_layers)


def add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="turn the Emu Edit or MagicBrush test set into a manifest",
        description="Convert a benchmark test set into manifest.jsonl (see convert.py for the layouts read).",
    )
    p.add_argument("layout", choices=("emu-edit", "magicbrush"), help="the test set's layout")
    p.add_argument(
        "--input",
        required=True,
        help="emu-edit: parquet file/folder or .jsonl; magicbrush: the folder with edit_sessions.json (or its parent)",
    )
    p.add_argument("--out", required=True, help="output folder for manifest.jsonl (and images/ or masks/)")
    p.add_argument("--split", help="emu-edit parquet split to read: validation or test (default: all files)")
    p.set_defaults(run=cmd_convert)

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
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import knobs
from .config import COMPILE_HELP, COMPILE_MODES, DTYPE_CHOICES, DTYPE_HELP
from .files import open_image

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "default-model"
PUBLISHED = "WeiChow/EditMGT"
KNOBS = tuple(name for name, knob in knobs.KNOBS.items() if knob.sampler)  # SamplerOptions fields the CLI sets


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=str(DEFAULT_MODEL),
        help=f"model folder or hub id (default: the bundled {DEFAULT_MODEL.parent.name}/{DEFAULT_MODEL.name};"
        f" the published model is {PUBLISHED})",
    )
    g.add_argument(
        "--device",
        help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available, else cpu; "
        "under accelerate: each process's device)",
    )
    g.add_argument("--dtype", choices=DTYPE_CHOICES, default="fp32", help=DTYPE_HELP)
    g.add_argument("--compile", choices=("off", *COMPILE_MODES), default="off", help=COMPILE_HELP)
    g.add_argument(
        "--offload",
        action="store_true",
        help="keep the text encoders on the CPU between encodings (the published model on a 16 GB card)",
    )


class _Help:
    """A knob's help, worded when --help is printed: it names the demo's default, which needs torch (`editmgt
    convert --input ...` should not pay for that). argparse fills '%(knob_help)s' from the action's attributes."""

    def __init__(self, knob: knobs.Knob):
        self.knob = knob

    def __str__(self) -> str:
        return knobs.cli_help(self.knob)


def add_sampler_args(p: argparse.ArgumentParser, what: str = "the edit") -> None:
    """The sampler knobs (knobs.KNOBS with CLI flags) as options; unset ones are None (sampler_overrides)."""
    g = p.add_argument_group(f"sampler knobs for {what} (default: the model's settings, else the published demo's)")
    for knob in knobs.KNOBS.values():
        if knob.flags:
            action = g.add_argument(*knob.flags, dest=knob.name, help="%(knob_help)s", **knob.cli_options())
            action.knob_help = _Help(knob)


def sampler_overrides(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in KNOBS if getattr(args, k, None) is not None}


def check_knobs(values: dict) -> None:
    """Validate sampler knobs before any model loads (SamplerOptions names the bad field and the allowed values)."""
    from .sampling import SamplerOptions

    SamplerOptions(**{k: v for k, v in values.items() if k in KNOBS})


def _load_editor(args: argparse.Namespace, device: str | None = None):
    import torch
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from .editing import default_options
    from .loading import ModelNotFoundError, cpu_warning, load_editor

    transformers_logging.disable_progress_bar()  # stderr keeps our own progress and error lines only
    diffusers_logging.disable_progress_bar()
    device = device or args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        editor = load_editor(args.model, device=device, dtype=args.dtype, offload=args.offload, compile=args.compile)
        warning = cpu_warning(editor, getattr(args, "steps", None) or default_options(editor).steps)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        return editor
    except ModelNotFoundError as err:
        hint = (
            f" (pass --model with a model folder, or --model {PUBLISHED})" if args.model == str(DEFAULT_MODEL) else ""
        )
        raise ModelNotFoundError(f"{err}{hint}") from None


def _writable(path: str, what: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def cmd_edit(args: argparse.Namespace) -> int:
    from PIL import Image

    image = open_image(args.image)
    brush = open_image(args.mask, "mask").convert("L") if args.mask else None
    out = _writable(args.out, "--out")
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
    editor = _load_editor(args)

    from tqdm import tqdm

    from .editing import EditResult, default_options, edit_stream, resolve_options
    from .files import map_image, save_animation, save_image

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
        save_image(map_image(result.scores.numpy(), result.image.size), _writable(args.save_attention, "map"))
    if args.save_steps:
        size = result.image.size
        scale = min(1.0, 512 / max(size))
        size = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        frames = [f.resize(size, Image.Resampling.LANCZOS) for f in [*frames, result.image]]
        save_animation(frames, _writable(args.save_steps, "--save-steps"))
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
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch
    from .manifests import read_manifest

    read_manifest(args.manifest)  # a missing or empty manifest fails here, before any model loads
    base = {"seed": 0, **sampler_overrides(args)}
    check_knobs(base)
    if args.pixels is not None:
        base["pixels"] = args.pixels
    summary = run_batch(
        args.manifest,
        args.out,
        lambda device: _load_editor(args, device),
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import METRICS, FeatureModels, run_evaluate

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
    from .calibrate import report

    if args.records < 1 or args.width < 1:
        raise ValueError("--records and --width must be >= 1")
    report(_load_editor(args), args.seed, args.records, args.size, args.width, write=args.write)
    return 0


def cmd_tune_hold(args: argparse.Namespace) -> int:
    from .entries import from_text
    from .tune_hold import main

    floats = lambda text: [float(v) for v in text.split(",")] if text.strip() else []
    lams, grows = floats(args.lam_values), [int(v) for v in floats(args.grow_values)]
    layers = from_text(args.layers) if args.layers else None
    summary = main(_load_editor(args), args.manifest, lams, grows, args.limit, args.max_drop, layers)
    return 0 if summary["suggested"] else 1


def _world_phrasings(text: str) -> tuple[str, ...]:
    from .world_phrasing import parse_phrasings  # numpy only

    try:
        return parse_phrasings(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_world_eval(args: argparse.Namespace) -> int:
    from .manifests import read_manifest
    from .world_eval import run_world_eval

    if args.world_seed is not None:  # generate the records on demand (phrasings / a slice), then evaluate them
        from .world import EVALUATION_SEED, write_dataset

        if args.manifest or args.n is None or args.n < 1:
            raise ValueError("--world-seed needs --n N (>= 1) and no --manifest")
        args.manifest = write_dataset(Path(args.out) / "world", args.n, args.world_seed, args.world_size,
                                      phrasings=args.phrasing, slice_name=args.slice)  # fmt: skip
        if args.world_seed != EVALUATION_SEED:
            print(f"note: world seed {args.world_seed} is not the evaluation seed {EVALUATION_SEED}; report "
                  "numbers from that one", file=sys.stderr)  # fmt: skip
    elif not args.manifest or args.phrasing or args.slice:
        raise ValueError("give --manifest, or --world-seed and --n (with --phrasing / --slice) to generate records")
    read_manifest(args.manifest)
    base = sampler_overrides(args)
    check_knobs(base)
    lam, seed = base.pop("lam", None), base.pop("seed", 0)
    if args.pixels is not None:
        base["pixels"] = args.pixels
    editor = _load_editor(args)
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
    from .convert import convert_emu_edit, convert_magicbrush

    if args.layout == "emu-edit":
        manifest = convert_emu_edit(args.input, args.out, args.split)
    else:
        manifest = convert_magicbrush(args.input, args.out)
    n = sum(1 for line in manifest.read_text().splitlines() if line.strip())
    print(f"wrote {manifest} ({n} items)")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    """Run the repository's app.py (the app ships with the checkout, next to the package and its bundled model)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "app.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"no app.py next to the installed package ({path}); the app runs from a clone of the repository: "
            "`pip install -e .` there, then `editmgt app`"
        )
    sys.path.insert(0, str(path.parent))  # as `python app.py` has it: app.py imports its neighbour app_knobs.py
    spec = importlib.util.spec_from_file_location("app", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    module.main(args.app_args)
    return 0


def cmd_deploy_space(args: argparse.Namespace) -> int:
    from . import deploy

    api = None
    if not args.dry_run:
        from huggingface_hub import HfApi

        api = HfApi()
    kw = {"hardware": args.hardware, "private": args.private, "model": args.space_model, "dry_run": args.dry_run}
    deploy.deploy(api, args.repo, deploy.ROOT, **kw)
    return 0


def version() -> str:
    from . import __version__

    return __version__


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
        "(log in first: `hf auth login`, or set HF_TOKEN). See editmgt_core/deploy.py.",
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
    p.set_defaults(run=cmd_deploy_space)


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
        description="Run the editor on a world manifest (python -m editmgt_core.world) with λ=0 and "
        "the model's default λ (or --lam) and report success, leakage and localization "
        "IoU per category (see world_eval.py for the criteria).",
    )
    p.add_argument("--manifest", help="world manifest.jsonl (source, target, mask, category)")
    p.add_argument("--out", required=True, help="folder for world_eval.json/.md/.png and world_examples.png")
    p.add_argument("--world-seed", type=int, help="instead of --manifest: generate --n records of this world seed "
                   "under OUT/world (2027 is the evaluation seed; 555 and 777 are for development)")  # fmt: skip
    p.add_argument("--n", type=int, help="records to generate with --world-seed")
    p.add_argument("--world-size", type=int, default=64, help="generated records' side in pixels (default 64)")
    p.add_argument("--phrasing", type=_world_phrasings, default=(),
                   help="with --world-seed: comma list of templates, train, heldout, mixed or family names; each "
                   "record is evaluated under each, side by side")  # fmt: skip
    p.add_argument("--slice", choices=("small", "overlap", "crowded", "ambiguous"),
                   help="with --world-seed: records of a robustness slice")  # fmt: skip
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
    p.add_argument("--manifest", required=True, help="edit-world manifest.jsonl (python -m editmgt_core.world)")
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
    p.add_argument("--write", action="store_true", help="write the suggested map recipe and gate to the model's "
                   "editmgt_studio.json (attention_layers, defaults.focus_gate)")  # fmt: skip
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


if __name__ == "__main__":
    sys.exit(main())

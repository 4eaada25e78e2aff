"""Edit-world records written as files: source, target and mask PNGs under `images/` and a `manifest.jsonl`, for
the world's own stream, several phrasings of it, or a robustness slice.

CLI: `python -m editmgt_core.world.dataset --n N --seed S --out DIR [--size 64] [--phrasing ...] [--slice ...]`.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from editmgt_core.world import hard_cases, paraphrase
from editmgt_core.world.samples import Record, record, scene_dict


def _save(out: Path, rel: str, array: np.ndarray) -> str:
    Image.fromarray(array.astype(np.uint8) * 255 if array.dtype == bool else array).save(out / rel)
    return rel


def _variants(rec: Record, phrasings: tuple[str, ...], rng_key: list[int]) -> list[tuple[str | None, Record]]:
    """(phrasing set, record) per requested phrasing; the same wording stream for each, as record() draws it."""
    if not phrasings:
        return [(None, rec)]
    return [(p, paraphrase.rephrase(rec, p, np.random.default_rng(rng_key))) for p in phrasings]


def write_dataset(
    out: Path,
    n: int,
    seed: int,
    size: int = 64,
    log_every: int = 1000,
    phrasings: tuple[str, ...] = (),
    slice_name: str | None = None,
) -> Path:
    """Write `n` records as PNGs under out/images and a manifest.jsonl; returns the manifest path.

    `phrasings` (opt-in, paraphrase modes or family names): one manifest row per record and phrasing, sharing
    the record's images, with `phrasing` (family), `held_out`, `phrasing_set` and `record` (its index); ids get
    "-<phrasing>" when there are several. `slice_name`: records of that robustness slice (hard_cases), rows with
    `slice` and, for ambiguous ones, `candidates` (each candidate's target and mask)."""
    for p in phrasings:
        paraphrase.check_phrasing(p)
    (out / "images").mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.jsonl"
    t0 = time.time()
    with manifest.open("w") as f:
        for i in range(n):
            if slice_name is None:
                rec, rng_key = record(seed, i, size), [seed, i, 2]
            else:
                rec, rng_key = hard_cases.slice_record(seed, i, slice_name, size), [seed, i, 4]
            rid = f"{i:07d}"
            paths = {
                "source": _save(out, f"images/{rid}_src.png", rec.src),
                "target": _save(out, f"images/{rid}_tgt.png", rec.tgt),
                "mask": _save(out, f"images/{rid}_mask.png", rec.mask),
            }
            extra = {} if slice_name is None else {"slice": slice_name}
            # for world_eval's shape judge (scenes drawn at the output's size) and other right backgrounds
            extra.update(source_scene=scene_dict(rec.src_scene), target_scene=scene_dict(rec.tgt_scene))
            if rec.candidates:
                extra["candidates"] = [
                    {
                        "target": _save(out, f"images/{rid}_cand{j}_tgt.png", tgt),
                        "mask": _save(out, f"images/{rid}_cand{j}_mask.png", mask),
                    }
                    for j, (tgt, mask) in enumerate(rec.candidates)
                ]
            for p, variant in _variants(rec, phrasings, rng_key):
                row = {
                    "id": rid if len(phrasings) < 2 else f"{rid}-{p}",
                    **paths,
                    "instruction": variant.instruction,
                    "category": variant.category,
                    "edit": variant.edit,
                }
                if p is not None:
                    row.update(
                        phrasing=variant.edit["phrasing"], held_out=variant.edit["held_out"], phrasing_set=p, record=i
                    )
                f.write(json.dumps({**row, **extra}) + "\n")
            if (i + 1) % log_every == 0 or i + 1 == n:
                rate = (i + 1) / max(time.time() - t0, 1e-9)
                print(f"[world] {i + 1}/{n} records ({rate:.0f}/s)", flush=True)
    return manifest


def main(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    manifest = write_dataset(
        Path(args.out), args.n, args.seed, args.size, phrasings=args.phrasing, slice_name=args.slice
    )
    print(f"[world] wrote {manifest}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Generate edit-world records: source/target/mask PNGs and manifest.jsonl.")
    p.add_argument("--n", type=int, required=True, help="number of records to write")
    p.add_argument("--seed", type=int, default=0, help="stream seed; record i uses default_rng([seed, i])")
    p.add_argument("--out", required=True, help="output folder (gets images/ and manifest.jsonl)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument(
        "--phrasing",
        type=paraphrase.phrasings_arg,
        default=(),
        help="reword instructions: a comma list of templates, train, heldout, mixed or family names "
        "(one row per record and phrasing, same images); default: the world's own templates, "
        "rows as always",
    )
    p.add_argument(
        "--slice",
        choices=("small", "overlap", "crowded", "ambiguous"),
        help="write records of a robustness slice instead of the world's own stream",
    )
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())

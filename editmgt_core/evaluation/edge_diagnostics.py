"""Where a VQ decoder's edges go: do the tokens carry an edge's position, and does the decoder put it there?

    python -m editmgt_core.evaluation.edge_diagnostics --model editmgt_core/assets/default-model --seed 4242

- *Token shifts*: the last object of each of `--records` world scenes (no style) is moved by k/8 px (k = -16..16)
  at the tokenizer's size; reported are the distinct token grids among the 33 shifts and the width (in pixels) of
  the run of shifts around the true position that keep its exact grid. Tokens that change at every shift carry
  the position to an eighth of a pixel, whatever a decoder reads back of it.
- *Edge placement*: the scenes rendered small and at `--scale` times that; the small render and the model's decoded
  tokens upscaled bicubically, each before and after `vq_eval.snap_edges`. Snapping helps an image whose edges are
  where the render's are and hurts one whose edges are displaced.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch
import torch.nn.functional as F

from editmgt_core import paths
from editmgt_core.model.loading import load_editor
from editmgt_core.train.sr_data import outline_masks, world_pairs
from editmgt_core.train.vq_eval import edge_sharpness, psnr, snap_edges
from editmgt_core.world import drawing, samples

SHIFTS = np.arange(-16, 17) / 8.0


def token_shifts(tokenizer, seed: int, records: int, size: int = 64) -> dict:
    """Distinct token grids among SHIFTS of one object, and the width of the same-grid run at the true position."""
    distinct, widths = [], []
    for i in range(records):
        scene = samples.record(seed, i).src_scene
        if scene.style is not None or not scene.objects:
            continue
        obj = scene.objects[-1]
        moved = [dataclasses.replace(obj, x=obj.x + d / size) for d in SHIFTS]
        images = [drawing.render(dataclasses.replace(scene, objects=scene.objects[:-1] + (o,)), size) for o in moved]
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
        grids = tokenizer.encode(x).flatten(1)
        same = (grids == grids[len(SHIFTS) // 2]).all(1).tolist()
        lo = hi = len(SHIFTS) // 2
        while lo > 0 and same[lo - 1]:
            lo -= 1
        while hi < len(SHIFTS) - 1 and same[hi + 1]:
            hi += 1
        widths.append((hi - lo + 1) / 8)
        distinct.append(len({tuple(g) for g in grids.tolist()}))
    return {
        "scenes": len(widths),
        "distinct_grids_median": float(np.median(distinct)),
        "same_grid_width_px_median": float(np.median(widths)),
    }


def edge_placement(editor, seed: int, n: int, size: int = 64, scale: int = 4) -> dict:
    """PSNR (dB) and edge sharpness (of the render's) at scale*size of the small render and of the decoded tokens,
    upscaled bicubically, plain and snapped."""
    small, large = world_pairs(seed, 0, n, size, scale)
    outline = outline_masks(seed, 0, n, size * scale)
    unit = (small + 1) / 2
    decoded = editor.vq.decode(editor.vq.encode(unit))  # [0, 1], at the decoder's size
    decoded = (
        F.interpolate(decoded * 2 - 1, size=(size, size), mode="area") if decoded.shape[-1] != size else decoded * 2 - 1
    )
    up = lambda t: F.interpolate(t, scale_factor=scale, mode="bicubic", align_corners=False)
    render = edge_sharpness(large, outline)
    out = {}
    for name, img in (("render", up(small)), ("decoded", up(decoded))):
        for how, t in (("bicubic", img), ("snapped", snap_edges(img))):
            out[f"{name}_{how}_psnr"] = round(psnr(t, large), 2)
            out[f"{name}_{how}_sharpness"] = round(edge_sharpness(t, outline) / max(render, 1e-9), 3)
    return out


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    editor = load_editor(args.model)
    report = {
        "model": str(args.model),
        "seed": args.seed,
        "token_shifts": token_shifts(editor.vq, args.seed, args.records),
        "edge_placement": edge_placement(editor, args.seed + 1, args.images),
    }
    print(json.dumps(report, indent=1))
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Do the tokens carry edge positions, and does the decoder use them?")
    p.add_argument("--model", default=str(paths.BUNDLED_MODEL), help="model folder")
    p.add_argument("--seed", type=int, required=True, help="world seed (placement uses seed + 1)")
    p.add_argument("--records", type=int, default=60, help="scenes for the token shifts")
    p.add_argument("--images", type=int, default=96, help="images for the edge placement")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())

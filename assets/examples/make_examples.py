"""Regenerate the bundled example images from the edit world (seed 2024, which the default model never trained on).

    python -m assets.examples.make_examples

Run from the repository root; examples.json lists the (image, instruction) pairs the app shows as Examples.
"""

import json
from pathlib import Path

from PIL import Image

from editmgt_core.world import edit_world

SEED, SIZE = 2024, 256  # the world renders the same scene at any size; the app resizes to the model's resolution
PICKS = {  # world record index -> file stem (edits the bundled model gets right at its defaults on most seeds)
    0: "remove-red-triangle",
    52: "recolor-yellow-circle",
    48: "add-blue-triangle",
    25: "replace-green-square",
    13: "gray-background",
    11: "sepia-filter",
}


def main() -> None:
    here = Path(__file__).parent
    listing = []
    for index, stem in PICKS.items():
        rec = edit_world.record(SEED, index, SIZE)
        Image.fromarray(rec.src).save(here / f"{stem}.png", optimize=True)
        listing.append({"image": f"{stem}.png", "instruction": rec.instruction})
    (here / "examples.json").write_text(json.dumps(listing, indent=2) + "\n")


if __name__ == "__main__":
    main()

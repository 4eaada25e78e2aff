"""Where the package's own files are: the bundled model and the app's examples ship inside it (package data), so a
plain `pip install` has them as a clone does."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ASSETS = PACKAGE / "assets"
BUNDLED_MODEL = ASSETS / "default-model"  # the small EditMGT trained on the synthetic edit world
EXAMPLES = ASSETS / "examples"  # the app's examples: examples.json and its images
CHECKOUT = PACKAGE.parent  # a clone's root (README, tests, app.py); an installed package has none of these beside it

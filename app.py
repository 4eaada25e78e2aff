"""EditMGT Studio's entry point: `python app.py [options]` (what a Hugging Face Space runs) serves the browser app,
`editmgt_core.app.server`, as `editmgt app [options]` does. `gradio app.py` (reload mode) reads `demo` from here."""

import os

if os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true"):
    import spaces  # noqa: F401 (first: it refuses to start once CUDA is initialised)

import logging

from editmgt_core.app.server import launch, make_demo, parse_args

if __name__ == "__main__":  # importing this file builds nothing (a demo made at import would load a model)
    logging.basicConfig(level=logging.INFO)
    args = parse_args()
    demo = make_demo(args)
    launch(demo, args.host, args.port)

"""A stand-in for Hugging Face's `spaces` package (ZeroGPU), put on sys.path by tests/test_zerogpu.py.

Like the real one it refuses to be imported once CUDA is initialised, and `GPU(duration=...)` takes a number or a
function of the wrapped function's arguments; it records every duration asked for in RECORDED (and in the file named
by ZEROGPU_RECORD, for the test to read).
"""

import json
import os

import torch

if torch.cuda.is_initialized():
    raise RuntimeError("CUDA has been initialized before importing the `spaces` package")

RECORDED = []


def GPU(fn=None, duration=60):  # noqa: N802 (the real API's name)
    def wrap(fn):
        def run(*args, **kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            RECORDED.append(seconds)
            if os.environ.get("ZEROGPU_RECORD"):
                with open(os.environ["ZEROGPU_RECORD"], "a") as f:
                    f.write(json.dumps(seconds) + "\n")
            return fn(*args, **kwargs)

        return run

    return wrap if fn is None else wrap(fn)

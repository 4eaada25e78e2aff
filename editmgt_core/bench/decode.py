"""What decoding costs in a streamed edit:
`python -m editmgt_core.bench.decode --model editmgt_core/assets/default-model`.

Streams edits of world records as the studio streams them (`streaming.stream`: the first step's preview, later
previews within its budget, the final decode) at the model's defaults, and times every VQ decode the edit makes
(previews and result) against the whole edit's wall time. Prints one line per edit and the share over all edits,
and the decoder's output size. One run measures both sides, so a busy machine slows them alike; nothing is asserted.
"""

from __future__ import annotations

import argparse
import time

import torch
from PIL import Image

from editmgt_core.edit.editing import default_options
from editmgt_core.model.loading import load_editor
from editmgt_core.studio.streaming import Final, stream
from editmgt_core.world import samples


class TimedDecode:
    """Wraps a decode function and sums the seconds spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, tokens):
        start = time.perf_counter()
        out = self.fn(tokens)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def with_fresh_head(editor, trunk_width: int):
    """The editor with an untrained super-resolving head on its decoder (a code trunk of `trunk_width`, 0: none):
    what a head of that shape costs, before one is trained; its pictures mean nothing."""
    import dataclasses

    from editmgt_core.model.encoders import VQTokenizer
    from editmgt_core.model.upsampler import Upsampler, codebook_width, fitted_config

    vq = editor.vq
    head = Upsampler(
        fitted_config(vq.vq.config, trunk_width > 0, trunk_width=trunk_width), codebook_width(vq.vq.config)
    )
    return dataclasses.replace(editor, vq=VQTokenizer(vq.vq, vq.image_range, head))


def main(args: argparse.Namespace) -> dict:
    if args.edits < 1:
        raise ValueError(f"--edits must be >= 1, got {args.edits}")
    torch.set_num_threads(args.threads)
    editor = load_editor(args.model)
    if args.trunk_width is not None:
        editor = with_fresh_head(editor, args.trunk_width)
    timed = TimedDecode(editor.vq.decode)
    editor.vq.decode = timed  # an instance attribute: only this editor, only this run
    options = default_options(editor, seed=1)
    edit_s = decode_s = 0.0
    for i in range(args.edits + 1):  # the first edit warms up and is not counted
        rec = samples.record(args.seed, i)
        before, calls = timed.seconds, timed.calls
        start = time.perf_counter()
        final = [item for item in stream(editor, Image.fromarray(rec.src), rec.instruction, options)][-1]
        wall, spent = time.perf_counter() - start, timed.seconds - before
        assert isinstance(final, Final)
        if i == 0:
            continue
        edit_s, decode_s = edit_s + wall, decode_s + spent
        print(
            f"edit {i}: {wall:.3f} s, {timed.calls - calls} decodes {spent:.3f} s ({spent / wall:.1%}); "
            f"output {final.image.size[0]}x{final.image.size[1]}"
        )
    share = decode_s / edit_s
    print(
        f"decoding: {decode_s:.3f} s of {edit_s:.3f} s over {args.edits} edits = {share:.1%} "
        f"({args.threads} threads, {options.steps} steps, decoder scale {editor.vq.scale})"
    )
    return {"share": share, "edit_seconds": edit_s, "decode_seconds": decode_s}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Share of a streamed edit's time spent decoding (previews + result).")
    p.add_argument("--model", default="editmgt_core/assets/default-model", help="model folder")
    p.add_argument("--edits", type=int, default=5, help="edits timed (after one warm-up)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=555, help="world seed of the edited records")
    p.add_argument(
        "--trunk-width",
        type=int,
        help="time an untrained head of this shape instead of the model's decoder (0: a head without a trunk)",
    )
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())

"""The studio's GPU work as ZeroGPU runs it: stoppable runs and sweeps cut into calls that fit a call's limit.

On a ZeroGPU Space `spaces.GPU` runs a decorated generator in a worker process forked from the web process and drives
it to its end whatever the consumer does: closing the stream (Stop) neither ends the decoding nor returns before the
worker is done, so a stopped visitor would be charged for the whole edit and the next edit would wait. The worker
sees only its pickled arguments and what it inherited when it was forked, so Stop reaches it through `StopBoard`,
shared memory made before any worker exists: the web side marks a run stopped, and the generator on the worker
checks the mark after every decoding step and ends (`until_stopped`), at most one step after Stop.

A call may ask for at most a few minutes of GPU time (a visitor's quota must cover what is asked for), so a sweep
whose cells need more runs as several calls (`sweep_plan`), one after another, each asking for its own share.
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

SLOTS = 256  # runs marked at once; a run's slot is its id modulo this
# ZeroGPU durations: a visitor's quota must cover the duration asked for, so ask for what a call needs. Per step at
# 1024x1024 working pixels: 2.7x the 0.19 s an fp32 step of the 1B model took on an H200, for the previews decoded
# during the edit and a smaller GPU slice (docs/published-model.md).
GPU_STEP_SECONDS = 0.5
GPU_START_SECONDS = 10  # text encoders, VQ encode and decode, hand-over
# The most one call asks for: ZeroGPU refuses a call beyond the visitor's limit ("The requested GPU duration is
# larger than the maximum allowed"), reported from about 120 s for visitors who are not logged in.
GPU_MAX_SECONDS = 120


def gpu_need(steps: int, pixels: int, cells: int = 1) -> float:
    """Seconds `cells` edits of `steps` steps at `pixels` working pixels need on a ZeroGPU slice, uncapped."""
    return GPU_START_SECONDS + cells * (steps * GPU_STEP_SECONDS * max(pixels, 64 * 64) / 2**20 + 2)


def gpu_seconds(steps: int, pixels: int, cells: int = 1) -> int:
    """Seconds to ask ZeroGPU for: `gpu_need`, at least 15 s and at most GPU_MAX_SECONDS."""
    return int(min(GPU_MAX_SECONDS, max(15, round(gpu_need(steps, pixels, cells)))))


class StopBoard:
    """Which runs were stopped, in shared memory a forked worker inherits (made before the first GPU call)."""

    def __init__(self, slots: int = SLOTS):
        self._marks = multiprocessing.RawArray("q", slots)  # shared, no lock: one writer per run id
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def open(self) -> int:
        """A new run's id (a plain int: it crosses to the worker as an argument)."""
        with self._lock:
            return next(self._ids)

    def stop(self, run: int) -> None:
        self._marks[run % len(self._marks)] = run

    def stopped(self, run: int) -> bool:
        return self._marks[run % len(self._marks)] == run


def until_stopped(items: Iterable, board: StopBoard, run: int) -> Iterator:
    """`items` until `run` is marked stopped, checked after each item (each decoding step); closing this closes the
    source generator, which ends the edit's sampling loop."""
    source = iter(items)
    try:
        for item in source:
            yield item
            if board.stopped(run):
                return
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


class StoppableRun:
    """The web side of a run: iterates `items` (started at once), and on close, or when dropped, marks the run
    stopped first, so the worker ends within a step and closing returns without waiting for the whole edit."""

    def __init__(self, items: Iterator, board: StopBoard, run: int):
        self._items, self.board, self.run = items, board, run

    def __iter__(self) -> StoppableRun:
        return self

    def __next__(self):
        return next(self._items)

    def close(self) -> None:
        if self._items is None:
            return
        items, self._items = self._items, None
        self.board.stop(self.run)
        close = getattr(items, "close", None)
        if close is not None:
            close()

    def __del__(self) -> None:
        self.close()


def start(board: StopBoard, prefetch: Callable, gpu_fn: Callable, *args) -> StoppableRun:
    """A run of `gpu_fn(*args, run)` (the run's id last), stepped ahead by `prefetch`, stoppable."""
    run = board.open()
    return StoppableRun(prefetch(gpu_fn(*args, run)), board, run)


def start_sweep(
    board: StopBoard,
    prefetch: Callable,
    gpu_sweep: Callable,
    fits: Callable[[int], bool],
    image,
    instruction,
    options,
    lams,
    gammas,
    mask,
    pixels,
) -> StoppableRun:
    """A sweep as one or more calls of `gpu_sweep(image, instruction, options, lams, gammas, mask, pixels, run)`
    (`sweep_plan` with `fits`), its cells numbered in the whole grid, stoppable between any two steps."""
    run = board.open()

    def call(gammas_part, lams_part):  # one ZeroGPU call per part; none once stopped
        if board.stopped(run):
            return iter(())
        return gpu_sweep(image, instruction, options, lams_part, gammas_part, mask, pixels, run)

    items = chained(sweep_plan(lams, gammas, fits), call, len(lams) * len(gammas))
    return StoppableRun(prefetch(items), board, run)


def sweep_plan(lams: Sequence[float], gammas: Sequence[float], fits: Callable[[int], bool]) -> list[tuple]:
    """The sweep's (γ, λ) grid (γ-major, as streaming.sweep orders it) as calls: [(gammas, lams, offset)], each a
    product of its gammas and lams starting at cell `offset`. One call when all cells fit (`fits(cells)`: the call
    may ask for their duration), else one γ row per call, cut into runs of λ values that fit (at least one each)."""
    gammas = list(gammas)
    if not gammas or fits(len(lams) * len(gammas)):
        return [(gammas, list(lams), 0)]
    per_call = max(1, max((k for k in range(1, len(lams) + 1) if fits(k)), default=1))
    plan = []
    for g_index, gamma in enumerate(gammas):
        for start in range(0, len(lams), per_call):
            plan.append(([gamma], list(lams[start : start + per_call]), g_index * len(lams) + start))
    return plan


def chained(calls: Sequence[tuple], start: Callable, total: int) -> Iterator:
    """The calls of a `sweep_plan` one after another (start(gammas, lams) -> the call's items), their cells
    renumbered into the whole grid of `total` cells."""
    for gammas, lams, offset in calls:
        items = start(gammas, lams)
        try:
            for item in items:
                fields = {f.name for f in dataclasses.fields(item)}
                renumbered = {"index": item.index + offset, **({"cells": total} if "cells" in fields else {})}
                yield dataclasses.replace(item, **renumbered)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

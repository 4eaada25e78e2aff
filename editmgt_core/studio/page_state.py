"""The page's runs: which run a page shows, whether it was stopped, and the status line of each state it can be in.

A page shows one run at a time. Pressing Edit begins a run (queued until the server takes it), which then encodes,
decodes step k of N and ends done, stopped, refused or failed; pressing Edit again, or restoring an earlier result,
supersedes it. `Runs` is the server's record of that, shared by the page's events: Stop marks a run from its own
(unqueued) event, and the streaming handler reads the mark between steps and ends with a clean update, so a stop
never cancels an event mid-update (a cancelled stream leaves gradio's error badges on its outputs). No gradio here.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass

QUEUED = "at its place in the queue, before it started"  # where a Stop can find a run besides step k/N
ENCODING = "at encoding, before the first step"
KEEP = 256  # runs remembered: a page's stale run id is forgotten after this many newer runs (server-wide)


@dataclass
class Run:
    """One run's marks. phase: 'queued' until its handler starts, then 'running', then 'ended'."""

    phase: str = "queued"
    stopped: str | None = None  # where Stop found it (QUEUED, ENCODING, 'at step 3/12'), else None
    superseded: bool = False  # a newer run (or a restore) took over the page: this one shows nothing more


class Runs:
    """Thread-safe run marks by run id (ids are strings: they travel through the page's state)."""

    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def begin(self, previous: str | None = None) -> str:
        """A new run for a page whose current run was `previous` (that one is stopped and superseded)."""
        self.supersede(previous)
        with self._lock:
            run_id = f"run-{next(self._ids)}"
            self._runs[run_id] = Run()
            for old in list(self._runs)[: max(0, len(self._runs) - KEEP)]:
                del self._runs[old]
        return run_id

    def get(self, run_id: str | None) -> Run:
        with self._lock:
            return self._runs.get(run_id or "", Run(phase="ended", superseded=True))

    def start(self, run_id: str) -> Run:
        """The run's handler has started: -> its marks (stopped while queued, superseded, or running now)."""
        with self._lock:
            run = self._runs.setdefault(run_id, Run())
            if run.phase == "queued":
                run.phase = "running"
            return run

    def stop(self, run_id: str | None, where: str) -> Run | None:
        """Stop pressed while the page showed `where`; -> the run's marks, None when it was not running."""
        with self._lock:
            run = self._runs.get(run_id or "")
            if run is None or run.phase == "ended" or run.superseded:
                return None
            run.stopped = run.stopped or (QUEUED if run.phase == "queued" else where)
            return run

    def end(self, run_id: str) -> None:
        with self._lock:
            if run_id in self._runs:
                self._runs[run_id].phase = "ended"

    def supersede(self, run_id: str | None) -> None:
        with self._lock:
            run = self._runs.get(run_id or "")
            if run is not None:
                run.superseded = True
                run.stopped = run.stopped or "superseded"


# ---------------------------------------------------------------------------------------------------- status lines


def where_stopped(status: str | None) -> str:
    """Where a run was when Stop was pressed, from the status line the page showed: 'at step k/N', or ENCODING
    when no step was shown yet."""
    found = re.search(r"[Ss]tep (\d+)/(\d+)", status or "")
    return f"at step {found[1]}/{found[2]}" if found else ENCODING


def queued() -> str:
    return (
        "**Queued** · waiting for the edits ahead of this one to finish (the position is shown at the right). "
        "**Stop** takes it out."
    )


def stopping(where: str) -> str:
    if where == QUEUED:
        return stopped(QUEUED, None)
    wait = (
        "the image is being encoded; it ends as soon as that is done"
        if where == ENCODING
        else "it ends after the current step"
    )
    return f"**Stopping** {where}… ({wait})"


def stopped(where: str, previous: str | None) -> str:
    """The status after a stopped run: where it ended and what the page shows now (previous: the result kept on
    screen, described; None: there was none)."""
    kept = (
        f"The panels show the previous result again ({previous}); nothing of the stopped edit was kept."
        if previous
        else "Nothing was kept: the stopped edit made no result, and there is no earlier one to show."
    )
    return f"**Stopped** {where}. {kept} Press **Edit** to run again."


def refused(message: str, previous: str | None) -> str:
    """A refusal (strict mode, an out-of-domain input) in the status, with what to do."""
    kept = f"\n\nThe panels still show the previous result ({previous})." if previous else ""
    fix = "Untick **Strict** to edit anyway (with a warning), or use an image and wording like the examples'."
    return f"**Refused** · {message}\n\n{fix}{kept}"


def failed(message: str, previous: str | None) -> str:
    """Bad input or a failed edit in the status: what happened; the message itself says how to fix it."""
    kept = f"\n\nThe panels still show the previous result ({previous})." if previous else ""
    return f"**Not edited** · {message}{kept}"


def describe(parameters: dict) -> str:
    """A run in a few words for the status: its instruction (shortened) and seed."""
    text = parameters["instruction"]
    text = text if len(text) <= 48 else text[:47] + "…"
    return f"'{text}', seed {parameters['seed']}"

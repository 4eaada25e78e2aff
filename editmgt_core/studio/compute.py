"""The studio's compute thread: every torch call the studio makes (loading the model, the domain check, each decoding
step of an edit or a sweep) runs on this one thread, whichever web-server thread asked for it.

Why one thread: torch's CPU wheels parallelise with libgomp, which keeps a team of worker threads for every thread
that has entered a parallel region. Once the process holds more of those workers than there are CPUs, libgomp stops
letting them spin between regions, and each of the hundreds of small operations in a decoding step then waits for
a sleeping worker to wake. Measured on 2 cores at 2 torch threads, the bundled model's edit takes about 550 ms when
the model is loaded and run on one thread and about 750 ms when it is loaded on one thread and run on another (see
docs/studio.md). A web server runs its handlers on a pool of threads; sending the work here keeps the process at
one team.

`call` runs a function here and waits for its result. `prefetch` steps an iterator here, up to `depth` items ahead
of its consumer, one item per task: edits running at once interleave step by step, and a consumer that stops
reading never blocks the thread.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future

NAME = "editmgt-compute"
log = logging.getLogger("editmgt.compute")

_tasks: queue.SimpleQueue = queue.SimpleQueue()
_started = threading.Lock()
_thread: threading.Thread | None = None


def _serve() -> None:
    while True:
        task = _tasks.get()
        try:
            task()
        except BaseException:  # a task reports its own errors; this keeps the thread alive whatever happens
            log.exception("a compute task failed")
        del task  # an idle thread holds no reference: a prefetch its consumer dropped is freed, and so stopped


def _submit(task: Callable[[], None]) -> None:
    global _thread
    with _started:
        if _thread is None:  # a daemon: an interpreter exiting does not wait for an edit in progress
            _thread = threading.Thread(target=_serve, name=NAME, daemon=True)
            _thread.start()
    _tasks.put(task)


def on_compute_thread() -> bool:
    return threading.current_thread() is _thread


def call(fn: Callable, /, *args, **kwargs):
    """fn(*args, **kwargs) on the compute thread (with the caller's context variables); waits and returns its
    result or raises its exception. On the compute thread itself it runs at once."""
    if on_compute_thread():
        return fn(*args, **kwargs)
    future: Future = Future()
    context = contextvars.copy_context()

    def task() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(context.run(fn, *args, **kwargs))
            except BaseException as err:
                future.set_exception(err)

    _submit(task)
    return future.result()


_END = object()


class prefetch:  # noqa: N801 (used as a function: prefetch(items))
    """Iterate `items` on the compute thread up to `depth` items ahead, so that the consumer's work per item
    (rendering, sending) overlaps with producing the next one. The first item is started at once, so the caller can
    send something (a "started" update) while it is computed. Closing this iterator, or dropping it, stops the work
    between items (a generator is closed on the compute thread); the items' exceptions are raised here."""

    def __init__(self, items: Iterable, depth: int = 2):
        self._items, self._source, self._depth = items, None, max(1, depth)
        self._ready: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._ahead, self._busy, self._finished, self._closed = 0, False, False, False
        self._context = contextvars.copy_context()  # the caller's context variables (e.g. the web request) go along
        self._schedule()

    def _schedule(self) -> None:
        with self._lock:
            if self._busy or self._finished or self._closed or self._ahead >= self._depth:
                return
            self._busy, self._ahead = True, self._ahead + 1
        _submit(self._step)

    def _step(self) -> None:
        entry = None
        if not self._closed:
            try:
                if self._source is None:
                    self._source = iter(self._items)
                entry = (self._context.run(next, self._source), None)
            except StopIteration:
                entry = (_END, None)
            except BaseException as err:  # handed to the consumer
                entry = (_END, err)
        with self._lock:
            self._busy = False
            self._finished = self._finished or entry is None or entry[0] is _END
        if entry is not None:
            self._ready.put(entry)
        if self._closed:
            self._close_source()
        else:
            self._schedule()

    def _close_source(self) -> None:  # on the compute thread: a generator's cleanup may use the device
        source, self._source, self._items = self._source, None, None
        close = getattr(source, "close", None)
        if close is not None:
            self._context.run(close)

    def __iter__(self) -> prefetch:
        return self

    def __next__(self):
        if self._closed:
            raise StopIteration
        item, err = self._ready.get()
        with self._lock:
            self._ahead -= 1
        if item is _END:
            self._closed = True
            if err is not None:
                raise err
            raise StopIteration
        self._schedule()
        return item

    def close(self) -> None:
        """Stop producing; a generator being iterated is closed on the compute thread after its current item."""
        with self._lock:
            if self._closed:
                return
            self._closed, busy = True, self._busy
        if not busy:  # else the running step closes it when it ends
            _submit(self._close_source)

    def __del__(self) -> None:
        if hasattr(self, "_lock"):
            self.close()

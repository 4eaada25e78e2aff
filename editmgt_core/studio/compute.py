"""The studio's compute thread: every torch call the studio makes (loading the model, the domain check, each decoding
step of an edit or a sweep) runs on this one thread, whichever web-server thread asked for it.

Why one thread: torch's CPU wheels parallelise with libgomp, which keeps a team of worker threads for every thread
that has entered a parallel region. Once the process holds more of those workers than there are CPUs, libgomp stops
letting them spin between regions, and each of the hundreds of small operations in a decoding step then waits for
a sleeping worker to wake. Measured on 2 cores at 2 torch threads, the bundled model's edit takes about 550 ms when
the model is loaded and run on one thread and about 750 ms when it is loaded on one thread and run on another (see
docs/studio.md). A web server runs its handlers on a pool of threads; sending the work here keeps the process at
one team.

A `ComputeThread` is that thread (an executor of one worker), owned by whoever serves (the app's context).
`call` runs a function there and waits for its result. `prefetch` steps an iterator there, up to `depth` items ahead
of its consumer, one item per task: edits running at once interleave step by step, and a consumer that stops
reading never blocks the thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

NAME = "editmgt-compute"
log = logging.getLogger("editmgt.compute")
_END = object()


class ComputeThread:
    """One worker thread for every torch call of a server; tasks run in the order they were submitted."""

    def __init__(self, name: str = NAME):
        self.name = name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=self._named)
        self._thread: threading.Thread | None = None

    def _named(self) -> None:
        self._thread = threading.current_thread()
        self._thread.name = self.name

    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, task: Callable[[], None]) -> None:
        """Run task() there; its errors are logged (a task reports its own to whoever waits for it)."""
        self._executor.submit(_logged, task)

    def call(self, fn: Callable, /, *args, **kwargs):
        """fn(*args, **kwargs) there (with the caller's context variables); waits and returns its result or raises
        its exception. On the thread itself it runs at once."""
        if self.on_thread():
            return fn(*args, **kwargs)
        context = contextvars.copy_context()
        return self._executor.submit(context.run, fn, *args, **kwargs).result()

    def prefetch(self, items: Iterable, depth: int = 2) -> Prefetch:
        """`items` stepped there, up to `depth` ahead of the consumer (see Prefetch)."""
        return Prefetch(self, items, depth)

    def shutdown(self) -> None:
        """Finish the tasks already submitted, then end the thread."""
        self._executor.shutdown(wait=True, cancel_futures=False)


def _logged(task: Callable[[], None]) -> None:
    try:
        task()
    except BaseException:  # noqa: BLE001 (a task reports its own errors; the thread goes on whatever happens)
        log.exception("a compute task failed")


class Prefetch(Iterator):
    """Iterate `items` on the compute thread up to `depth` items ahead, so that the consumer's work per item
    (rendering, sending) overlaps with producing the next one. The first item is started at once, so the caller can
    send something (a "started" update) while it is computed. Closing this iterator, or dropping it, stops the work
    between items (a generator is closed on the compute thread); the items' exceptions are raised here."""

    def __init__(self, compute: ComputeThread, items: Iterable, depth: int = 2):
        self._state = _Stepper(compute, items, max(1, depth))
        weakref.finalize(self, self._state.close)  # dropped unread: stop (the tasks hold the stepper, not this)
        self._state.schedule()

    def __next__(self):
        return self._state.take()

    def close(self) -> None:
        """Stop producing; a generator being iterated is closed on the compute thread after its current item."""
        self._state.close()


class _Stepper:
    """A Prefetch's state, shared with the tasks it submits."""

    def __init__(self, compute: ComputeThread, items: Iterable, depth: int):
        self.compute, self.items, self.source, self.depth = compute, items, None, depth
        self.ready: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.ahead, self.busy, self.finished, self.closed = 0, False, False, False
        self.context = contextvars.copy_context()  # the caller's context variables (e.g. the web request) go along

    def schedule(self) -> None:
        with self.lock:
            if self.busy or self.finished or self.closed or self.ahead >= self.depth:
                return
            self.busy, self.ahead = True, self.ahead + 1
        self.compute.submit(self.step)

    def step(self) -> None:
        entry = None
        if not self.closed:
            try:
                if self.source is None:
                    self.source = iter(self.items)
                entry = (self.context.run(next, self.source), None)
            except StopIteration:
                entry = (_END, None)
            except BaseException as err:  # noqa: BLE001 (handed to the consumer)
                entry = (_END, err)
        with self.lock:
            self.busy = False
            self.finished = self.finished or entry is None or entry[0] is _END
        if entry is not None:
            self.ready.put(entry)
        if self.closed:
            self.close_source()
        else:
            self.schedule()

    def close_source(self) -> None:  # on the compute thread: a generator's cleanup may use the device
        source, self.source, self.items = self.source, None, None
        close = getattr(source, "close", None)
        if close is not None:
            self.context.run(close)

    def take(self):
        if self.closed:
            raise StopIteration
        item, err = self.ready.get()
        with self.lock:
            self.ahead -= 1
        if item is _END:
            self.closed = True
            if err is not None:
                raise err
            raise StopIteration
        self.schedule()
        return item

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed, busy = True, self.busy
        if not busy:  # else the running step closes it when it ends
            with contextlib.suppress(RuntimeError):  # shut down (the interpreter is exiting): nothing runs any more
                self.compute.submit(self.close_source)

"""The studio's compute thread: one thread runs every call and every prefetched item, in order, ahead of the
consumer by at most `depth`; errors reach the caller; closing stops the work; edits at once interleave."""

import contextvars
import threading
import time

import pytest

from editmgt_core.studio import compute
from editmgt_core.studio.compute import ComputeThread

REQUEST = contextvars.ContextVar("request", default=None)


@pytest.fixture
def ct():
    thread = ComputeThread()
    yield thread
    thread.shutdown()


def thread_name():
    return threading.current_thread().name


def wait_for(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_call_runs_on_the_one_compute_thread_with_the_callers_context(ct):
    REQUEST.set("caller")
    assert ct.call(lambda: (thread_name(), REQUEST.get())) == (compute.NAME, "caller")
    names = []
    workers = [threading.Thread(target=lambda: names.append(ct.call(thread_name))) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert names == [compute.NAME] * 4
    assert ct.call(lambda: ct.call(thread_name)) == compute.NAME  # nested: at once, no deadlock
    with pytest.raises(ZeroDivisionError):
        ct.call(lambda: 1 / 0)
    assert ct.call(lambda x, y=0: x + y, 2, y=3) == 5  # the thread survived the error


def test_prefetch_makes_items_on_the_compute_thread_in_order_and_at_most_depth_ahead(ct):
    made, REQUEST_SEEN = [], []

    def items():
        for i in range(6):
            made.append((i, thread_name()))
            REQUEST_SEEN.append(REQUEST.get())
            yield i

    REQUEST.set("web request")
    it = ct.prefetch(items(), depth=2)
    assert wait_for(lambda: len(made) == 2)  # started at once, before anything is taken
    time.sleep(0.2)
    assert len(made) == 2  # no further than depth ahead
    assert next(it) == 0 and wait_for(lambda: len(made) == 3)
    assert list(it) == [1, 2, 3, 4, 5]
    assert {name for _, name in made} == {compute.NAME} and set(REQUEST_SEEN) == {"web request"}
    assert list(it) == []  # finished stays finished


def test_prefetch_hands_the_error_to_the_consumer(ct):
    def items():
        yield 1
        raise ValueError("bad step")

    it = ct.prefetch(items())
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad step"):
        next(it)
    assert ct.call(lambda: 7) == 7  # the thread carries on


def test_closing_stops_the_work_and_closes_the_generator_on_the_compute_thread(ct):
    made, closed = [], []

    def items():
        try:
            for i in range(1000):
                made.append(i)
                time.sleep(0.01)
                yield i
        finally:
            closed.append(thread_name())

    it = ct.prefetch(items())
    assert next(it) == 0
    it.close()
    assert wait_for(lambda: closed == [compute.NAME])
    count = len(made)
    time.sleep(0.1)
    assert len(made) == count < 10 and list(it) == []
    dropped = ct.prefetch(items())  # dropping the iterator stops it too
    assert wait_for(lambda: len(made) > count)
    del dropped
    assert wait_for(lambda: len(closed) == 2)


def test_edits_at_once_interleave_and_a_stalled_consumer_blocks_nobody(ct):
    order = []

    def items(name, n):
        for i in range(n):
            order.append(name)
            time.sleep(0.01)
            yield i

    stalled = ct.prefetch(items("stalled", 100), depth=1)  # never read: it stops one item ahead
    a, b = ct.prefetch(items("a", 5)), ct.prefetch(items("b", 5))
    assert list(a) == list(range(5)) and list(b) == list(range(5))
    assert order.count("stalled") == 1
    first_b = order.index("b")
    assert "a" in order[first_b:], "b waited for all of a: the two were not interleaved"
    stalled.close()


def test_each_server_owns_its_thread_and_shutting_down_finishes_its_work():
    a, b = ComputeThread("compute-a"), ComputeThread("compute-b")
    assert (a.call(thread_name), b.call(thread_name)) == ("compute-a", "compute-b")
    assert not a.on_thread() and a.call(a.on_thread) and not a.call(b.on_thread)
    done = []
    a.submit(lambda: (time.sleep(0.05), done.append(1)))
    a.shutdown()  # waits for what was submitted
    assert done == [1]
    b.shutdown()

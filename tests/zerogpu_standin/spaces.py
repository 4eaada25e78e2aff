"""A stand-in for Hugging Face's `spaces` package (ZeroGPU), put on sys.path by tests/test_zerogpu.py.

It behaves as the real `spaces.GPU` does where the studio can tell:

- importing it once CUDA is initialised fails;
- `GPU(duration=...)` takes a number or a function, which gets the same arguments as the decorated function; every
  duration asked for is recorded in RECORDED (and in the file named by ZEROGPU_RECORD), and one above the visitor's
  maximum (ZEROGPU_MAX_SECONDS, default 120) is refused with the real message;
- the decorated function runs in a worker, not on the caller's thread; its arguments and results cross pickled (the
  real worker is a forked process), so anything that cannot be pickled fails here as it fails there;
- one GPU is lent at a time: a call waits until the previous one has released it (a generator's, when the worker's
  generator has ended);
- a generator is driven to its end by the worker whatever the consumer does, as fast as the worker goes: its items
  queue up, and closing the stream returns only when the worker's generator has ended (the real handler waits for
  its queue filler to see the end), so the GPU stays taken until then.

The real worker is a forked process and sees only what it inherited at the fork; this one is a thread. Code that
signals the worker must use memory a forked process shares (the studio's StopBoard), which behaves the same here.
"""

import inspect
import json
import os
import pickle
import queue
import threading

import torch

if torch.cuda.is_initialized():
    raise RuntimeError("CUDA has been initialized before importing the `spaces` package")

RECORDED = []
_GPU = threading.Lock()  # the one GPU this stand-in lends
_END = object()


def _crossed(value):
    """What arrives on the other side of the process boundary."""
    return pickle.loads(pickle.dumps(value))


def _schedule(task, duration, args, kwargs) -> int:
    seconds = duration(*args, **kwargs) if callable(duration) else duration
    RECORDED.append(seconds)
    if os.environ.get("ZEROGPU_RECORD"):
        with open(os.environ["ZEROGPU_RECORD"], "a") as f:
            f.write(json.dumps(seconds) + "\n")
    limit = int(os.environ.get("ZEROGPU_MAX_SECONDS", "120"))
    if seconds > limit:
        raise RuntimeError(f"The requested GPU duration ({seconds}s) is larger than the maximum allowed")
    return seconds


def _regular(task, duration):
    def handler(*args, **kwargs):
        _schedule(task, duration, args, kwargs)
        args, kwargs = _crossed((args, kwargs))
        out = {}
        with _GPU:
            worker = threading.Thread(target=lambda: out.update(value=_crossed(task(*args, **kwargs))), name="gpu")
            worker.start()
            worker.join()
        if "value" not in out:
            raise RuntimeError("GPU task aborted")
        return out["value"]

    return handler


def _generator(task, duration):
    def handler(*args, **kwargs):
        _schedule(task, duration, args, kwargs)
        args, kwargs = _crossed((args, kwargs))
        results: queue.SimpleQueue = queue.SimpleQueue()

        def drive():  # to the end, whatever the consumer does
            try:
                for item in task(*args, **kwargs):
                    results.put((pickle.dumps(item), None))
            except Exception as err:
                results.put((None, err))
            finally:
                _GPU.release()  # as the real queue filler releases the GPU: when the generator ends
                results.put((_END, None))

        _GPU.acquire()
        worker = threading.Thread(target=drive, name="gpu")
        worker.start()
        try:
            while True:
                item, err = results.get()
                if err is not None:
                    raise err
                if item is _END:
                    return
                yield pickle.loads(item)
        finally:
            worker.join()  # closing returns once the worker's generator has ended

    return handler


def GPU(task=None, *, duration=60):  # noqa: N802 (the real API's name)
    def wrap(task):
        return _generator(task, duration) if inspect.isgeneratorfunction(task) else _regular(task, duration)

    return wrap if task is None else wrap(task)

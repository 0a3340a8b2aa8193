"""Work an extraction does while its pruning sweep runs.

The sweep keeps every core busy only part of the time: its rounds depend on each other, so
on two workers one of them often waits at the end of a round (sort's sweep left 58 of its
482 core-seconds idle). What the extraction needs after the sweep but not before it (LLN-A's
faithfulness, a report figure, and the judges' sequences with the model's decisions on
them) is computed meanwhile, in one thread of this process at the lowest CPU priority (with
the torch threads it starts, which inherit it), so it takes the cores the pruning workers
leave idle and hardly slows them.
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Future

LOWEST = 19                  # the nice value of the thread (Linux: per thread)


def _lowest_priority() -> None:
    """The calling thread at the lowest priority, where the system allows it (Linux sets a
    thread's nice value by its id; elsewhere this changes nothing)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST)
    except (AttributeError, OSError):
        pass


class Meanwhile:
    """A context with one low-priority worker thread. Its torch work runs on torch threads of
    its own (the thread count is per thread), which it starts, so they inherit its priority.
    Leaving the context waits for the work submitted; leaving it on an error (Ctrl-C in the
    sweep) does not: the thread is a daemon, and work not started is dropped."""

    def __enter__(self) -> "Meanwhile":
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="rasp-meanwhile", daemon=True)
        self._thread.start()
        return self

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        _lowest_priority()
        while (job := self._jobs.get()) is not None:
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:     # noqa: BLE001 -- handed to whoever waits on it
                future.set_exception(exc)

    def __exit__(self, kind, *exc) -> None:
        if kind is not None:                 # drop what has not started; do not wait
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[0].cancel()
        self._jobs.put(None)
        if kind is None:
            self._thread.join()

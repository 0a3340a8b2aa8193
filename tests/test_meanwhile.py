"""Work done while the sweep runs (extractor/decompile/meanwhile.py): results and errors come
back through futures, the thread runs at the lowest priority, and leaving on an error does
not wait for work nobody will read."""

import os
import sys
import threading
import time

import pytest

from extractor.decompile.meanwhile import LOWEST, Meanwhile


def test_results_and_errors_come_back_in_order():
    seen = []
    with Meanwhile() as meanwhile:
        first = meanwhile.submit(lambda: seen.append("first") or 1)
        failing = meanwhile.submit(lambda: 1 / 0)
        last = meanwhile.submit(lambda x: seen.append("last") or x + 1, 41)
    assert first.result() == 1 and last.result() == 42 and seen == ["first", "last"]
    with pytest.raises(ZeroDivisionError):
        failing.result()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_the_thread_runs_at_the_lowest_priority():
    def nice():
        stat = open(f"/proc/self/task/{threading.get_native_id()}/stat").read()
        return int(stat.rsplit(")", 1)[1].split()[16])
    with Meanwhile() as meanwhile:
        got = meanwhile.submit(nice)
    assert got.result() == max(LOWEST, os.nice(0)) and nice() == os.nice(0)


def test_leaving_on_an_error_drops_what_has_not_started():
    started = threading.Event()
    with pytest.raises(KeyboardInterrupt):
        with Meanwhile() as meanwhile:
            slow = meanwhile.submit(lambda: started.set() or time.sleep(2))
            queued = meanwhile.submit(lambda: "never")
            started.wait(5)
            begun = time.monotonic()
            raise KeyboardInterrupt
    assert time.monotonic() - begun < 1.0          # the running job is not waited for
    assert queued.cancelled() and not slow.done()

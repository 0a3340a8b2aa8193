"""How many threads torch computes with while a program is judged.

The interpreter's numpy work runs between torch calls, and torch's idle worker threads spin
meanwhile (5-10x slower on two cores), so the extractor judges with one torch thread
(`one_thread`). Running the model itself over a judge's sequences is torch's own work, and
there the threads `one_thread` took away are given back (`all_threads`): on two cores sort's
3,000 held-out sequences take 11 s instead of 20 s.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

_replaced: list[int] = []        # the counts one_thread() replaced, outermost first


@contextmanager
def one_thread():
    """One torch thread inside the block."""
    _replaced.append(torch.get_num_threads())
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(_replaced.pop())


@contextmanager
def all_threads():
    """Inside `one_thread`, the threads the outermost one replaced; elsewhere nothing changes."""
    current = torch.get_num_threads()
    if _replaced:
        torch.set_num_threads(_replaced[0])
    try:
        yield
    finally:
        torch.set_num_threads(current)

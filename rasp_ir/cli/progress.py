"""Progress of the long commands (`extract`, `train`, `eval`, `verify`, `equiv`) on standard
error: what stage runs, run i of N, time elapsed and an estimate of the time left.

On a terminal the display is a tqdm bar (one line, redrawn); when standard error is a file or
a pipe (a CI log, `2> log`), plain log lines instead, at most one every LOG_EVERY seconds per
stage plus each stage's start and end; `--quiet` shows nothing. The library reports through
two hooks and never draws anything itself:

* `progress(text, done=None, total=None)`: a step, and for counted steps how many of how many
  are done (the extractor's hook; `Progress` is such a callable);
* `progress.bar(total, description, unit)`: an object with `update(n)`, `set_postfix(**kw)`
  and `close()` (the trainer's and the evaluator's, tqdm's own interface).
"""

from __future__ import annotations

import sys
import time

LOG_EVERY = 10.0           # seconds between log lines of one stage when not on a terminal
FIRST_ESTIMATE = 2.0       # seconds into a counted stage before its first estimate is logged:
                           # long enough for a rate, soon enough to stop a run of days
                           # (`equiv --bound 10**12` estimates thousands of hours at once)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}:{seconds:02d} min"
    hours, minutes = divmod(minutes, 60)
    if hours >= 48:
        return f"{hours / 24:,.0f} days"
    return f"{hours}:{minutes:02d} h"


class Progress:
    """The progress display of one command; `close()` (or `progress(None)`) clears it."""

    def __init__(self, command: str, quiet: bool = False, stream=None):
        self.command = command
        self.stream = sys.stderr if stream is None else stream
        self.enabled = not quiet and self.stream is not None
        self.tty = bool(self.enabled and getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self._bar = None            # the tqdm bar of the current counted stage (terminal)
        self._stage: str | None = None
        # (stage, started, done then, last log time, estimated yet) when logging
        self._counted: tuple | None = None

    # -- the extractor's hook

    def __call__(self, text: str | None, done: int | None = None,
                 total: int | None = None) -> None:
        if text is None:
            self.close()
        elif total:
            self.count(text, done or 0, total)
        else:
            self.note(text)

    def note(self, text: str) -> None:
        """A step without a count: shown until the next one."""
        if not self.enabled:
            return
        self._end_count()
        self._stage = text
        if self.tty:
            self._status(f"{self.command}: {text}  [{_clock(self.elapsed)}]")
        else:
            self._log(text)

    def count(self, text: str, done: int, total: int) -> None:
        """Counted step `done` of (at most) `total`, with `text` saying what the last one did;
        the stage is the text before its first ':'."""
        if not self.enabled:
            return
        stage = text.split(":", 1)[0]
        if self.tty:
            if self._bar is None or self._bar.desc != f"{self.command}: {stage}":
                self._end_count()
                self._status(None)
                # the rate (and so the estimate) counts from this first step on
                self._bar = self._tqdm(total, f"{self.command}: {stage}", "run", initial=done)
            self._bar.total = max(total, done)
            self._bar.n = done
            self._bar.set_postfix_str(text[len(stage) + 1:].strip(), refresh=False)
            self._bar.refresh()
            return
        now = time.monotonic()
        if self._counted is None or self._counted[0] != stage:
            self._counted = (stage, now, done, float("-inf"), False)
        _, first_time, first_done, last, estimated = self._counted
        first_estimate = not estimated and done > first_done and \
            now - first_time >= FIRST_ESTIMATE
        if done >= total or done == first_done or now - last >= LOG_EVERY or first_estimate:
            # the rate of the steps since the first one heard (its own start is not known)
            rate = (done - first_done) / (now - first_time) if done > first_done else None
            eta = (f", about {_clock((total - done) / rate)} left"
                   if rate and done < total else "")
            self._log(f"{stage} {done:,}/{total:,}{eta}: {text[len(stage) + 1:].strip()}")
            self._counted = (stage, first_time, first_done, now, estimated or bool(eta))

    # -- the trainer's and evaluator's hook

    def bar(self, total: int, description: str, unit: str = "it"):
        """A bar of `total` steps: tqdm on a terminal, log lines otherwise, nothing if quiet."""
        if not self.enabled:
            return _NoBar()
        self._end_count()
        same = description == self.command          # `rasp eval`'s bar is called "eval"
        if self.tty:
            self._status(None)
            return self._tqdm(total, self.command if same else f"{self.command}: {description}",
                              unit)
        return _LogBar(self, total, "" if same else description, unit)

    # -- shared

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def close(self) -> None:
        self._end_count()
        if self.tty:
            self._status(None)

    def _tqdm(self, total, description, unit, initial=0):
        from tqdm import tqdm
        return tqdm(total=total, desc=description, file=self.stream, leave=False,
                    dynamic_ncols=True, unit=unit, initial=initial)

    def _end_count(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _status(self, text: str | None) -> None:
        self.stream.write("\r\033[K" + (text or ""))
        self.stream.flush()

    def _log(self, text: str) -> None:
        print(f"[{_clock(self.elapsed):>8}] {self.command}: {text}", file=self.stream,
              flush=True)


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


class _LogBar:
    """tqdm's interface, written as log lines: the start, every LOG_EVERY seconds, the end."""

    def __init__(self, progress: Progress, total: int, description: str, unit: str):
        self.progress, self.total, self.description, self.unit = progress, total, description, unit
        self.n, self.postfix = 0, ""
        self.started = self.last = time.monotonic()
        progress._log(f"{description + ': ' if description else ''}{total:,} {unit}")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= LOG_EVERY:
            self.last = now
            self._line(now)

    def set_postfix(self, **kwargs) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in kwargs.items())

    def close(self) -> None:
        if self.n:
            self._line(time.monotonic())
        self.n = 0

    def _line(self, now: float) -> None:
        spent = now - self.started
        left = spent / self.n * (self.total - self.n) if self.n and self.total else None
        eta = f", about {_clock(left)} left" if left is not None and self.n < self.total else ""
        extra = f" ({self.postfix})" if self.postfix else ""
        self.progress._log(f"{self.description + ' ' if self.description else ''}"
                           f"{self.n:,}/{self.total:,} {self.unit}, "
                           f"{_clock(spent)}{eta}{extra}")

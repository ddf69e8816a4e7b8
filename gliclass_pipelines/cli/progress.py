"""Progress on stderr: a bar on a terminal, or a log line every few seconds.

rows/s is rows over the seconds since ``started`` (the job's start: the summary's definition too).
When the number of rows is unknown (JSON lines, CSV), the share of bytes read estimates it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


class Progress:
    """A progress bar on a terminal, or a log line every ``every`` seconds."""

    def __init__(self, total: int | None, style: str, every: float, started: float | None = None) -> None:
        if style == "auto":
            style = "bar" if sys.stderr.isatty() else "log"
        self.total, self.style, self.every = total, style, every
        self.known = total is not None
        self.done = self.logged_rows = 0
        self.logged = time.perf_counter()
        self.started = self.logged if started is None else started
        self.bar: Any = None
        if style == "bar":
            from tqdm import tqdm

            columns, lines = _terminal_size()  # a pty may say 0 x 0: tqdm would then print nothing
            self.bar = tqdm(
                total=total,
                unit=" rows",
                file=sys.stderr,
                dynamic_ncols=columns > 0,
                ncols=None if columns > 0 else 80,
                nrows=lines if lines > 0 else 24,
                smoothing=0.1,
            )

    def update(self, rows: int, done: float | None = None) -> None:
        """Count ``rows`` more; ``done`` is the share of the input read, when the total is not known."""
        self.done += rows
        if not self.known and done:
            self.total = round(self.done / done)
            if self.bar is not None:
                self.bar.total = self.total
        if self.bar is not None:
            self.bar.update(rows)
            return
        now = time.perf_counter()
        if self.style == "log" and (self.done == rows or now - self.logged >= self.every):
            self._log(now)

    def _log(self, now: float) -> None:
        self.logged, self.logged_rows = now, self.done
        print(f"gliclass-pipelines: {self.line(now)}", file=sys.stderr, flush=True)

    def line(self, now: float) -> str:
        rate = self.done / max(now - self.started, 1e-9)
        if not self.total:
            return f"{self.done} rows, {rate:.1f} rows/s"
        left = max(self.total - self.done, 0) / rate if rate > 0 else 0.0
        share = 100.0 * min(self.done / self.total, 1.0)
        total = f"{self.total}" if self.known or self.done == self.total else f"~{self.total}"
        return f"{self.done}/{total} rows ({share:.0f}%), {rate:.1f} rows/s, ETA {_duration(left)}"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.style == "log" and kind is None and self.done != self.logged_rows:
            self._log(time.perf_counter())


def _terminal_size() -> tuple[int, int]:
    try:
        return tuple(os.get_terminal_size(sys.stderr.fileno()))
    except (OSError, ValueError, AttributeError):
        return 0, 0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"

"""Progress of long steps (scanning files, the duplicate search, predict, export): short, never spammy.

On a terminal a keras Progbar redraws one line; in a log (stdout not a terminal) a count is printed at
most every LOG_EVERY seconds, and one closing line with the time taken. Steps with fewer than `minimum`
items print nothing, so small datasets (and the tests) keep their output as it was.
"""

from __future__ import annotations

import sys
import time

LOG_EVERY = 15.0  # seconds between count lines in a log
PROGRESS_MINIMUM = 2000  # files or images: the data steps of smaller sets print no progress


class Progress:
    def __init__(self, total: int, title: str, unit: str = "files", minimum: int = 0):
        self.total, self.title, self.unit = total, title, unit
        self.active = total >= max(minimum, 1)
        self.done = 0
        self.started = self.last_line = time.monotonic()
        self.bar = None
        if self.active and sys.stdout.isatty():
            import keras  # noqa: PLC0415 (callers have loaded TensorFlow already)

            print(f"{title}:", flush=True)
            self.bar = keras.utils.Progbar(total, unit_name=unit.removesuffix("s") or "step")

    def add(self, count: int = 1) -> None:
        self.done += count
        if not self.active:
            return
        if self.bar is not None:
            self.bar.update(self.done)
            return
        now = time.monotonic()
        if now - self.last_line >= LOG_EVERY and self.done < self.total:
            self.last_line = now
            print(f"{self.title}: {self.done:,}/{self.total:,} {self.unit} ({now - self.started:.0f} s)", flush=True)

    def close(self, line: bool = True) -> None:
        """The finished bar (a terminal) or, unless not `line` (the caller prints its own summary), the closing
        line with the time taken (a log)."""
        if not self.active:
            return
        if self.bar is not None:
            self.bar.update(self.done, finalize=True)
        elif line:
            print(f"{self.title}: {self.done:,} {self.unit} in {self.seconds:.1f} s", flush=True)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

"""Progress a person can read: a tqdm bar on a terminal, timestamped lines in a job's log.

    progress = Progress(f"train {run_name}", total=T, unit="step", examples_per_unit=B)
    if progress.advance(step + 1):                  # cheap, no host sync; True once a minute
        progress.line(loss=0.31)                    # also at each checkpoint

A cluster job's stdout and stderr go to a file, where tqdm (disabled off a terminal) would leave
the log empty until the job ends. There, a line is printed at each checkpoint and at least every
`every` seconds: the position, the loss, examples/s, elapsed time and ETA.
"""

from __future__ import annotations

import datetime
import os
import sys
import time

from tqdm import tqdm

# Seconds between two lines in a log when no checkpoint comes (NWT_PROGRESS_SECONDS in tests).
EVERY = 60.0


class Progress:
    def __init__(
        self,
        desc: str,
        total: int,
        unit: str,
        examples_per_unit: int = 0,
        start: int = 0,
        every: float | None = None,
        stream=None,
    ):
        self.desc, self.total, self.unit = desc, total, unit
        self.examples_per_unit, self.start, self.done = examples_per_unit, start, start
        self.stream = stream or sys.stderr
        if every is None:
            every = float(os.environ.get("NWT_PROGRESS_SECONDS", EVERY))
        self.every = every
        self.bar = None
        if self.stream.isatty():
            self.bar = tqdm(total=total, initial=start, desc=desc, unit=unit, file=self.stream)
        self.started = self.last_line = time.monotonic()

    def advance(self, done: int) -> bool:
        """`done` units are done; True when a log line is due (a minute since the last)."""
        if self.bar is not None:
            self.bar.update(done - self.done)
        self.done = done
        return self.bar is None and time.monotonic() - self.last_line >= self.every

    def line(self, **values) -> None:
        """One timestamped line in a log (on a terminal, the values beside the bar)."""
        if self.bar is not None:
            self.bar.set_postfix(values, refresh=False)
            return
        now = time.monotonic()
        elapsed, rate = now - self.started, (self.done - self.start) / max(now - self.started, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        parts = [f"{self.unit} {self.done}/{self.total}"]
        parts += [
            f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
            for key, value in values.items()
        ]
        if self.examples_per_unit:
            parts.append(f"{rate * self.examples_per_unit:.0f} examples/s")
        parts += [f"elapsed {_duration(elapsed)}", f"ETA {_duration(eta)}"]
        stamp = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")
        print(f"[{stamp}] {self.desc}: " + ", ".join(parts), file=self.stream, flush=True)
        self.last_line = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"

"""Progress for people and for logs: a tqdm bar when stderr is a terminal; otherwise (CI, ``nohup``, a
notebook's captured output) a plain line every ``interval`` seconds, so a log gets a few readable lines
instead of a carriage-return stream of every update."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

PLAIN_INTERVAL = 10.0  # seconds between plain progress lines


class PlainProgress:
    """The part of tqdm's interface the loops use (``update``, ``set_postfix``, ``close``), printing
    ``desc: n/total (p%), elapsed, eta, postfix`` at most every ``interval`` seconds and once at the end."""

    def __init__(self, total: int, initial: int, desc: str, unit: str, interval: float, stream):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.interval, self.stream = interval, stream
        self.start = self.last = time.monotonic()
        self.first = initial
        self.postfix: dict[str, str] = {}
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.print_line(now)

    def set_postfix(self, **values) -> None:
        self.postfix = {key: str(value) for key, value in values.items()}

    def print_line(self, now: float) -> None:
        elapsed = now - self.start
        done = self.n - self.first
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 else float("nan")
        share = 100 * self.n / max(1, self.total)
        extra = "".join(f", {key}={value}" for key, value in self.postfix.items())
        print(
            f"{self.desc}: {self.n}/{self.total} {self.unit} ({share:.0f}%), {_clock(elapsed)} elapsed, "
            f"{_clock(eta)} left{extra}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if not self.closed and self.n > self.first:
            self.print_line(time.monotonic())
        self.closed = True


def _clock(seconds: float) -> str:
    if seconds != seconds:  # NaN: no rate yet
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def progress_bar(total: int, desc: str, enabled: bool = True, initial: int = 0, unit: str = "steps", stream=None):
    """A tqdm bar on a terminal, :class:`PlainProgress` elsewhere, a silent tqdm when not ``enabled``."""
    stream = stream or sys.stderr
    if enabled and not _is_terminal(stream):
        return PlainProgress(total, initial, desc, unit, PLAIN_INTERVAL, stream)
    return tqdm(total=total, initial=initial, disable=not enabled, dynamic_ncols=True, desc=desc, file=stream)


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())

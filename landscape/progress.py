"""Progress of long work, the same for every command: a bar on a terminal, plain lines on
stderr otherwise (a log a batch job keeps), nothing when switched off (``-q``)."""
from __future__ import annotations

import sys
import time


class Progress:
    """``total`` units of work named ``desc``.

    ``progress``: None = automatic (a bar when stderr is a terminal, else lines), True = a bar,
    False = nothing. Off a terminal, ``update(line=...)`` prints that line (per-epoch logs) and
    ``update()`` without one prints a status line at most every ``every`` seconds and at the end.

    >>> p = Progress(3, "demo", "step", progress=False)
    >>> for _ in range(3): p.update()
    >>> p.close()
    """

    def __init__(self, total: int, desc: str, unit: str, progress: bool | None = None,
                 initial: int = 0, every: float = 10.0):
        from tqdm.auto import tqdm
        self.lines = progress is None and not sys.stderr.isatty()
        show_bar = bool(progress) or (progress is None and not self.lines)
        self.bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, disable=not show_bar,
                        dynamic_ncols=True)
        self.total, self.done, self.desc, self.unit, self.every = total, initial, desc, unit, every
        self.start = self.last = time.monotonic()
        self.initial, self.ended, self.postfix = initial, False, None

    def update(self, n: int = 1, line: str | None = None, postfix: str | None = None) -> None:
        self.done += n
        if self.done > self.total:  # more work than estimated: the total follows, never past 100%
            self.add_total(self.done - self.total)
        self.postfix = postfix
        if self.lines:
            now = time.monotonic()
            if line is not None:
                print(line, file=sys.stderr, flush=True)
            elif now - self.last >= self.every or (self.done >= self.total and not self.ended):
                self.last, self.ended = now, self.done >= self.total
                print(self.status(now) + (f"  {postfix}" if postfix else ""), file=sys.stderr, flush=True)
        elif not self.bar.disable:
            if postfix is not None or line is not None:
                self.bar.set_postfix_str(postfix if postfix is not None else line.split("  ", 1)[-1])
            self.bar.update(n)

    def add_total(self, delta: int) -> None:
        """More (or, with a negative ``delta``, less) work than first estimated: the bar and
        the time left follow."""
        self.total = max(self.done, self.total + int(delta))
        self.ended = self.ended and self.done >= self.total
        if not self.bar.disable:
            self.bar.total = self.total
            self.bar.refresh()

    def status(self, now: float) -> str:
        elapsed = now - self.start
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        eta = f", about {_duration((self.total - self.done) / rate)} left" if rate > 0 and self.done < self.total else ""
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return f"{self.desc}: {self.done}/{self.total} {self.unit}s ({pct:.0f}%), {_duration(elapsed)}{eta}"

    def note(self, line: str) -> None:
        """A line that stays (not a progress update), unless progress is off."""
        if self.lines:
            print(line, file=sys.stderr, flush=True)
        elif not self.bar.disable:
            self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        if self.lines and self.done and not self.ended and self.done >= self.total:
            print(self.status(time.monotonic()), file=sys.stderr, flush=True)
        self.bar.close()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"

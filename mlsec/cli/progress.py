"""Progress on long scans: a bar on a terminal (rich), plain periodic lines in CI logs, nothing for short work."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from mlsec.scan import Progress

LINE_EVERY_S = 10.0  # CI logs: one line at most this often, the first after this long
BAR_EVERY_S = 0.1  # a terminal's bar: drawn at most this often


@contextmanager
def reporter(mode: str, stream: TextIO | None = None) -> Iterator[Callable[[Progress], None] | None]:
    """`mode` is auto (a bar on a terminal, lines elsewhere), bar, lines or none."""
    stream = stream or sys.stderr
    if mode == "auto":
        mode = "bar" if stream.isatty() else "lines"
    if mode == "none":
        yield None
    elif mode == "bar":
        with _bar(stream) as update:
            yield update
    else:
        lines = _Lines(stream)
        yield lines
        lines.finish()


@contextmanager
def _bar(stream: TextIO) -> Iterator[Callable[[Progress], None]]:
    from rich.console import Console  # noqa: PLC0415 - only on a terminal
    from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar  # noqa: PLC0415

    # Drawn by the scan's own thread as units finish, at most every BAR_EVERY_S, not by rich's refresh thread: a
    # process with no other thread forks its pool's workers (milliseconds) where another thread would need a fork
    # server (0.3 s more on 2,000 small models), and can give even a small scan a worker of its own (scan.py).
    columns = (TextColumn("scanning"), BarColumn(), MofNCompleteColumn(), DownloadColumn(), TimeRemainingColumn())
    with Bar(*columns, console=Console(file=stream), transient=True, auto_refresh=False) as bar:
        task = bar.add_task("scan", total=None)
        drawn = [0.0]

        def update(p: Progress) -> None:
            bar.update(task, total=max(p.bytes_total, 1), completed=p.bytes_done)
            if time.monotonic() - drawn[0] >= BAR_EVERY_S or p.done == p.total:
                drawn[0] = time.monotonic()
                bar.refresh()

        yield update


class _Lines:
    def __init__(self, stream: TextIO) -> None:
        self.stream, self.started, self.last, self.latest = stream, time.monotonic(), time.monotonic(), None

    def __call__(self, p: Progress) -> None:
        self.latest = p
        if time.monotonic() - self.last >= LINE_EVERY_S:
            self.last = time.monotonic()
            self.stream.write(line(p, self.last - self.started) + "\n")
            self.stream.flush()

    def finish(self) -> None:
        """A closing line, when the scan was long enough to have printed any."""
        elapsed = time.monotonic() - self.started
        if self.latest is not None and elapsed >= LINE_EVERY_S:
            self.stream.write(line(self.latest, elapsed) + "\n")


def line(p: Progress, elapsed: float) -> str:
    share = f" ({100 * p.bytes_done // p.bytes_total}%)" if p.bytes_total else ""
    cached = f", {p.cached} from the cache" if p.cached else ""
    return (
        f"mlsec: scanned {p.done}/{p.total} files, {_size(p.bytes_done)} of {_size(p.bytes_total)}{share}"
        f"{cached}, {elapsed:.0f} s ({p.executor})"
    )


_UNITS = ("B", "KB", "MB", "GB", "TB")


def _size(n: float) -> str:
    step = 0
    while n >= 1000 and step < len(_UNITS) - 1:
        n /= 1000
        step += 1
    return f"{n:.0f} B" if step == 0 else f"{n:.1f} {_UNITS[step]}"

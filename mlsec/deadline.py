"""A time limit on one artifact's scanners (ScanLimits.max_seconds), by SIGALRM in the main thread.

The timer interrupts Python code between bytecodes; a long call inside a C extension ends first.
`ScanTimeout` is a BaseException so that a scanner's broad `except Exception` cannot swallow it.
In other threads (the policy server) and where there is no SIGALRM, no timer is set.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class ScanTimeout(BaseException):  # noqa: N818 - named for what it is, like KeyboardInterrupt
    """The scanners of one artifact ran past ScanLimits.max_seconds."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise ScanTimeout in the body after `seconds` (no-op outside the main thread)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise ScanTimeout(seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

"""A time limit on one artifact's scanners (ScanLimits.max_seconds), by SIGALRM in the main thread.

The timer interrupts Python code between bytecodes; a long call inside a C extension ends first.
`ScanTimeout` is a BaseException so that a scanner's broad `except Exception` cannot swallow it.
In other threads (the policy server) and where there is no SIGALRM, no timer is set.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

try:  # the C function signal.signal wraps: the wrapper's enum conversion raises and catches a ValueError for
    from _signal import signal as _set_handler  # every Python handler, 3 of the 5 us each artifact cost
except ImportError:  # not CPython
    from signal import signal as _set_handler


class ScanTimeout(BaseException):  # noqa: N818 - named for what it is, like KeyboardInterrupt
    """The scanners of one artifact ran past ScanLimits.max_seconds."""


class deadline:  # noqa: N801 - used as `with deadline(seconds):`, like a function
    """Raise ScanTimeout in the body after `seconds` (no-op outside the main thread). A class, not a
    generator: every artifact of a scan passes through one (5.6 -> 2 us each)."""

    __slots__ = ("armed", "previous", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.armed = False
        self.previous: Any = None

    def __enter__(self) -> None:
        if _TIMER and threading.current_thread() is _MAIN:
            self.previous = _set_handler(signal.SIGALRM, self._expire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
            self.armed = True

    def __exit__(self, *exc: object) -> None:
        if self.armed:
            self.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            _set_handler(signal.SIGALRM, signal.SIG_DFL if self.previous is None else self.previous)  # None: not set from Python

    def _expire(self, signum: int, frame: FrameType | None) -> None:
        raise ScanTimeout(self.seconds)


_TIMER = hasattr(signal, "setitimer")
_MAIN = threading.main_thread()

"""A time limit on one artifact's scanners (ScanLimits.max_seconds), by SIGALRM in the main thread.

The timer interrupts Python code between bytecodes; a long call inside a C extension ends first.
`ScanTimeout` is a BaseException so that a scanner's broad `except Exception` cannot swallow it.
In other threads (the policy server) and where there is no SIGALRM, no timer is set.

A process that is only a scan's worker (a pool's, a Ray task's) also ends when an artifact's scanners
have used twice the limit in CPU time (and at least a second more), which only a call stuck inside
native code can have done (a crafted HDF5 or Parquet file sending a C library round in circles): a
second timer, ITIMER_PROF, whose SIGPROF nothing handles, so the kernel ends the process without
Python's help; the executor then reports that artifact as an error instead of waiting for ever. Native code
blocked without using the CPU is ended at the same time, by the wall clock, by the worker's parent (culprits.py).
(faulthandler's watchdog would do it by wall time, but starts a thread each time it is armed: 37 us
an artifact against 0.7 for a timer.)
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any

from mlsec import culprits

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
            if _OVERRUN_ENDS:
                overrun = self.seconds + max(self.seconds, 1.0)
                signal.setitimer(signal.ITIMER_PROF, overrun)
                now = time.monotonic_ns()  # the parent's watch, for a wait without the CPU (and the CPU's share)
                culprits.arm(now + int(overrun * 1e9), now, time.process_time_ns())

    def __exit__(self, *exc: object) -> None:
        if self.armed:
            self.armed = False
            if _OVERRUN_ENDS:
                signal.setitimer(signal.ITIMER_PROF, 0)
                culprits.arm(0)
            signal.setitimer(signal.ITIMER_REAL, 0)
            _set_handler(signal.SIGALRM, signal.SIG_DFL if self.previous is None else self.previous)  # None: not set from Python

    def _expire(self, signum: int, frame: FrameType | None) -> None:
        raise ScanTimeout(self.seconds)


_TIMER = hasattr(signal, "setitimer")
_MAIN = threading.main_thread()
_OVERRUN_ENDS: list[bool] = []  # [True] in a worker process (exit_on_overrun)


def in_worker() -> bool:
    """Whether this process is a scan's worker and nothing else (exit_on_overrun was called in it): one whose
    death its executor reports as an error of the file it was scanning, where the user's own process must not die."""
    return bool(_OVERRUN_ENDS)


def exit_on_overrun() -> None:
    """Make every deadline in this process end it when its scanners overrun twice over in CPU time (see the
    module's text). Only for a process that is a scan's worker and nothing else: never the user's own."""
    if _TIMER and hasattr(signal, "SIGPROF") and not _OVERRUN_ENDS:
        signal.signal(signal.SIGPROF, signal.SIG_DFL)  # the kernel's default: the process ends
        _OVERRUN_ENDS.append(True)

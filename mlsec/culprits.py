"""Which file a worker process was scanning when it died, what its death says, and workers blocked for good.

Workers (a pool's, an isolated scan's child) each post, in memory they share with their parent (a Board), the
index of the unit they are scanning (IDLE between batches), and while an artifact's deadline is armed, when it
counts as overrun: twice max_seconds, as the CPU timer that ends a worker spinning in native code
(deadline.exit_on_overrun). Two things follow:

- When a worker dies of its own doing (a crash in native code, its CPU timer: see its_own_doing), the parent
  reads the dead worker's cells and reports that unit as an error at once. Before, a pool could not tell which
  of the units in flight had done it: it scanned them all again in a fresh pool, then each alone, so a file
  stuck in C cost three overruns of twice max_seconds of CPU, not one. A worker killed from outside (SIGKILL:
  the out-of-memory killer may pick any big process) blames nothing: its units are scanned again, as before.
- A worker blocked inside native code (a deadlock, a wait that never ends) uses no CPU, so its timer never
  fires, and Python's signal handlers do not run until the native call returns. The parent, waiting for
  results, looks at the board every WATCH_SECONDS and ends a worker past its overrun time by the wall clock
  (stop_overdue); that unit is the error.

A Ray task's worker may be on another machine: its board is a small file on its node (Attempt), which Ray's
retry of the task reads.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import signal
import stat
import struct
import tempfile
import time
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

IDLE = -1
BUG = 70  # a worker's exit status when mlsec itself failed in it (EX_SOFTWARE)
WATCH_SECONDS = 1.0  # how often a parent waiting on its workers looks for one blocked past its limit (stop_overdue)
_PAIR = 3  # cells a worker: its pid, the unit it is scanning (IDLE: none), when its deadline counts as overrun (arm)
_SELF_INFLICTED = {"SIGPROF", "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"}
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_POSTED: list[Any] = []  # in a worker: [the board's cells, where its own begin]
OVERRAN_BEFORE = (
    "its Ray worker died while scanning it: native code still running at twice max_seconds of CPU (found by Ray's"
    " retry of its task, which did not scan it again)"
)
_BLOCKED = (
    "its worker process was stopped while scanning it: native code blocked past twice max_seconds of wall-clock"
    " time without using the CPU"
)


class Board:
    """Cells shared by a parent and its workers (a triple each: the worker's pid, the unit it is scanning, when the
    deadline it has armed counts as overrun). `for_pool`: multiprocessing's shared memory, handed to each worker at
    its start (`parts`, to join); `for_child`: memory a forked child inherits, its one triple taken (sit)."""

    def __init__(self, cells: Any, taken: Any = None) -> None:
        self.cells, self.taken = cells, taken
        self.stopped: dict[int, int] = {}  # pid -> unit, of the workers stop_overdue ended

    @classmethod
    def for_pool(cls, context: Any, workers: int) -> Board:
        return cls(context.Array("q", _PAIR * workers, lock=False), context.Value("i", 0))

    @classmethod
    def for_child(cls) -> Board:
        return cls(memoryview(mmap.mmap(-1, 8 * _PAIR)).cast("q"))

    @property
    def parts(self) -> tuple[Any, Any]:
        return self.cells, self.taken

    def stop_overdue(self) -> None:
        """End (SIGKILL) every worker whose armed deadline is overrun by wall-clock time: its CPU timer would have
        ended it had it used the CPU (deadline.exit_on_overrun), so it is blocked inside native code, where no
        signal handler of Python's runs."""
        now = time.monotonic_ns()  # CLOCK_MONOTONIC: one clock for every process of the machine
        for base in range(0, len(self.cells), _PAIR):
            pid, index, overrun_at = self.cells[base], self.cells[base + 1], self.cells[base + 2]
            if pid and index != IDLE and overrun_at and now > overrun_at and pid not in self.stopped:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                log.debug("stopped worker %d: blocked on unit %d", pid, index)
                self.stopped[pid] = index

    def culprits(self, ended: Iterable[tuple[int, int | None]]) -> dict[int, str]:
        """The units whose worker died of its own doing (or was stopped, blocked) while scanning them, with how;
        `ended`: the pool's workers once it has shut down, as (pid, exit code) pairs."""
        codes = dict(ended)
        found = {index: _BLOCKED for index in self.stopped.values()}
        for base in range(0, len(self.cells), _PAIR):
            pid, index = self.cells[base], self.cells[base + 1]
            code = codes.get(pid)
            if index != IDLE and pid not in self.stopped and code is not None and its_own_doing(code):
                found[index] = how_it_died(code)
        return found

    def verdict(self, exitcode: int) -> str:
        """Why the one worker of a for_child board ended with `exitcode` while scanning a unit."""
        return _BLOCKED if self.stopped else how_it_died(exitcode)


def join(cells: Any, taken: Any) -> None:
    """In a pool's worker at its start: take the board's next triple, and post this process's pid there."""
    with taken.get_lock():
        pair = taken.value
        taken.value += 1
    if _PAIR * (pair + 1) <= len(cells):
        sit(cells, pair)


def sit(cells: Any, pair: int) -> None:
    """In a worker: the triple `pair` of `cells` is this process's."""
    base = _PAIR * pair
    cells[base], cells[base + 1], cells[base + 2] = os.getpid(), IDLE, 0
    _POSTED[:] = [cells, base]


def post(index: int) -> None:
    """In a worker: it is scanning the unit `index` now (IDLE: none). A no-op outside a worker."""
    if _POSTED:
        _POSTED[0][_POSTED[1] + 1] = index


def arm(overrun_at: int) -> None:
    """In a worker: the deadline armed now counts as overrun at `overrun_at` (time.monotonic_ns; 0: disarmed)."""
    if _POSTED:
        _POSTED[0][_POSTED[1] + 2] = overrun_at


class Attempt:
    """A Ray task's board: a file in its node's temporary directory named by the task's `batch` (unique to a scan),
    mapped into memory, so that what the worker posts there outlives it. Ray retries a task whose worker died; a
    retry on the same node (always, on one machine) reads there which unit the attempt before it was scanning, and
    whether that unit's deadline had overrun (a worker still running native code at twice max_seconds of CPU ends
    itself: deadline.exit_on_overrun). That unit is then an error, not scanned a second time. The file is removed
    when an attempt ends, unless its worker dies; a retry on another node leaves it behind (24 bytes)."""

    def __init__(self, batch: str) -> None:
        uid = os.getuid() if hasattr(os, "getuid") else 0
        self.folder = os.path.join(tempfile.gettempdir(), f"mlsec-ray-{uid}")
        self.path = os.path.join(self.folder, batch)
        self._cells: memoryview | None = None

    def overran(self) -> int | None:
        """The position of the unit whose deadline an earlier attempt at this batch overran before it died, if any."""
        try:
            fd = os.open(self.path, os.O_RDONLY | _NOFOLLOW)
            try:
                pid, position, overrun_at = struct.unpack("<3q", os.read(fd, 8 * _PAIR))
            finally:
                os.close(fd)
        except (OSError, struct.error):
            return None
        return position if pid and position != IDLE and overrun_at and time.monotonic_ns() > overrun_at else None

    def __enter__(self) -> Attempt:
        """This attempt posts on the batch's file from now on (where one can be written, in a folder of this user's
        own: else on nothing)."""
        try:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            folder = os.lstat(self.folder)
            if not stat.S_ISDIR(folder.st_mode) or (hasattr(os, "getuid") and folder.st_uid != os.getuid()):
                raise PermissionError(f"{self.folder} is not a folder of this user's")
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o600)
            try:
                os.ftruncate(fd, 8 * _PAIR)
                self._cells = memoryview(mmap.mmap(fd, 8 * _PAIR)).cast("q")
            finally:
                os.close(fd)
        except OSError as exc:
            log.debug("no record of this attempt in %s: %s", self.path, exc)
            return self
        sit(self._cells, 0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._cells is not None:
            _POSTED.clear()  # the worker serves other tasks next
            self._cells.release()
            self._cells = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def its_own_doing(exitcode: int) -> bool:
    """Whether a worker that ended with `exitcode` (multiprocessing's: -N for signal N) ended of what it was
    running: a crash, an abort, its overrun timer, an exit of its own. Not a signal from outside (SIGKILL,
    SIGTERM), which may have picked it for another's sake."""
    if exitcode >= 0:
        return exitcode != 0
    return _signal_name(-exitcode) in _SELF_INFLICTED


def how_it_died(exitcode: int) -> str:
    """A unit's error reason for a worker that ended with `exitcode` while scanning it."""
    if exitcode < 0:
        name = _signal_name(-exitcode)
        why = {
            "SIGPROF": "native code still running at twice max_seconds of CPU",
            "SIGKILL": "killed, for example by the out-of-memory killer",
            "SIGSEGV": "a crash in native code",
            "SIGBUS": "a crash in native code",
            "SIGABRT": "native code aborted",
        }.get(name, "ended by a signal")
        return f"its worker process died while scanning it: {name} ({why})"
    if exitcode == BUG:
        return (
            "mlsec failed in its worker process while scanning it: a bug; please report it with the output of the"
            " same command run with --debug"
        )
    return f"its worker process ended with status {exitcode} while scanning it"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"

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
  (stop_overdue); that unit is the error. A worker that was running all the same (on a busy machine its CPU
  time falls behind the wall clock) is told apart by its CPU time since it armed the deadline (stopped_how).

A Ray task's worker may be on another machine: its board is a small file on its node (Attempt), which Ray's
retry of the task reads, and what stops it blocked is a watcher process of its own, started with the task, that
reads that file.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import signal
import stat
import struct
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

log = logging.getLogger(__name__)

IDLE = -1
BUG = 70  # a worker's exit status when mlsec itself failed in it (EX_SOFTWARE)
WATCH_SECONDS = 1.0  # how often a parent waiting on its workers looks for one blocked past its limit (stop_overdue)
# Cells a worker: its pid, the unit it is scanning (IDLE: none), and while a deadline is armed (arm): when it counts
# as overrun, when it was armed (both time.monotonic_ns), and the worker's CPU time then (time.process_time_ns).
_CELLS = 5
_RUNNING_SHARE = 0.1  # a worker stopped past its overrun time that used this share of a CPU since arming was running
_SELF_INFLICTED = {"SIGPROF", "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"}
# What multiprocessing gives as the exit code of a fork server's child whose status it could not read
# (popen_forkserver.Popen.poll): in a broken pool, the workers it ended itself (SIGTERM) often read so. Unknown,
# so it blames nothing: where it was a worker's own exit, its unit is retried, and blamed when it ends one alone.
_UNREAD = 255
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_POSTED: list[Any] = []  # in a worker: [the board's cells, where its own begin]
_FOUND_BY_RETRY = " (found by Ray's retry of its task, which did not scan it again)"
OVERRAN_BEFORE = "its Ray worker died while scanning it: native code still running at twice max_seconds of CPU" + _FOUND_BY_RETRY
_BLOCKED = (
    "its worker process was stopped while scanning it: native code blocked past twice max_seconds of wall-clock"
    " time without using the CPU"
)
_STARVED = (
    "its worker process was stopped while scanning it: native code still running at twice max_seconds of wall-clock"
    " time (before twice max_seconds of CPU: the CPU was shared with other work)"
)
BLOCKED, STARVED = 1, 2  # how a watch stopped a worker (stopped_how), as an Attempt's record keeps it
_STOPPED = {BLOCKED: _BLOCKED, STARVED: _STARVED}


class Board:
    """Cells shared by a parent and its workers (_CELLS each: the worker's pid, the unit it is scanning, and its armed
    deadline). `for_pool`: multiprocessing's shared memory, handed to each worker at its start (`parts`, to join);
    `for_child`: memory a forked child inherits, its one worker's cells taken (sit)."""

    def __init__(self, cells: Any, taken: Any = None) -> None:
        self.cells, self.taken = cells, taken
        self.stopped: dict[int, tuple[int, str]] = {}  # pid -> (unit, why), of the workers stop_overdue ended

    @classmethod
    def for_pool(cls, context: Any, workers: int) -> Board:
        return cls(context.Array("q", _CELLS * workers, lock=False), context.Value("i", 0))

    @classmethod
    def for_child(cls) -> Board:
        return cls(memoryview(mmap.mmap(-1, 8 * _CELLS)).cast("q"))

    @property
    def parts(self) -> tuple[Any, Any]:
        return self.cells, self.taken

    def stop_overdue(self) -> None:
        """End (SIGKILL) every worker whose armed deadline is overrun by wall-clock time: its CPU timer would have
        ended it had it had the CPU (deadline.exit_on_overrun), so it is blocked inside native code, where no
        signal handler of Python's runs, or was starved of the CPU by other work; which, its CPU time tells."""
        now = time.monotonic_ns()  # CLOCK_MONOTONIC: one clock for every process of the machine
        for base in range(0, len(self.cells), _CELLS):
            pid, index, overrun_at, armed_at, cpu_at = self.cells[base : base + _CELLS]
            if _overdue(pid, index, overrun_at, now) and pid not in self.stopped:
                how = stopped_how(pid, now - armed_at, cpu_at)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                log.debug("stopped worker %d on unit %d: %s", pid, index, _STOPPED[how])
                self.stopped[pid] = index, _STOPPED[how]

    def culprits(self, ended: Iterable[tuple[int, int | None]]) -> dict[int, str]:
        """The units whose worker died of its own doing (or was stopped, overdue) while scanning them, with how;
        `ended`: the pool's workers once it has shut down, as (pid, exit code) pairs."""
        codes = dict(ended)
        found = dict(self.stopped.values())
        for base in range(0, len(self.cells), _CELLS):
            pid, index = self.cells[base], self.cells[base + 1]
            code = codes.get(pid)
            if index != IDLE and pid not in self.stopped and code not in (None, _UNREAD) and its_own_doing(code):
                found[index] = how_it_died(code)
        return found

    def verdict(self, exitcode: int) -> str:
        """Why the one worker of a for_child board ended with `exitcode` while scanning a unit."""
        return next(iter(self.stopped.values()))[1] if self.stopped else how_it_died(exitcode)


def _overdue(pid: int, index: int, overrun_at: int, now: int) -> bool:
    """Whether a worker's cells (its pid, its unit, when its armed deadline counts as overrun) show it past that time
    at `now` (time.monotonic_ns) on a unit: what the pool's watch, a Ray task's watcher and its retry all look for."""
    return bool(pid and index != IDLE and overrun_at and now > overrun_at)


def stopped_how(pid: int, armed_ns: int, cpu_at: int) -> int:
    """BLOCKED or STARVED: whether the worker `pid`, overdue `armed_ns` after arming its deadline with `cpu_at` of CPU
    time used, has used the CPU since (a share of _RUNNING_SHARE or more of the time: its CPU timer was outrun by
    the wall clock on a busy machine) or not (blocked). Where its CPU time cannot be read (no /proc), BLOCKED."""
    cpu = _cpu_ns(pid)
    return STARVED if cpu is not None and cpu - cpu_at >= _RUNNING_SHARE * armed_ns else BLOCKED


def _cpu_ns(pid: int) -> int | None:
    """The CPU time the process `pid` has used (all its threads, user and system), from /proc, in nanoseconds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            fields = stat_file.read().rsplit(b")", 1)[1].split()  # after the command's name, which may hold anything
        return (int(fields[11]) + int(fields[12])) * 10**9 // os.sysconf("SC_CLK_TCK")  # utime + stime, in ticks
    except (OSError, ValueError, IndexError):
        return None


def join(cells: Any, taken: Any) -> None:
    """In a pool's worker at its start: take the board's next worker's cells, and post this process's pid there."""
    with taken.get_lock():
        seat = taken.value
        taken.value += 1
    if _CELLS * (seat + 1) <= len(cells):
        sit(cells, seat)


def sit(cells: Any, seat: int) -> None:
    """In a worker: the cells of worker `seat` of `cells` are this process's."""
    base = _CELLS * seat
    for cell, value in enumerate((os.getpid(), IDLE, 0, 0, 0)):
        cells[base + cell] = value
    _POSTED[:] = [cells, base]


def post(index: int) -> None:
    """In a worker: it is scanning the unit `index` now (IDLE: none). A no-op outside a worker."""
    if _POSTED:
        _POSTED[0][_POSTED[1] + 1] = index


def arm(overrun_at: int, armed_at: int = 0, cpu_at: int = 0) -> None:
    """In a worker: the deadline armed now (at `armed_at`, with `cpu_at` of CPU time used) counts as overrun at
    `overrun_at` (time.monotonic_ns, time.process_time_ns; 0: disarmed)."""
    if _POSTED:
        cells, base = _POSTED
        cells[base + 2], cells[base + 3], cells[base + 4] = overrun_at, armed_at, cpu_at


class Attempt:
    """A Ray task's board: a file in its node's temporary directory named by the task's `batch` (unique to a scan),
    mapped into memory, so that what the worker posts there outlives it. Ray retries a task whose worker died; a
    retry on the same node (always, on one machine) reads there which unit the attempt before it was scanning, and
    whether that unit's deadline had overrun: a worker still running native code at twice max_seconds of CPU ends
    itself (deadline.exit_on_overrun), and one blocked there without the CPU is ended by the attempt's watcher
    (watch), which marks the file so. That unit is then an error, not scanned a second time. The file is removed
    when an attempt ends, unless its worker dies; a retry on another node leaves it behind (48 bytes)."""

    def __init__(self, batch: str) -> None:
        uid = os.getuid() if hasattr(os, "getuid") else 0
        self.folder = os.path.join(tempfile.gettempdir(), f"mlsec-ray-{uid}")
        self.path = os.path.join(self.folder, batch)
        self._cells: memoryview | None = None
        self._watcher: subprocess.Popen[bytes] | None = None

    def overran(self) -> tuple[int, str] | None:
        """The position of the unit whose deadline an earlier attempt at this batch overran before it died, if any,
        with the error that unit is."""
        try:
            fd = os.open(self.path, os.O_RDONLY | _NOFOLLOW)
            try:
                pid, position, overrun_at, _, _, stopped = struct.unpack(_RECORD, os.read(fd, _RECORD_SIZE))
            finally:
                os.close(fd)
        except (OSError, struct.error):
            return None
        if not _overdue(pid, position, overrun_at, time.monotonic_ns()):
            return None
        return position, _STOPPED[stopped] + _FOUND_BY_RETRY if stopped in _STOPPED else OVERRAN_BEFORE

    def __enter__(self) -> Attempt:
        """This attempt posts on the batch's file from now on (where one can be written, in a folder of this user's
        own: else on nothing), watched by a process of its own."""
        try:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            folder = os.lstat(self.folder)
            if not stat.S_ISDIR(folder.st_mode) or (hasattr(os, "getuid") and folder.st_uid != os.getuid()):
                raise PermissionError(f"{self.folder} is not a folder of this user's")
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o600)
            try:
                os.ftruncate(fd, _RECORD_SIZE)
                self._cells = memoryview(mmap.mmap(fd, _RECORD_SIZE)).cast("q")
            finally:
                os.close(fd)
        except OSError as exc:
            log.debug("no record of this attempt in %s: %s", self.path, exc)
            return self
        sit(self._cells, 0)
        self._watcher = _watch(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._watcher is not None:
            self._watcher.kill()
            self._watcher.wait()
            self._watcher = None
        if self._cells is not None:
            _POSTED.clear()  # the worker serves other tasks next
            self._cells.release()
            self._cells = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)


_RECORD = f"<{_CELLS + 1}q"  # an Attempt's file: its worker's cells (see Board), then how the watcher stopped it
_RECORD_SIZE = struct.calcsize(_RECORD)
_HOW_AT = struct.calcsize(f"<{_CELLS}q")  # where in the record the watcher writes how it stopped the worker


def _watch(path: str) -> subprocess.Popen[bytes] | None:
    """A watcher of the attempt whose record is at `path` (watch: this module run as a script, by an interpreter
    that loads the standard library alone, which this module needs; a spawn, which a worker's threads allow), or
    None where none can be started."""
    import subprocess  # noqa: PLC0415 - Ray's workers alone need it: not in every command's start-up

    if not sys.executable or not __file__.endswith(".py"):  # embedded in another program, or no source to run
        log.debug("no watcher for %s: no Python executable or no source to start", path)
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-I", "-S", __file__, path, str(WATCH_SECONDS)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError as exc:
        log.debug("no watcher for %s: %s", path, exc)
        return None


def watch(path: str, every: float) -> None:
    """In a Ray task's watcher: end the worker that started this process (never a pid the file names) once the unit
    posted in the attempt's record at `path` is past its overrun time by the wall clock, having marked the record
    with how (stopped_how); a look every `every` seconds. Returns when the worker has ended, or the record was
    removed (the attempt ended)."""
    worker = os.getppid()
    fd = os.open(path, os.O_RDWR | _NOFOLLOW)
    while os.getppid() == worker and os.fstat(fd).st_nlink:
        pid, index, overrun_at, armed_at, cpu_at, _ = struct.unpack(_RECORD, os.pread(fd, _RECORD_SIZE, 0))
        now = time.monotonic_ns()
        if _overdue(pid, index, overrun_at, now):
            os.pwrite(fd, struct.pack("<q", stopped_how(worker, now - armed_at, cpu_at)), _HOW_AT)
            os.kill(worker, signal.SIGKILL)
            return
        time.sleep(every)


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
            "SIGBUS": "a crash in native code, or a file cut short while it was read",
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


if __name__ == "__main__":  # a Ray task's watcher (_watch)
    watch(sys.argv[1], float(sys.argv[2]))

"""A scan too small for a pool, run in a worker process all the same (`scan(isolate=True)`, every command).

In the caller's own process, a crash inside a C extension (a hostile ONNX or protobuf, a bug in a native
reader) would end the command without a report, and a C call that never returns would hang it: the per-artifact
timer interrupts Python code only. Here each chunk of units is scanned in a child forked for it, which sends
back each unit's result as it finishes, through a pipe; it ends itself once an artifact's scanners have used
twice max_seconds of CPU (deadline.exit_on_overrun), and is stopped by this process, which watches its board
while it waits, once they have taken twice max_seconds of wall-clock time blocked without the CPU (culprits.py).
When it dies, the results it sent stand, the unit it was scanning is an error that says how it died, and a fresh
child takes the units after it.

Only where forking is cheap and safe (executors.forks_cheaply: Linux, no other thread). One file costs a command
10 ms more than a scan in process; a pool of one worker cost 15 ms (its threads, queues and shutdown).

HeadStart is the same child for a pool's parent: files it scans on an idle core while the parent imports the
libraries the pool's workers will share (executors._head_starts).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import os
import pickle
import select
import signal
import struct
import sys
import tempfile
from collections.abc import Iterable, Iterator
from typing import NoReturn

from mlsec import culprits
from mlsec.culprits import BUG, WATCH_SECONDS, Board, its_own_doing
from mlsec.deadline import exit_on_overrun
from mlsec.executors import Chunk, Done, one_native_thread
from mlsec.inputs import Unit
from mlsec.report import ScanError
from mlsec.scan_unit import Collected, ScanSettings, scan_unit

log = logging.getLogger(__name__)
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_FRAME = struct.Struct("<Q")  # each result a child writes: its length, then its pickle


class Isolated:
    name = "worker process"

    def run(self, settings: ScanSettings, chunks: Iterable[Chunk], done: Done) -> None:
        from mlsec.scanners import heavy_modules, preload  # noqa: PLC0415 - loaded here once, not in every child

        for chunk in chunks:
            left = list(chunk.items())
            preload(heavy_modules((unit.path for _, unit in left), at_least=1))
            while left:
                finished, status, board = _in_child(settings, left, done)
                if finished < len(left):  # the child died scanning left[finished]
                    index, unit = left[finished]
                    reason = board.verdict(os.waitstatus_to_exitcode(status))
                    error = ScanError(unit.path, reason, None, "executor", "WorkerDied")
                    done(index, Collected(errors=[error]))
                    finished += 1
                left = left[finished:]


def _in_child(settings: ScanSettings, units: list[tuple[int, Unit]], done: Done) -> tuple[int, int, Board]:
    """Scan `units` in a forked child, handing each result to `done` as it arrives; how many arrived, the child's
    wait status, and the board it posted its progress on."""
    board = Board.for_child()
    reading, writing = os.pipe()
    pid = _fork()
    if pid == 0:
        _child(settings, [unit for _, unit in units], board, reading, writing)
    os.close(writing)
    try:
        finished = _read_results(_frames_from(reading, board), units, done)
    except BaseException:  # this process is stopping (an interrupt, a failed store): so does the child
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(reading)
    _, status = os.waitpid(pid, 0)
    return finished, status, board


def _read_results(frames: Iterator[bytes], units: list[tuple[int, Unit]], done: Done) -> int:
    """Hand each result a child wrote (`frames`, in the order of `units`) to `done`, until the end or a result torn
    by the child's death; how many there were."""
    finished = 0
    for frame in itertools.islice(frames, len(units)):
        try:
            collected = pickle.loads(frame)  # noqa: S301 - written by our own child
        except Exception:  # noqa: BLE001 - a torn result
            break
        done(units[finished][0], collected)
        finished += 1
    return finished


def _frames_from(fd: int, board: Board) -> Iterator[bytes]:
    """Each result a child writes to `fd` (a length, then the pickle; a pipe, or a file it has written), as it comes,
    until the end or a torn result. While none comes, the child is stopped if it is blocked (Board.stop_overdue),
    every WATCH_SECONDS."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        while not poller.poll(int(WATCH_SECONDS * 1000)):
            board.stop_overdue()
        header = _read_exactly(fd, _FRAME.size)
        body = _read_exactly(fd, _FRAME.unpack(header)[0]) if header else None
        if body is None:
            return
        yield body


def _read_exactly(fd: int, size: int) -> bytes | None:
    """`size` bytes from `fd` (from a pipe a read may return fewer), or None where it ends first."""
    parts, left = [], size
    while left:
        part = os.read(fd, min(left, 1 << 20))
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _child(settings: ScanSettings, units: list[Unit], board: Board, reading: int | None, writing: int) -> NoReturn:
    """The forked child: scan `units` in order, posting each on `board`, each result written to `writing` (a pipe's
    end, or a file) as it is ready, then end without running anything of the parent's (atexit handlers, open
    connections' finalizers)."""
    code = 0
    try:
        if reading is not None:
            os.close(reading)
        one_native_thread()
        exit_on_overrun()
        culprits.sit(board.cells, 0)
        with os.fdopen(writing, "wb") as out:
            for position, unit in enumerate(units):
                culprits.post(position)
                result = pickle.dumps(scan_unit(settings, unit), protocol=_PROTOCOL)
                out.write(_FRAME.pack(len(result)))
                out.write(result)
                out.flush()
    except KeyboardInterrupt:  # the terminal's interrupt reaches the parent too, which says so
        code = 130
    except BaseException as exc:  # scan_unit turns a scanner's failure into an error: this is mlsec's own bug
        log.error("mlsec failed in a worker process: %s: %s", type(exc).__name__, exc)  # the file's error says more
        code = BUG
    finally:
        _flush_std_streams()
        os._exit(code)


def _fork() -> int:
    """os.fork(), with what this process had buffered for its standard streams written first (else the child,
    flushing its own output at its end, writes it again), and the child's inherited objects frozen (its garbage
    collections then leave the pages it shares with this process alone); thawed here at once."""
    _flush_std_streams()
    gc.freeze()
    try:
        pid = os.fork()
    except BaseException:
        gc.unfreeze()
        raise
    if pid:
        gc.unfreeze()
    return pid


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # closed, or a pipe nobody reads any more
            stream.flush()


class HeadStart:
    """`units` scanned by a child forked now, while this process goes on (a pool's parent importing the heavy
    libraries its workers will share: a core would be idle meanwhile); their results once it has ended (finish).
    The results go to an unnamed temporary file, so the child never waits for this process to read them."""

    def __init__(self, settings: ScanSettings, units: list[tuple[int, Unit]]) -> None:
        self.units = units
        self.board = Board.for_child()
        self.results = tempfile.TemporaryFile()  # noqa: SIM115 - closed by finish()
        self.pid = _fork()
        if self.pid == 0:
            _child(settings, [unit for _, unit in units], self.board, None, os.dup(self.results.fileno()))

    def finish(self, done: Done) -> tuple[list[int], dict[int, str]]:
        """Wait for the child (stopped if blocked), hand each result it wrote to `done`. Where it died: the indices of
        the units it left unscanned, for the caller to scan again, but the one it died on when it died of its own
        doing (culprits.its_own_doing) or was stopped, which is given apart with how it died."""
        status = _wait(self.pid, self.board)
        with self.results:
            os.lseek(self.results.fileno(), 0, os.SEEK_SET)  # where the child's writes left the shared offset
            finished = _read_results(_frames_from(self.results.fileno(), self.board), self.units, done)
        left = [index for index, _ in self.units[finished:]]
        code = os.waitstatus_to_exitcode(status)
        if left and (self.board.stopped or its_own_doing(code)):
            return left[1:], {left[0]: self.board.verdict(code)}
        return left, {}


def _wait(pid: int, board: Board) -> int:
    """The wait status of the child `pid`, stopped meanwhile if it is blocked (Board.stop_overdue); where a pidfd
    cannot be had (Linux before 5.3), a plain wait."""
    try:
        ended = os.pidfd_open(pid)  # readable once the child has ended
    except (AttributeError, OSError):
        return os.waitpid(pid, 0)[1]
    try:
        while not select.select([ended], [], [], WATCH_SECONDS)[0]:
            board.stop_overdue()
    finally:
        os.close(ended)
    return os.waitpid(pid, 0)[1]

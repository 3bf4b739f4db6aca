"""A scan too small for a pool, run in a worker process all the same (`scan(isolate=True)`, every command).

In the caller's own process, a crash inside a C extension (a hostile ONNX or protobuf, a bug in a native
reader) would end the command without a report, and a C call that never returns would hang it: the per-artifact
timer interrupts Python code only. Here each chunk of units is scanned in a child forked for it, which sends
back each unit's result as it finishes, through a pipe; it ends itself once an artifact's scanners have used
twice max_seconds of CPU (deadline.exit_on_overrun). When it dies, the results it sent stand, the unit it was
scanning is an error that says how it died, and a fresh child takes the units after it.

Only where forking is cheap and safe (executors.forks_cheaply: Linux, no other thread). One file costs a command
10 ms more than a scan in process; a pool of one worker cost 15 ms (its threads, queues and shutdown).

HeadStart is the same child for a pool's parent: files it scans on an idle core while the parent imports the
libraries the pool's workers will share (executors._head_starts).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pickle
import signal
import sys
import tempfile
from collections.abc import Iterable
from typing import BinaryIO, NoReturn

from mlsec.culprits import BUG, how_it_died, its_own_doing
from mlsec.deadline import exit_on_overrun
from mlsec.executors import Chunk, Done, one_native_thread
from mlsec.inputs import Unit
from mlsec.report import ScanError
from mlsec.scan_unit import Collected, ScanSettings, scan_unit

log = logging.getLogger(__name__)
_PROTOCOL = pickle.HIGHEST_PROTOCOL


class Isolated:
    name = "worker process"

    def run(self, settings: ScanSettings, chunks: Iterable[Chunk], done: Done) -> None:
        from mlsec.scanners import heavy_modules, preload  # noqa: PLC0415 - loaded here once, not in every child

        for chunk in chunks:
            left = list(chunk.items())
            preload(heavy_modules((unit.path for _, unit in left), at_least=1))
            while left:
                finished, status = _in_child(settings, left, done)
                if finished < len(left):  # the child died scanning left[finished]
                    index, unit = left[finished]
                    reason = how_it_died(os.waitstatus_to_exitcode(status))
                    error = ScanError(unit.path, reason, None, "executor", "WorkerDied")
                    done(index, Collected(errors=[error]))
                    finished += 1
                left = left[finished:]


def _in_child(settings: ScanSettings, units: list[tuple[int, Unit]], done: Done) -> tuple[int, int]:
    """Scan `units` in a forked child, handing each result to `done` as it arrives; how many arrived, and the
    child's wait status."""
    reading, writing = os.pipe()
    pid = _fork()
    if pid == 0:
        _child(settings, [unit for _, unit in units], reading, writing)
    os.close(writing)
    try:
        with os.fdopen(reading, "rb") as results:
            finished = _read_results(results, units, done)
    except BaseException:  # this process is stopping (an interrupt, a failed store): so does the child
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    return finished, status


def _read_results(results: BinaryIO, units: list[tuple[int, Unit]], done: Done) -> int:
    """Hand each result a child wrote to `results` (in the order of `units`) to `done`, until the end or a result
    torn by the child's death; how many there were."""
    finished = 0
    while finished < len(units):
        try:
            collected = pickle.load(results)  # noqa: S301 - written by our own child
        except Exception:  # noqa: BLE001 - the end of the stream, or a torn result
            break
        done(units[finished][0], collected)
        finished += 1
    return finished


def _child(settings: ScanSettings, units: list[Unit], reading: int | None, writing: int) -> NoReturn:
    """The forked child: scan `units` in order, each result written to `writing` (a pipe's end, or a file) as it is
    ready, then end without running anything of the parent's (atexit handlers, open connections' finalizers)."""
    code = 0
    try:
        if reading is not None:
            os.close(reading)
        one_native_thread()
        exit_on_overrun()
        with os.fdopen(writing, "wb") as pipe:
            for unit in units:
                pickle.dump(scan_unit(settings, unit), pipe, protocol=_PROTOCOL)
                pipe.flush()
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
        self.results = tempfile.TemporaryFile()  # noqa: SIM115 - closed by finish()
        self.pid = _fork()
        if self.pid == 0:
            _child(settings, [unit for _, unit in units], None, os.dup(self.results.fileno()))

    def finish(self, done: Done) -> tuple[list[int], dict[int, str]]:
        """Wait for the child, hand each result it wrote to `done`. Where it died: the indices of the units it left
        unscanned, for the caller to scan again, but the one it died on when it died of its own doing
        (culprits.its_own_doing), which is given apart with how it died."""
        _, status = os.waitpid(self.pid, 0)
        with self.results:
            self.results.seek(0)
            finished = _read_results(self.results, self.units, done)
        left = [index for index, _ in self.units[finished:]]
        code = os.waitstatus_to_exitcode(status)
        if left and its_own_doing(code):
            return left[1:], {left[0]: how_it_died(code)}
        return left, {}

"""Where the units of a scan run: in this process, in a pool of processes (one machine), or as Ray tasks
(mlsec/ray_executor.py, which shares this module's batching).

`scan()` hands every executor the same thing, settings and chunks of units (by their index in the walk) as
the walk finds them, and hears of each unit's `Collected` once, through `done`, as soon as it is finished;
which executor runs is invisible to it. Only paths cross a process or the network (workers read the files
themselves) and only findings come back.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from mlsec import culprits, provenance
from mlsec.deadline import exit_on_overrun
from mlsec.errors import UsageError
from mlsec.inputs import Unit
from mlsec.report import ScanError
from mlsec.scan_unit import Collected, ScanSettings, scan_unit

log = logging.getLogger(__name__)

Chunk = dict[int, Unit]  # units by their index in the walk
Done = Callable[[int, Collected], None]  # called once per unit, with its index and result, as soon as it is finished
Blame = Callable[[dict[int, str]], None]  # given the units a worker died of its own doing on, with how it died


class Executor(Protocol):
    name: str

    def run(self, settings: ScanSettings, chunks: Iterable[Chunk], done: Done) -> None:
        """Scan every unit of every chunk (all of them: the walk goes on as the chunks are taken)."""


def cpu_count() -> int:
    """The cores this process may run on (a container's CPU set, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class InProcess:
    name = "in-process"

    def run(self, settings: ScanSettings, chunks: Iterable[Chunk], done: Done) -> None:
        for chunk in chunks:
            for index, unit in chunk.items():
                done(index, scan_unit(settings, unit))


_WORKER_SETTINGS: list[ScanSettings] = []


def _init_worker(settings: ScanSettings, board: tuple[Any, Any] | None = None) -> None:
    _WORKER_SETTINGS[:] = [settings]
    if board:
        culprits.join(*board)
    one_native_thread()
    exit_on_overrun()  # a file stuck in native code past twice max_seconds costs this worker, not the scan


def one_native_thread() -> None:
    """A pool runs a worker per core already: native libraries get one thread each in a worker, not a core's
    worth (N workers x N threads on N cores), which also keeps an artifact's CPU time close to its wall time,
    the measure exit_on_overrun counts in. Arrow reads OMP_NUM_THREADS when it loads; loaded already (the
    parent preloads it for many Parquet files), it is told."""
    os.environ["OMP_NUM_THREADS"] = "1"
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.set_cpu_count(1)


class ProcessPool:
    """A pool of `jobs` worker processes, forked from this one where that is safe, else from a fork server
    that has mlsec imported already (see _start_method): either way each starts in milliseconds.

    A worker that dies takes the pool down with the units not finished. Where it died of its own doing (a crash
    in native code, its overrun timer) the unit it was scanning is an error at once (mlsec/culprits.py); the rest,
    and all of them where it was killed from outside (the out-of-memory killer), are retried in a fresh pool, then
    any lost again one at a time, each in a pool of its own, and a unit that kills its worker even alone is
    reported as an error naming it. Like any multiprocessing user, a script that calls scan() with a pool must
    guard its top level with `if __name__ == "__main__":`."""

    name = "process pool"

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def run(self, settings: ScanSettings, chunks: Iterable[Chunk], done: Done) -> None:
        units: dict[int, Unit] = {}
        finished: set[int] = set()

        def record(index: int, collected: Collected) -> None:
            finished.add(index)
            done(index, collected)

        def noted(stream: Iterable[Chunk]) -> Iterator[Chunk]:
            for chunk in stream:
                units.update(chunk)
                yield chunk

        def blame(blamed: dict[int, str]) -> None:
            for index, reason in blamed.items():
                record(index, Collected(errors=[ScanError(units[index].path, reason, None, "executor", "WorkerDied")]))

        lost = self._round(settings, noted(chunks), self.jobs, record, blame)
        if lost:  # the units in flight when a worker died, but the one that did it: again, in a fresh pool
            lost = self._round(settings, [{i: units[i] for i in lost}], self.jobs, record, blame)
        error = (
            "its worker process died while scanning it (out of memory, a crash in native code, or native code still"
            " running at twice max_seconds)"
        )
        died_alone = 0
        for index in lost:  # alone, so that one unit's crash cannot take another's result with it
            systemic = not finished and died_alone >= 3  # nothing ever finished: workers cannot run at all
            if systemic or self._round(settings, [{index: units[index]}], 1, record, blame):
                died_alone += 1
                record(index, Collected(errors=[ScanError(units[index].path, error, None, "executor", "WorkerDied")]))

    def _round(self, settings: ScanSettings, chunks: Iterable[Chunk], jobs: int, done: Done, blame: Blame) -> list[int]:
        """Scan the units of `chunks`; returns the indices lost to a broken pool, but those a worker died of its own
        doing on, which go to `blame` with how it died (culprits.py). The pool starts once there are
        units for every worker, or the walk has ended (chunks the cache answered whole fork nothing), and is
        sized and preloaded by the units it starts with."""
        stream = iter(chunks)
        head: list[Chunk] = []
        for chunk in stream:
            if chunk:
                head.append(chunk)
                if sum(map(len, head)) >= jobs:
                    break
        if not head:  # the cache answered every unit: neither a pool nor the scanners are needed
            return []
        import multiprocessing  # noqa: PLC0415

        from mlsec.scanners import heavy_modules, preload  # noqa: PLC0415 - loaded once here, so workers start with it

        heavy = heavy_modules((unit.path for chunk in head for unit in chunk.values()), at_least=jobs)
        context = multiprocessing.get_context(_start_method())
        workers = min(jobs, sum(map(len, head)))  # a few files changed in a big tree still get every worker
        started: list[Any] = []
        if context.get_start_method() == "forkserver":
            context.set_forkserver_preload(["mlsec.scan_unit", "mlsec.scanners", *heavy])
        else:
            if heavy and context.get_start_method() == "fork":
                started, head = _head_starts(settings, head, heavy, workers - 1)
            preload(heavy)
        rest = itertools.chain(head, stream)
        if context.get_start_method() != "fork":  # a fork server's children share nothing with this process
            return _pool(workers, context, settings, rest, done, blame)
        # Forked workers share this process's pages until they write to them, and a garbage collection writes to
        # every object it walks: frozen, the objects already here are walked neither in a worker nor here while
        # results pour in (1.42 -> 1.28 s cold on the 2.7 GB benchmark registry). Thawed when the pool is done.
        # (Fork is only chosen with no other thread alive, so no other thread's scan can be thawing meanwhile.)
        lost: list[int] = []
        try:
            gc.freeze()
            try:
                lost = _pool(workers, context, settings, rest, done, blame)
            finally:
                gc.unfreeze()
        finally:
            for head_start in started:  # ended long ago, as a rule; what one left (it died) is lost like the rest
                left, blamed = head_start.finish(done)
                lost += left
                blame(blamed)
        return sorted(lost)


SCAN_BYTES_PER_SECOND = 1.5e9  # one core hashing and scanning a large file (the 2-core benchmark: 1.5 to 1.7 GB/s)
SCAN_SECONDS_PER_FILE = 100e-6  # ... and a small one (40 to 160 µs)


def _head_starts(settings: ScanSettings, head: list[Chunk], heavy: list[str], cores: int) -> tuple[list[Any], list[Chunk]]:
    """While this process imports the `heavy` libraries the pool's workers will share, `cores` cores would wait: each
    gets a child forked at once (isolated.HeadStart) that scans files of `head` needing none of them, about as much
    as the imports take (IMPORT_SECONDS). The children started, and the head without their files."""
    from mlsec.isolated import HeadStart  # noqa: PLC0415 - it imports this module
    from mlsec.scanners import IMPORT_SECONDS, suffix_needs  # noqa: PLC0415

    if cores < 1:
        return [], head
    seconds = sum(IMPORT_SECONDS[module] for module in heavy)  # every heavy library has one (tested)
    wanted = set(heavy)
    light = (
        (index, unit)
        for chunk in head
        for index, unit in chunk.items()
        if unit.kind == "file" and wanted.isdisjoint(suffix_needs(unit.path))
    )
    shares: list[list[tuple[int, Unit]]] = [[] for _ in range(cores)]
    loads = [0.0] * cores
    for index, unit in light:
        k = loads.index(min(loads))  # the least loaded core, until each has the imports' worth
        if loads[k] >= seconds:
            break
        shares[k].append((index, unit))
        loads[k] += max(unit.size / SCAN_BYTES_PER_SECOND, SCAN_SECONDS_PER_FILE)
    started = []
    for share in filter(None, shares):
        try:
            started.append(HeadStart(settings, share))
        except OSError as exc:  # no temporary file, no fork: the pool scans those files
            log.debug("no head start: %s", exc)
            break
    taken = {index for head_start in started for index, _ in head_start.units}
    return started, [{i: u for i, u in chunk.items() if i not in taken} for chunk in head]


def _pool(workers: int, context: Any, settings: ScanSettings, chunks: Iterable[Chunk], done: Done, blame: Blame) -> list[int]:
    """The units of `chunks` through a pool of `workers` processes, each chunk's batches sent as it comes (the
    walk goes on meanwhile, and waits while more than QUEUED_BATCHES a worker are queued, so what is pending,
    and looked over after each chunk, stays that size on a tree of any size); the indices lost to a broken
    pool, but those that `blame` is given: a worker died of its own doing scanning them. Every chunk is taken,
    even from a broken pool."""
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait  # noqa: PLC0415
    from concurrent.futures.process import BrokenProcessPool  # noqa: PLC0415

    lost: list[int] = []
    pending: dict[Future[list[Collected]], list[int]] = {}

    def collect(finished: Iterable[Future[list[Collected]]]) -> None:
        for future in finished:
            batch = pending.pop(future)
            try:
                collected = future.result()
            except BrokenProcessPool:
                lost.extend(batch)
                continue
            for index, result in zip(batch, collected, strict=True):
                done(index, result)

    def settle(queued: int) -> None:
        """Collect results until at most `queued` batches are pending, stopping blocked workers meanwhile."""
        while len(pending) > queued:
            finished, _ = wait(pending, culprits.WATCH_SECONDS, FIRST_COMPLETED)
            collect(finished)
            board.stop_overdue()

    board = culprits.Board.for_pool(context, workers)
    with ProcessPoolExecutor(workers, context, _init_worker, (settings, board.parts)) as pool:
        # The workers, by pid, for their exit codes once the pool is down: a private attribute (CPython 3.2 to
        # 3.14 at least); without it only a worker stopped for blocking is blamed, and the rest are retried.
        processes = getattr(pool, "_processes", None)
        broken = False
        for chunk in chunks:
            if broken:
                lost.extend(chunk)
                continue
            try:
                for batch in batches(chunk, workers):
                    units = [chunk[i] for i in batch]
                    listed = provenance.listed(unit.path for unit in units)  # the walk's, handed on (provenance.learn)
                    pending[pool.submit(_scan_batch_in_worker, batch, units, listed)] = batch
            except BrokenProcessPool:
                broken = True
                sent = {i for batch in pending.values() for i in batch}
                lost.extend(i for i in chunk if i not in sent)
            collect([future for future in pending if future.done()])
            settle(QUEUED_BATCHES * workers)  # the walk waits while every worker has enough queued
        settle(0)
    if lost:  # the pool has shut down: every worker has ended
        found = board.culprits([(p.pid, p.exitcode) for p in processes.values()] if isinstance(processes, dict) else [])
        blame({index: reason for index, reason in found.items() if index in lost})
        lost = [index for index in lost if index not in found]
    return sorted(lost)


def forks_cheaply() -> bool:
    """Whether a pool started now would fork its workers from this process (milliseconds each, mlsec already
    imported), not start them from a fork server."""
    return _start_method() == "fork"


def _start_method() -> str:
    """fork where it is safe (Linux, and no other thread in this process that could hold a lock in the child):
    workers start in a millisecond with mlsec imported. Otherwise (a progress bar's thread, a server) a fork
    server that imported mlsec once. Measured on 2,000 small models: 0.29 s with fork, 0.65 s with a fresh
    fork server."""
    import multiprocessing  # noqa: PLC0415

    if sys.platform == "linux" and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


QUEUED_BATCHES = 8  # batches a worker (or a Ray CPU) may have waiting before the walk waits for results
BATCH_BYTES = 16 * 1024 * 1024  # small files travel to a worker together, up to this many bytes...
BATCH_UNITS = 32  # ...or this many files


def batches(units: dict[int, Unit], jobs: int) -> list[list[int]]:
    """Consecutive units grouped so one round trip carries many small files (a large file goes alone), with
    at least four batches per worker where there are enough units; the biggest batches go first."""
    cap = max(1, min(BATCH_UNITS, len(units) // (4 * jobs)))
    batches: list[list[int]] = []
    weights: list[int] = []
    for index, unit in units.items():
        if batches and len(batches[-1]) < cap and weights[-1] + unit.size <= BATCH_BYTES:
            batches[-1].append(index)
            weights[-1] += unit.size
        else:
            batches.append([index])
            weights.append(unit.size)
    order = sorted(range(len(batches)), key=lambda b: -weights[b])
    return [batches[b] for b in order]


def _scan_batch_in_worker(indices: list[int], units: list[Unit], listed: list[tuple[str, str]]) -> list[Collected]:
    """In a pool's worker: each unit posted on the board by its index in the walk (culprits.py), idle after;
    `listed`: their folders the walk listed (provenance.learn)."""
    settings = _WORKER_SETTINGS[0]
    provenance.learn(settings.scan_id, listed)
    try:
        return scan_batch(settings, units, indices)
    finally:
        culprits.post(culprits.IDLE)


def scan_batch(
    settings: ScanSettings, units: list[Unit], posted: list[int] | None = None, overran: tuple[int, str] | None = None
) -> list[Collected]:
    """`units` scanned in order, each posted on this worker's board where it has one (culprits.post) as `posted`
    names it (default: its position). `overran`: (position, reason) of the unit an earlier attempt at the batch
    died overrunning on (culprits.Attempt.overran): that unit is an error with that reason, not scanned again."""
    out = []
    for position, unit in enumerate(units):
        if overran and position == overran[0]:
            out.append(Collected(errors=[ScanError(unit.path, overran[1], None, "executor", "WorkerDied")]))
            continue
        culprits.post(posted[position] if posted else position)
        out.append(scan_unit(settings, unit))
    return out


def main_importable() -> bool:
    """Whether worker processes can import the caller's main module as multiprocessing requires (not for
    code read from standard input)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return path is None or getattr(main, "__spec__", None) is not None or os.path.isfile(path)


def executor_for(spec: str | None, jobs: int | None) -> Executor:
    """`spec` is None (this machine), `process`, `in-process`, `ray`, or `ray://HOST:PORT`; `jobs` the worker
    count on this machine (default: every core; 1 runs in this process)."""
    jobs = jobs or cpu_count()
    if spec is None or spec == "process":
        return InProcess() if jobs == 1 or not main_importable() else ProcessPool(jobs)
    if spec == "in-process":
        return InProcess()
    if spec == "ray" or spec.startswith("ray://"):
        from mlsec.ray_executor import Ray  # noqa: PLC0415 - it imports this module

        return Ray(None if spec == "ray" else spec, jobs)
    raise UsageError(f"unknown executor {spec!r}: use process, in-process, ray or ray://HOST:PORT")

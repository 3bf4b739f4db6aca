"""Ray tasks as an executor (`--executor ray[://HOST:PORT]`, the [ray] extra): batches of units scanned on a
cluster's workers, which read the files themselves (only paths and findings cross the network), the report merged
on the driver in walk order as any executor's. See docs/scale.md for running it on an existing cluster (KubeRay).

A file that takes a task's worker down costs only itself: Ray retries the task, and the retry reads on its node
which file the attempt before it died on (culprits.Attempt).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable
from typing import Any

from mlsec import culprits, executors
from mlsec.deadline import exit_on_overrun
from mlsec.errors import UsageError
from mlsec.executors import Chunk, Done
from mlsec.inputs import Unit
from mlsec.report import ScanError
from mlsec.scan_unit import Collected, ScanSettings, scan_unit


def _scan_batch_from(directory: str | None, settings: ScanSettings, units: list[Unit], batch: str) -> list[Collected]:
    """A Ray task: `units` scanned from the driver's working `directory`, so that a relative path names the file
    it named there (a cluster's worker starts elsewhere); the worker's own directory is put back afterwards. Where
    the node has no such directory, a relative path's unit is an error that says so; absolute ones are scanned.
    As in a pool's worker, an artifact stuck in native code ends the worker (deadline.exit_on_overrun), and one
    blocked there without the CPU is ended by the attempt's watcher; Ray retries the task, and the retry, reading
    the `batch`'s record on this node (culprits.Attempt), does not scan that file again but reports it."""
    exit_on_overrun()  # a file stuck in native code ends this worker process, and Ray's retry then names the file
    try:
        previous: str | None = os.getcwd()
    except OSError:  # the worker's directory was removed
        previous = None
    try:
        os.chdir(directory or "")  # None: the driver had no working directory (removed), "" fails the same way
    except OSError as exc:
        reason = f"relative path, and the driver's working directory {directory} is not on this Ray node ({exc.strerror})"
        return [
            scan_unit(settings, unit)
            if os.path.isabs(unit.path)
            else Collected(errors=[ScanError(unit.path, reason, None, "executor", type(exc).__name__)])
            for unit in units
        ]
    try:
        attempt = culprits.Attempt(batch)
        overran = attempt.overran()  # read before this attempt's own record replaces it
        with attempt:
            return executors.scan_batch(settings, units, overran=overran)
    finally:
        if previous is not None:
            with contextlib.suppress(OSError):
                os.chdir(previous)


class Ray:
    """Ray tasks, a batch of units each. `address` is `ray://HOST:PORT` (Ray Client), `auto`, or None for the
    instance this process already joined (`ray.init()` before the scan) or a new local one. Workers must
    see the same paths (a shared file system) and have mlsec installed; see docs/scale.md."""

    name = "ray"

    def __init__(self, address: str | None, jobs: int) -> None:
        self.address, self.jobs = address, jobs

    def run(self, settings: ScanSettings, chunks: Iterable[Chunk], done: Done) -> None:
        stream = iter(chunks)
        first = next((chunk for chunk in stream if chunk), None)  # a walk the cache answered whole starts no Ray
        if first is None:
            return
        try:
            import ray  # noqa: PLC0415 - the [ray] extra
        except ImportError:
            raise UsageError("--executor ray needs Ray: pip install 'mlsec[ray]'") from None
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, num_cpus=None if self.address else self.jobs, log_to_driver=False)
        try:
            self._run(ray, settings, itertools.chain([first], stream), done)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray: Any, settings: ScanSettings, chunks: Iterable[Chunk], done: Done) -> None:
        """Tasks go out as the walk goes, a round at a time: a round is sent once it fills every CPU of the
        cluster with four full batches (or the walk ends), so a big cluster still gets batches of many small
        files, and a walk of millions of files does not hold the cluster back until it ends. While more than
        QUEUED_BATCHES tasks a CPU are queued, the walk waits for results (and each wait looks at that many only)."""
        task = ray.remote(num_cpus=1, max_retries=1)(_scan_batch_from)
        shared = ray.put(settings)
        here: str | None = None
        with contextlib.suppress(OSError):  # a removed working directory: only absolute paths can be read anyway
            here = os.getcwd()  # relative paths mean on every node what they mean here
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        refs: dict[Any, list[tuple[int, Unit]]] = {}  # each task: its units, by index
        names = (f"{settings.scan_id or os.urandom(8).hex()}-{n}" for n in itertools.count())  # each task's own

        def submit(batch: list[tuple[int, Unit]]) -> None:
            refs[task.remote(here, shared, [unit for _, unit in batch], next(names))] = batch

        def send(units: Chunk) -> None:
            for batch in executors.batches(units, cpus):  # as the pool: by bytes, a large file alone, biggest first
                submit([(i, units[i]) for i in batch])

        def collect(ready: list[Any]) -> None:
            for ref in ready:
                batch = refs.pop(ref)
                try:
                    collected = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a task that failed twice (Ray retried it once)
                    if len(batch) > 1 and not isinstance(exc, ray.exceptions.RayTaskError):
                        # its worker died, and one file may have taken the others down: each again, alone, as the
                        # pool does (a task that raised, as where mlsec cannot load on a node, would only raise again)
                        for one in batch:
                            submit([one])
                        continue
                    error = f"ray task failed: {type(exc).__name__}: {exc}"
                    collected = [
                        Collected(errors=[ScanError(unit.path, error, None, "executor", "RayError")]) for _, unit in batch
                    ]
                for (index, _), result in zip(batch, collected, strict=True):
                    done(index, result)

        round_units: Chunk = {}
        for chunk in chunks:
            round_units.update(chunk)
            if len(round_units) >= 4 * cpus * executors.BATCH_UNITS:
                send(round_units)
                round_units = {}
                if len(refs) > executors.QUEUED_BATCHES * cpus:  # the walk waits while the cluster has two rounds' worth queued
                    collect(ray.wait(list(refs), num_returns=len(refs) - executors.QUEUED_BATCHES * cpus)[0])
        if round_units:
            send(round_units)
        while refs:
            collect(ray.wait(list(refs), num_returns=1)[0])

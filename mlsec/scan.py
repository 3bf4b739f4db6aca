"""scan(): plan the units of work under the inputs, run them (here, in a process pool, or on Ray) while the
walk goes on, take unchanged ones from the result cache, and assemble the ScanReport in walk order."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from mlsec import __version__, inputs, provenance, user_dirs
from mlsec.cache import ResultCache
from mlsec.executors import (
    Chunk,
    Executor,
    InProcess,
    ProcessPool,
    cpu_count,
    executor_for,
    forks_cheaply,
    main_importable,
)
from mlsec.findings import SECOND_ENGINE, Evidence, Finding, Location
from mlsec.inputs.images import ImageOptions
from mlsec.isolated import Isolated
from mlsec.limits import ScanLimits
from mlsec.report import ScanError, ScanReport, Skipped
from mlsec.rules import RuleSet, load_ruleset
from mlsec.scan_unit import Collected, ScanSettings, consume

# Below these, a pool costs more to start than it saves: the scan stays in this process (unless jobs is set).
SMALL_SCAN_UNITS = 24
SMALL_SCAN_BYTES = 64 * 1024 * 1024
CHUNK_UNITS = 512  # the walk hands the executor this many units at a time, so scanning starts before it ends


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a scan is: units (files and image directories) and their bytes; `cached` came from the cache."""

    done: int
    total: int
    bytes_done: int
    bytes_total: int
    cached: int
    executor: str


def scan(
    paths: Sequence[str],
    *,
    ruleset: RuleSet | None = None,
    limits: ScanLimits | None = None,
    debug: bool = False,
    vulndb: str | Path | None = None,
    osv_url: str | None = None,
    image_options: ImageOptions | None = None,
    reference: str | Path | None = None,
    label_column: str | None = None,
    jobs: int | None = None,
    executor: str | None = None,
    cache: ResultCache | None = None,
    paranoid: bool = False,
    progress: Callable[[Progress], None] | None = None,
    isolate: bool = False,
) -> ScanReport:
    """Statically scan files, directories and archives. Never executes what it reads.

    `vulndb` is the offline OSV database dependencies are checked against (default: the one
    `mlsec db import` stored, if any); `osv_url`, when given, is OSV's online query API, used through
    pip-audit for dependencies when there is no offline database.

    Files are scanned in parallel: `jobs` processes (default: every core, for scans big enough to gain;
    1: in this process), or Ray tasks with `executor="ray"` or `"ray://HOST:PORT"`. The report is the same
    whichever runs it. With `cache`, a file whose size, times and inode are unchanged since it was last
    scanned under the same rules, limits and tool is not read again (`paranoid`: its bytes are re-hashed
    instead of trusting the file system). `progress` is called as units finish. With `isolate` (the command
    line's choice), a scan too small for a pool runs in one worker process all the same, where one can be
    forked (Linux, no other thread in this process): a crash or a hang in native code is then an error for the
    file that caused it, not the end of the caller.
    """
    settings = ScanSettings(
        ruleset=ruleset or load_ruleset(),
        limits=limits or ScanLimits(),
        vulndb_path=Path(vulndb) if vulndb else user_dirs.vulndb_path(),
        osv_url=osv_url,
        image_options=image_options or ImageOptions(),
        reference_path=Path(reference) if reference else None,
        label_column=label_column,
        debug=debug,
        scan_id=os.urandom(8).hex(),
    )
    started = _now()
    provenance.begin(settings.scan_id)
    items: list[inputs.Unit | Skipped | ScanError] = []  # the walk, in order: the report's order
    units: dict[int, inputs.Unit] = {}
    results: dict[int, Collected] = {}
    session = cache.session(settings, paranoid=paranoid, jobs=jobs or cpu_count()) if cache and not osv_url else None
    if session:
        settings = replace(settings, cache_entries=True)
    counter = _Counter(progress)
    walked = [False]

    def chunks() -> Iterator[Chunk]:
        """The units still to scan, CHUNK_UNITS of the walk at a time, as the walk goes: workers start on the
        first while the rest is walked (and looked up in the cache). The last chunk comes when the walk ends."""
        chunk: Chunk = {}
        for item in inputs.plan(paths):
            items.append(item)
            if isinstance(item, inputs.Unit):
                chunk[len(items) - 1] = units[len(items) - 1] = item
                if len(chunk) == CHUNK_UNITS:
                    yield to_scan(chunk)
                    chunk = {}
        walked[0] = True
        yield to_scan(chunk)

    def to_scan(chunk: Chunk) -> Chunk:
        counter.grow(len(chunk), sum(unit.size for unit in chunk.values()))
        hits = session.lookup(chunk) if session and chunk else {}
        results.update(hits)
        if hits:
            counter.add(len(hits), sum(units[i].size for i in hits), cached=len(hits))
        return {i: unit for i, unit in chunk.items() if i not in hits}

    def done(index: int, collected: Collected) -> None:  # as each unit finishes: stored while others run
        results[index] = collected
        counter.add(1, units[index].size)
        if session:
            session.store(units[index], collected)

    stream = chunks()
    try:
        first = next(stream)  # a scan that ends within it is judged by its size; a longer one is big enough
        size = sum(unit.size for unit in first.values())
        runner = _executor(executor, jobs, len(first), size, debug, whole=walked[0], isolate=isolate)
        counter.start(runner.name)
        runner.run(settings, itertools.chain([first], stream), done)
    finally:
        if session:
            session.close()
    out = Collected()
    for i, item in enumerate(items):
        if i in results:
            out.extend(results[i])
        elif isinstance(item, Skipped):
            out.skipped.append(item)
        elif isinstance(item, ScanError):
            out.errors.append(item)
    return _report(out, settings.ruleset, started, tuple(paths))


def scan_bytes(
    name: str, data: bytes, *, ruleset: RuleSet | None = None, limits: ScanLimits | None = None, debug: bool = False
) -> ScanReport:
    """Statically scan bytes held in memory as if they were a file called `name` (archives are expanded).

    For bytes that never touch the disk: an artifact store's stream, a fuzzer's input. Never executes them.
    """
    settings = ScanSettings(ruleset or load_ruleset(), limits or ScanLimits())
    started = _now()
    out = Collected()
    consume(lambda: inputs.walk_bytes(name, data, settings.limits), name, settings.context(), out, debug)
    return _report(out, settings.ruleset, started, (name,))


def _executor(spec: str | None, jobs: int | None, units: int, size: int, debug: bool, *, whole: bool, isolate: bool) -> Executor:
    """Where `units` units of `size` bytes run; `whole`: they are all there is (the walk has ended), else more
    follow and the scan is big enough for any executor. A scan too small for a pool runs in this process, or
    with `isolate` in a worker of its own (_isolated)."""
    chosen = executor_for(spec, jobs)  # an unknown name is an error even when nothing is left to scan
    if debug or (whole and units == 0):
        return InProcess()  # --debug re-raises scanner errors, which needs them in this process
    if spec is None and jobs is None:  # automatic: a pool only where it pays
        small = whole and units < SMALL_SCAN_UNITS and size < SMALL_SCAN_BYTES
        if small or cpu_count() == 1 or not main_importable():
            return _isolated() if isolate else InProcess()
        return ProcessPool(cpu_count())
    if whole and units == 1 and chosen.name != "ray":  # Ray is asked for by name: it runs even one file
        return _isolated() if isolate and isinstance(chosen, ProcessPool) else InProcess()
    return chosen


def _isolated() -> Executor:
    """A forked worker where one forks in milliseconds (executors.forks_cheaply), else this process. In a worker,
    a crash in native code costs the file it was reading, reported as an error, and so does a C call still
    running at twice max_seconds of CPU (mlsec/isolated.py); in this process either would end or hang the caller."""
    return Isolated() if forks_cheaply() else InProcess()


class _Counter:
    """Progress as the walk finds units (the totals grow until it ends) and as they finish; nothing is reported
    before the executor is chosen (start)."""

    def __init__(self, callback: Callable[[Progress], None] | None) -> None:
        self.callback = callback
        self.executor: str | None = None
        self.done = self.bytes_done = self.cached = self.total = self.bytes_total = 0

    def grow(self, units: int, size: int) -> None:
        self.total += units
        self.bytes_total += size

    def start(self, executor: str) -> None:
        self.executor = executor
        if self.done:
            self.add(0, 0)

    def add(self, units: int, size: int, *, cached: int = 0) -> None:
        self.done += units
        self.bytes_done += size
        self.cached += cached
        if self.callback and self.executor is not None:
            self.callback(Progress(self.done, self.total, self.bytes_done, self.bytes_total, self.cached, self.executor))


def _report(out: Collected, ruleset: RuleSet, started: str, targets: tuple[str, ...]) -> ScanReport:
    findings = out.findings + [
        _limit_finding(e, ruleset) for e in out.errors if e.error_type == "LimitExceeded" and e.scanner != "inputs"
    ]
    findings = _corroborate(findings)
    findings.sort(key=Finding.sort_key)
    return ScanReport(
        tool_version=__version__,
        rules_digest=ruleset.digest,
        started_at=started,
        finished_at=_now(),
        targets=targets,
        artifacts=tuple(out.artifacts),
        findings=tuple(findings),
        skipped=tuple(out.skipped),
        errors=tuple(out.errors),
    )


def _corroborate(findings: list[Finding]) -> list[Finding]:
    """Fold a second engine's finding into mlsec's own of the same rule on the same file, as a fact."""
    second = [f for f in findings if f.evidence.source.startswith(SECOND_ENGINE)]
    if not second:
        return findings
    own = [f for f in findings if not f.evidence.source.startswith(SECOND_ENGINE)]
    confirmed = {(f.rule_id, f.location.path): f.evidence.source for f in second}
    covered = {(f.rule_id, f.location.path) for f in own}
    merged = [
        replace(f, evidence=replace(f.evidence, facts={**f.evidence.facts, "confirmed_by": confirmed[key]}))
        if (key := (f.rule_id, f.location.path)) in confirmed
        else f
        for f in own
    ]
    return merged + [f for f in second if (f.rule_id, f.location.path) not in covered]


def _limit_finding(error: ScanError, ruleset: RuleSet) -> Finding:
    """MLSEC-LIMIT-001 for a limit reached outside the archive readers (which have rules of their own)."""
    rule = ruleset.rule("MLSEC-LIMIT-001")
    where = f" ({error.scanner})" if error.scanner else ""
    return Finding(
        rule_id=rule.id,
        severity=rule.severity,
        message=f"{rule.title}: {error.reason}{where}",
        location=Location(path=error.path, member=error.member),
        evidence=Evidence(summary=error.reason, facts={"scanner": error.scanner}, source="mlsec limits"),
    )


def _now() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")

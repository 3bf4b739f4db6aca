"""scan(): plan the units of work under the inputs, run them (here, in a process pool, or on Ray), take
unchanged ones from the result cache, and assemble the ScanReport in walk order."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from mlsec import __version__, inputs, provenance
from mlsec.cache import ResultCache
from mlsec.dependencies.vulndb import default_path as default_vulndb
from mlsec.executors import Executor, InProcess, ProcessPool, Ray, cpu_count, executor_for, main_importable
from mlsec.findings import SECOND_ENGINE, Evidence, Finding, Location
from mlsec.inputs.images import ImageOptions
from mlsec.limits import ScanLimits
from mlsec.report import ScanError, ScanReport, Skipped
from mlsec.rules import RuleSet, load_ruleset
from mlsec.scan_unit import Collected, ScanSettings, consume

# Below these, a pool costs more to start than it saves: the scan stays in this process (unless jobs is set).
SMALL_SCAN_UNITS = 24
SMALL_SCAN_BYTES = 64 * 1024 * 1024


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
) -> ScanReport:
    """Statically scan files, directories and archives. Never executes what it reads.

    `vulndb` is the offline OSV database dependencies are checked against (default: the one
    `mlsec db import` stored, if any); `osv_url`, when given, is OSV's online query API, used through
    pip-audit for dependencies when there is no offline database.

    Files are scanned in parallel: `jobs` processes (default: every core, for scans big enough to gain;
    1: in this process), or Ray tasks with `executor="ray"` or `"ray://HOST:PORT"`. The report is the same
    whichever runs it. With `cache`, a file whose size, times and inode are unchanged since it was last
    scanned under the same rules, limits and tool is not read again (`paranoid`: its bytes are re-hashed
    instead of trusting the file system). `progress` is called as units finish.
    """
    settings = ScanSettings(
        ruleset=ruleset or load_ruleset(),
        limits=limits or ScanLimits(),
        vulndb_path=Path(vulndb) if vulndb else default_vulndb(),
        osv_url=osv_url,
        image_options=image_options or ImageOptions(),
        reference_path=Path(reference) if reference else None,
        label_column=label_column,
        debug=debug,
    )
    started = _now()
    provenance.forget()
    items = list(inputs.plan(paths))
    units = {i: item for i, item in enumerate(items) if isinstance(item, inputs.Unit)}
    sizes = {i: unit.size for i, unit in units.items()}
    results: dict[int, Collected] = {}
    session = cache.session(settings, paranoid=paranoid, jobs=jobs or cpu_count()) if cache and not osv_url else None
    if session:
        results.update(session.lookup(units))
        settings = replace(settings, cache_entries=True)
    pending = [i for i in units if i not in results]
    runner = _executor(executor, jobs, len(pending), sum(sizes[i] for i in pending), debug)
    counter = _Counter(progress, len(units), sum(sizes.values()), runner.name)
    counter.add(len(results), sum(sizes[i] for i in results), cached=len(results))

    def done(position: int, collected: Collected) -> None:  # as each unit finishes: stored while others run
        counter.add(1, sizes[pending[position]])
        if session:
            session.store(units[pending[position]], collected)

    try:
        results.update(zip(pending, runner.run(settings, [units[i] for i in pending], done), strict=True))
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


def _executor(spec: str | None, jobs: int | None, units: int, size: int, debug: bool) -> Executor:
    chosen = executor_for(spec, jobs)  # an unknown name is an error even when nothing is left to scan
    if debug or units == 0 or (units == 1 and not isinstance(chosen, Ray)):
        return InProcess()  # --debug re-raises scanner errors, which needs them in this process
    if spec is None and jobs is None:  # automatic: a pool only where it pays
        small = units < SMALL_SCAN_UNITS and size < SMALL_SCAN_BYTES
        return InProcess() if small or cpu_count() == 1 or not main_importable() else ProcessPool(cpu_count())
    return chosen


class _Counter:
    def __init__(self, callback: Callable[[Progress], None] | None, total: int, bytes_total: int, executor: str) -> None:
        self.callback, self.executor = callback, executor
        self.done = self.bytes_done = self.cached = 0
        self.total, self.bytes_total = total, bytes_total

    def add(self, units: int, size: int, *, cached: int = 0) -> None:
        self.done += units
        self.bytes_done += size
        self.cached += cached
        if self.callback:
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

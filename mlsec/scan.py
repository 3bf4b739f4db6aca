"""scan(): walk the inputs, hand every blob to its scanners, and assemble the ScanReport."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from mlsec import __version__, formats, inputs, provenance
from mlsec.artifacts import Artifact, ArtifactKind, Blob
from mlsec.deadline import ScanTimeout, deadline
from mlsec.dependencies.vulndb import default_path as default_vulndb
from mlsec.errors import LimitExceeded, MlsecError
from mlsec.findings import Evidence, Finding, JSONScalar, Location
from mlsec.inputs.events import Anomaly
from mlsec.inputs.images import ImageOptions
from mlsec.limits import ScanLimits
from mlsec.report import ScanError, ScanReport, Skipped
from mlsec.rules import RuleSet, load_ruleset
from mlsec.scanners import ScanContext, Scanner, scanners_for
from mlsec.scanners.modelscan_bridge import SOURCE_PREFIX as SECOND_ENGINE

log = logging.getLogger(__name__)


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
) -> ScanReport:
    """Statically scan files, directories and archives. Never executes what it reads.

    `vulndb` is the offline OSV database dependencies are checked against (default: the one
    `mlsec db import` stored, if any); `osv_url`, when given, is OSV's online query API, used through
    pip-audit for dependencies when there is no offline database.
    """
    ruleset = ruleset or load_ruleset()
    ctx = ScanContext(
        ruleset,
        limits or ScanLimits(),
        vulndb_path=Path(vulndb) if vulndb else default_vulndb(),
        osv_url=osv_url,
        reference_path=Path(reference) if reference else None,
        label_column=label_column,
    )
    started = _now()
    acc = _Accumulator()
    for path in paths:
        _consume(lambda p=path: inputs.walk([p], ctx.limits, image_options), path, ctx, acc, debug)
    return acc.report(ctx, started, tuple(paths))


def scan_bytes(
    name: str, data: bytes, *, ruleset: RuleSet | None = None, limits: ScanLimits | None = None, debug: bool = False
) -> ScanReport:
    """Statically scan bytes held in memory as if they were a file called `name` (archives are expanded).

    For bytes that never touch the disk: an artifact store's stream, a fuzzer's input. Never executes them.
    """
    ctx = ScanContext(ruleset or load_ruleset(), limits or ScanLimits())
    started = _now()
    acc = _Accumulator()
    _consume(lambda: inputs.walk_bytes(name, data, ctx.limits), name, ctx, acc, debug)
    return acc.report(ctx, started, (name,))


@dataclass
class _Accumulator:
    artifacts: list[Artifact] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)

    def report(self, ctx: ScanContext, started: str, targets: tuple[str, ...]) -> ScanReport:
        ruleset = ctx.ruleset
        findings = self.findings + [
            _limit_finding(e, ruleset) for e in self.errors if e.error_type == "LimitExceeded" and e.scanner != "inputs"
        ]
        findings = _corroborate(findings)
        findings.sort(key=Finding.sort_key)
        return ScanReport(
            tool_version=__version__,
            rules_digest=ruleset.digest,
            started_at=started,
            finished_at=_now(),
            targets=targets,
            artifacts=tuple(self.artifacts),
            findings=tuple(findings),
            skipped=tuple(self.skipped),
            errors=tuple(self.errors),
        )


def _consume(events: Callable[[], Iterator[inputs.Event]], path: str, ctx: ScanContext, acc: _Accumulator, debug: bool) -> None:
    """Hand every event of one input to its place in `acc`; a reader's unexpected failure ends that input only."""
    try:
        for event in events():
            if isinstance(event, Blob):
                _scan_blob(event, ctx, acc.artifacts, acc.findings, acc.skipped, acc.errors, debug)
            elif isinstance(event, Anomaly):
                acc.findings.append(_anomaly(event, ctx.ruleset))
                limit = ctx.ruleset.rule(event.rule_id).limit
                if limit:  # members past an archive limit were not read: the scan is incomplete
                    acc.errors.append(
                        ScanError(event.path, f"{limit} reached: {event.summary}", event.member, "inputs", "LimitExceeded")
                    )
            elif isinstance(event, Skipped):
                acc.skipped.append(event)
            else:
                acc.errors.append(event)
    except Exception as exc:
        if debug:
            raise
        log.debug("reading %s failed", path, exc_info=True)
        acc.errors.append(ScanError(path, f"reading stopped: {exc}", None, "inputs", type(exc).__name__))


def _scan_blob(
    blob: Blob,
    ctx: ScanContext,
    artifacts: list[Artifact],
    findings: list[Finding],
    skipped: list[Skipped],
    errors: list[ScanError],
    debug: bool,
) -> None:
    chosen = scanners_for(blob.format)
    container = blob.format in formats.ARCHIVES or blob.format in formats.COMPRESSED or blob.format in formats.IMAGES
    if not chosen and not container and not blob.member:
        skipped.append(Skipped(blob.path, _skip_reason(blob, ctx.ruleset)))
    scanner: Scanner | None = None
    try:
        with deadline(ctx.limits.max_seconds):
            for scanner in chosen:
                _run_scanner(scanner, blob, ctx, findings, errors, debug)
    except ScanTimeout:
        name = scanner.name if scanner else None
        reason = f"scanners stopped after {ctx.limits.max_seconds:g} s (max_seconds); findings so far are kept"
        errors.append(ScanError(blob.path, reason, blob.member_name, name, "LimitExceeded"))
    if not blob.member or chosen or container:
        artifacts.append(_artifact(blob, {**provenance.facts_for(blob.path), **ctx.facts_of(blob)}))
    for extra in ctx.take_extra():
        (artifacts if isinstance(extra, Artifact) else skipped).append(extra)


def _run_scanner(
    scanner: Scanner, blob: Blob, ctx: ScanContext, findings: list[Finding], errors: list[ScanError], debug: bool
) -> None:
    started = time.perf_counter()
    try:
        for finding in scanner.scan(blob, ctx):
            findings.append(finding)
    except MlsecError as exc:
        if debug:
            raise
        kind = "LimitExceeded" if isinstance(exc, LimitExceeded) else type(exc).__name__
        errors.append(ScanError(blob.path, exc.message, blob.member_name, scanner.name, kind))
    except Exception as exc:
        if debug:
            raise
        log.debug("scanner %s failed on %s", scanner.name, blob.display, exc_info=True)
        errors.append(ScanError(blob.path, f"{type(exc).__name__}: {exc}", blob.member_name, scanner.name, type(exc).__name__))
    log.debug("%s scanned %s in %.3fs", scanner.name, blob.display, time.perf_counter() - started)


def _artifact(blob: Blob, facts: dict[str, JSONScalar]) -> Artifact:
    if blob.format in formats.MODEL_FORMATS:
        kind = ArtifactKind.MODEL
    elif blob.format in formats.DATASET_FORMATS:
        kind = ArtifactKind.DATASET
    elif blob.format in formats.MANIFEST_FORMATS:
        kind = ArtifactKind.DEPENDENCIES
    elif blob.format in formats.IMAGES:
        kind = ArtifactKind.IMAGE
    elif blob.format in formats.ARCHIVES or blob.format in formats.COMPRESSED:
        kind = ArtifactKind.ARCHIVE
    else:
        kind = ArtifactKind.OTHER
    return Artifact(
        path=blob.path,
        member=blob.member_name,
        kind=kind,
        format=blob.format,
        sha256=blob.sha256,
        size=blob.size,
        parent_sha256=blob.parent_sha256,
        facts=facts,
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


def _skip_reason(blob: Blob, ruleset: RuleSet) -> str:
    """Why nothing read this file: a known format mlsec cannot inspect (rules/formats.toml), or an unknown one."""
    known: dict[str, str] = ruleset.lists.get("unsupported_formats", {})
    name = blob.path.lower()
    reason = known.get(blob.format) or next((why for suffix, why in known.items() if name.endswith(suffix)), None)
    return reason or f"no scanner for format {blob.format!r}"


def _anomaly(event: Anomaly, ruleset: RuleSet) -> Finding:
    rule = ruleset.rule(event.rule_id)
    return Finding(
        rule_id=rule.id,
        severity=rule.severity,
        message=f"{rule.title}: {event.summary}",
        location=Location(path=event.path, member=event.member),
        evidence=Evidence(summary=event.summary, facts=dict(event.facts), source="mlsec inputs"),
        artifact_sha256=event.artifact_sha256,
    )


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

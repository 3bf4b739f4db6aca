"""Registry workflows: scan model versions and tag their verdicts back (incrementally), and promote a
version to an alias only when the serve gate allows it. Every scan and decision goes to the ledger.

The registry is anything with the methods of `MlflowRegistry` (versions, fingerprint, fetch, tag,
alias, set_alias); the gate is a callable from a ScanReport to a Decision, so this module holds no
policy or CLI concerns.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from mlsec.audit_records import record_gate, record_scan, subjects_of
from mlsec.decision import Decision
from mlsec.findings import Severity
from mlsec.ledger import Ledger
from mlsec.limits import ScanLimits
from mlsec.registry.mlflow import Version
from mlsec.report import ScanReport
from mlsec.rules import RuleSet
from mlsec.scan import scan

TAG_PREFIX = "mlsec."


class Registry(Protocol):
    def versions(self, model: str | None = None, version: str | None = None, alias: str | None = None) -> list[Version]: ...
    def fingerprint(self, version: Version) -> str: ...
    def fetch(self, version: Version, dest: Path, max_bytes: int) -> Path: ...
    def tag(self, version: Version, tags: dict[str, str]) -> None: ...
    def alias(self, name: str, alias: str) -> str | None: ...
    def set_alias(self, version: Version, alias: str) -> None: ...


@dataclass(frozen=True, slots=True)
class VersionScan:
    version: Version
    verdict: str  # clean | blocked | incomplete
    report: ScanReport | None  # None when the version was unchanged since its last scan
    unchanged: bool = False


@dataclass(frozen=True, slots=True)
class Promotion:
    version: Version
    alias: str
    allowed: bool
    decision: Decision
    report: ScanReport
    previous: str | None  # the version the alias pointed at before (and still does when denied)


def verdict_of(report: ScanReport, fail_on: Severity) -> str:
    top = report.max_severity()
    if top is not None and top >= fail_on:
        return "blocked"
    return "incomplete" if report.errors else "clean"


def scan_version(registry: Registry, version: Version, *, ruleset: RuleSet, limits: ScanLimits) -> ScanReport:
    """Fetch the version's artifacts into a temporary folder and scan them; paths in the report read models:/NAME/VERSION/..."""
    with tempfile.TemporaryDirectory(prefix="mlsec-registry-") as tmp:
        folder = registry.fetch(version, Path(tmp), limits.max_total_unpacked)
        report = scan([str(folder)], ruleset=ruleset, limits=limits)
        return relocate(report, str(folder), version.uri)


def scan_versions(
    registry: Registry,
    versions: list[Version],
    *,
    ruleset: RuleSet,
    limits: ScanLimits,
    fail_on: Severity = Severity.HIGH,
    force: bool = False,
    ledger: Ledger | None = None,
) -> list[VersionScan]:
    """Scan each version whose artifacts or rules changed since its last scan; tag the verdict back."""
    results = []
    for version in versions:
        fingerprint = registry.fingerprint(version)
        tags = version.tags
        if (
            not force
            and tags.get("mlsec.artifacts_fingerprint") == fingerprint
            and tags.get("mlsec.rules_digest") == ruleset.digest
        ):
            results.append(VersionScan(version, tags.get("mlsec.verdict", "unknown"), None, unchanged=True))
            continue
        report = scan_version(registry, version, ruleset=ruleset, limits=limits)
        verdict = verdict_of(report, fail_on)
        registry.tag(version, {
            "mlsec.verdict": verdict,
            "mlsec.report_sha256": hashlib.sha256(report.to_json().encode()).hexdigest(),
            "mlsec.rules_digest": ruleset.digest,
            "mlsec.scanned_at": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "mlsec.artifacts_fingerprint": fingerprint,
        })  # fmt: skip
        if ledger is not None:
            record_scan(ledger, report, {"clean": 0, "blocked": 1, "incomplete": 3}[verdict])
        results.append(VersionScan(version, verdict, report))
    return results


def promote(
    registry: Registry,
    version: Version,
    alias: str,
    decide: Callable[[ScanReport], Decision],
    *,
    ruleset: RuleSet,
    limits: ScanLimits,
    ledger: Ledger | None = None,
) -> Promotion:
    """Scan the version, ask the gate (the serve stage), and move `alias` to it only when allowed.
    A denied promotion leaves the registry as it was."""
    previous = registry.alias(version.name, alias)
    report = scan_version(registry, version, ruleset=ruleset, limits=limits)
    decision = decide(report)
    if ledger is not None:
        record_gate(ledger, decision, report)
        ledger.append(
            "promote",
            subjects=subjects_of(report),
            digests={"policies_digest": decision.policies_digest, "rules_digest": ruleset.digest},
            result={"allowed": decision.allowed, "alias": alias, "model": version.name, "version": version.version,
                    "previous": previous, "denies": [f"{r.gate_id}: {r.message}" for r in decision.denies]},
        )  # fmt: skip
    if decision.allowed:
        registry.set_alias(version, alias)
    return Promotion(version, alias, decision.allowed, decision, report, previous)


def relocate(report: ScanReport, folder: str, uri: str) -> ScanReport:
    """The report with paths under `folder` named under `uri` instead (what an auditor can look up)."""

    def moved(path: str) -> str:
        if path == folder:
            return uri
        return f"{uri}/{Path(path).relative_to(folder).as_posix()}" if path.startswith(folder + "/") else path

    return replace(
        report,
        targets=tuple(moved(t) for t in report.targets),
        artifacts=tuple(replace(a, path=moved(a.path)) for a in report.artifacts),
        findings=tuple(replace(f, location=replace(f.location, path=moved(f.location.path))) for f in report.findings),
        skipped=tuple(replace(s, path=moved(s.path)) for s in report.skipped),
        errors=tuple(replace(e, path=moved(e.path)) for e in report.errors),
    )

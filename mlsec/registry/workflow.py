"""Registry workflows: scan model versions and tag their verdicts back (incrementally), and promote a
version to an alias only when the serve gate allows it. Every scan and decision goes to the ledger.

The registry is anything with the methods of `MlflowRegistry` (versions, fingerprint, fetch, tag,
alias, set_alias); the gate is a callable from a ScanReport to a Decision, so this module holds no
policy or CLI concerns.

With an EvaluationPlan, a version's models are also evaluated (mlsec.evaluations, in its sandbox) on the
plan's dataset, which is scanned with the version: only a version whose scan is clean is evaluated at
all, only the files the evaluation loads (EVALUABLE_FORMATS: pickles, PyTorch, ONNX), and the evaluation's
own refusal still applies to each. The results join the version's report,
so its verdict, tags and the serve gate (MLSEC-GATE-005) see them.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from mlsec.audit_records import record_gate, record_scan, subjects_of
from mlsec.decision import Decision
from mlsec.evaluations import EVALUABLE_FORMATS, HEADLINE_METRICS, evaluate  # evaluate() loads ART in its child only
from mlsec.findings import Severity
from mlsec.inputs import hash_file
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
class EvaluationPlan:
    """Evaluate each model of a version on `data`; `options` are mlsec.evaluations.evaluate's keyword
    arguments (label_column, suites, epsilons, sample, factory, factory_path, input_shape...)."""

    data: Path
    options: Mapping[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """What decides the evaluation besides the version's files: the dataset's bytes and the options."""
        said = json.dumps({"data": hash_file(str(self.data)), **self.options}, sort_keys=True, default=str)
        return hashlib.sha256(said.encode()).hexdigest()


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


def scan_version(
    registry: Registry,
    version: Version,
    *,
    ruleset: RuleSet,
    limits: ScanLimits,
    evaluation: EvaluationPlan | None = None,
    fail_on: Severity = Severity.HIGH,
) -> ScanReport:
    """Fetch the version's artifacts into a temporary folder and scan them (with the plan's dataset), then,
    when the scan is clean, evaluate each model file; paths in the report read models:/NAME/VERSION/..."""
    with tempfile.TemporaryDirectory(prefix="mlsec-registry-") as tmp:
        folder = registry.fetch(version, Path(tmp), limits.max_total_unpacked)
        targets = [str(folder)] + ([str(evaluation.data)] if evaluation else [])
        report = scan(targets, ruleset=ruleset, limits=limits, isolate=True)
        if evaluation is not None and report.verdict(fail_on) == "clean":
            report = _evaluate(report, evaluation, ruleset)
        return relocate(report, str(folder), version.uri)


def _evaluate(report: ScanReport, plan: EvaluationPlan, ruleset: RuleSet) -> ScanReport:
    models = [a.path for a in report.artifacts if a.member is None and a.format in EVALUABLE_FORMATS]
    for model in models:
        report = evaluate(model, plan.data, report=report, ruleset=ruleset, **plan.options)
    return report


def evaluation_tag(report: ScanReport) -> str:
    """The evaluations' statuses and headline metrics, compact enough for a registry tag (500 characters)."""
    names = {a.sha256: Path(a.path).name for a in report.artifacts if a.member is None}
    parts = []
    for e in report.evaluations:
        what = names.get(e.artifact_sha256, e.artifact_sha256[:12]) + ("" if e.name == e.status else f" {e.name}")
        numbers = "".join(f" {k}={e.metrics[k]:g}" for k in HEADLINE_METRICS if k in e.metrics)
        why = f" ({e.evidence.summary[:160]})" if e.status in ("error", "refused") else ""
        parts.append(f"{what} {e.status}{numbers}{why}")
    text = "; ".join(parts) or "no model to evaluate"
    return text if len(text) <= 500 else text[:499] + "…"


def scan_versions(
    registry: Registry,
    versions: list[Version],
    *,
    ruleset: RuleSet,
    limits: ScanLimits,
    fail_on: Severity = Severity.HIGH,
    force: bool = False,
    ledger: Ledger | None = None,
    evaluation: EvaluationPlan | None = None,
) -> list[VersionScan]:
    """Scan (and with `evaluation`, evaluate) each version whose artifacts, rules or evaluation plan changed
    since its last scan; tag the verdict back."""
    results = []
    evaluated = evaluation.fingerprint() if evaluation else None
    for version in versions:
        fingerprint = registry.fingerprint(version)
        tags = version.tags
        if (
            not force
            and tags.get("mlsec.artifacts_fingerprint") == fingerprint
            and tags.get("mlsec.rules_digest") == ruleset.digest
            and (evaluated is None or tags.get("mlsec.evaluation_fingerprint") == evaluated)
        ):
            results.append(VersionScan(version, tags.get("mlsec.verdict", "unknown"), None, unchanged=True))
            continue
        report = scan_version(registry, version, ruleset=ruleset, limits=limits, evaluation=evaluation, fail_on=fail_on)
        verdict = report.verdict(fail_on)
        tags = {
            "mlsec.verdict": verdict,
            "mlsec.report_sha256": hashlib.sha256(report.to_json().encode()).hexdigest(),
            "mlsec.rules_digest": ruleset.digest,
            "mlsec.scanned_at": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "mlsec.artifacts_fingerprint": fingerprint,
        }
        if evaluated is not None:
            tags |= {"mlsec.evaluation": evaluation_tag(report), "mlsec.evaluation_fingerprint": evaluated}
        registry.tag(version, tags)
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
    evaluation: EvaluationPlan | None = None,
) -> Promotion:
    """Scan (and with `evaluation`, evaluate) the version, ask the gate (the serve stage), and move `alias`
    to it only when allowed. A denied promotion leaves the registry as it was."""
    previous = registry.alias(version.name, alias)
    report = scan_version(registry, version, ruleset=ruleset, limits=limits, evaluation=evaluation)
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

"""What the audit ledger records for each kind of event: subjects, digests and result, from the
objects the commands already have (a ScanReport or its JSON, a Decision, a signed path)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlsec.decision import Decision
from mlsec.evaluations import HEADLINE_METRICS
from mlsec.ledger import Entry, Ledger
from mlsec.report import EXIT_STATUS, ScanReport


def subjects_of(report: ScanReport | Mapping[str, Any]) -> dict[str, str]:
    """path -> sha256 of every top-level artifact (members are covered by their container's digest)."""
    doc = report.to_dict() if isinstance(report, ScanReport) else report
    return {str(a["path"]): str(a["sha256"]) for a in doc.get("artifacts", []) if not a.get("member") and a.get("sha256")}


def entries_about(ledger: Ledger, report: ScanReport | Mapping[str, Any]) -> list[Entry]:
    """The ledger's entries about any top-level artifact of `report` (what the HTML report shows)."""
    digests = set(subjects_of(report).values())
    return [e for e in ledger.entries() if digests & set(e.subjects.values())]


_VERDICTS = {code: verdict for verdict, code in EXIT_STATUS.items()}


def record_scan(ledger: Ledger, report: ScanReport, exit_code: int) -> Entry:
    doc = report.to_dict()
    verdict = _VERDICTS.get(exit_code, f"exit {exit_code}")
    return ledger.append(
        "scan",
        subjects=subjects_of(doc),
        digests={"rules_digest": report.rules_digest, "report_sha256": _sha256(report.to_json())},
        result={"verdict": verdict, "exit_code": exit_code, "findings": doc["summary"]["findings"],
                "errors": len(report.errors), "targets": list(report.targets)},
    )  # fmt: skip


def record_gate(ledger: Ledger, decision: Decision, report: ScanReport | Mapping[str, Any]) -> Entry:
    doc = report.to_dict() if isinstance(report, ScanReport) else report
    return ledger.append(
        "gate",
        subjects=subjects_of(doc),
        digests={"policies_digest": decision.policies_digest, "rules_digest": str(doc.get("rules_digest", "")),
                 "report_sha256": _sha256(json.dumps(doc, sort_keys=True))},
        result={"allowed": decision.allowed, "stage": decision.stage, "engine": decision.engine,
                "denies": [f"{r.gate_id}: {r.message}" for r in decision.denies],
                "waived": [f"{r.gate_id}: {r.message} ({r.waiver})" for r in decision.waived]},
    )  # fmt: skip


def record_evaluation(ledger: Ledger, report: ScanReport, exit_code: int) -> Entry:
    """An `mlsec evaluate` run: the model and dataset it covered, and each result's status and headline metrics."""
    doc = report.to_dict()
    subjects = {
        f"{kind}:{sha}": sha
        for e in report.evaluations
        for kind, sha in (("model", e.artifact_sha256), ("dataset", e.dataset_sha256))
        if sha
    }
    return ledger.append(
        "evaluate",
        subjects={**subjects_of(doc), **subjects},
        digests={"rules_digest": report.rules_digest, "report_sha256": _sha256(report.to_json())},
        result={"exit_code": exit_code,
                "evaluations": [{"name": e.name, "status": e.status,
                                 **{k: e.metrics[k] for k in HEADLINE_METRICS if k in e.metrics}}
                                for e in report.evaluations]},
    )  # fmt: skip


def record_signature(ledger: Ledger, path: Path, bundle: Path, method: str) -> Entry:
    return ledger.append(
        "sign",
        subjects={str(path): _digest_of(path)},
        digests={"bundle_sha256": _sha256(bundle.read_bytes())},
        result={"bundle": str(bundle), "method": method},
    )


def _digest_of(path: Path) -> str:
    """A file's sha256; for a directory (a model folder), the sha256 of its sorted (name, sha256) list."""
    if path.is_file():
        return _sha256(path.read_bytes())
    parts = [f"{p.relative_to(path).as_posix()}\0{_sha256(p.read_bytes())}" for p in sorted(path.rglob("*")) if p.is_file()]
    return _sha256("\n".join(parts))


def _sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()

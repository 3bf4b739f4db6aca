"""Helpers for gate tests: scan reports as JSON, gate inputs with a fixed date, policy directories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlsec.gate_input import build_gate_input, environment


def finding(
    rule_id: str = "MLSEC-PICKLE-001", severity: str = "critical", sha: str = "a" * 64, path: str = "m.pkl"
) -> dict[str, Any]:
    return {
        "rule_id": rule_id,
        "severity": severity,
        "message": f"{rule_id} message",
        "location": {"path": path, "member": None, "offset": None, "line": None},
        "evidence": {"summary": "s", "facts": {}, "source": "test"},
        "artifact_sha256": sha,
    }


def report(*findings: dict[str, Any], errors: tuple = (), artifacts: tuple = ()) -> dict[str, Any]:
    return {
        "schema_version": "mlsec.report/1",
        "tool": {"name": "mlsec", "version": "0"},
        "rules_digest": "sha256:" + "0" * 64,
        "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:00:00Z",
        "targets": ["m.pkl"],
        "summary": {"artifacts": 0, "findings": {}, "max_severity": None, "skipped": 0, "errors": len(errors)},
        "artifacts": list(artifacts),
        "findings": list(findings),
        "skipped": [],
        "errors": list(errors),
        "evaluations": [],
    }


def gate_input(doc: dict[str, Any], stage: str = "pr", date: str = "2026-06-01") -> dict[str, Any]:
    env = {**environment(), "date": date}
    return build_gate_input(doc, stage=stage, env=env)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path

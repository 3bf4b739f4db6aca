"""SARIF 2.1.0 for GitHub code scanning: one rule descriptor per rule used, security-severity, fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from mlsec import __version__
from mlsec.findings import Finding, Severity
from mlsec.outputs.text import printable
from mlsec.report import ScanReport
from mlsec.rules import Rule, RuleSet

_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}
_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def render(report: ScanReport, ruleset: RuleSet) -> str:
    used = sorted({f.rule_id for f in report.findings})
    index = {rid: i for i, rid in enumerate(used)}
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "mlsec",
                "version": __version__,
                "informationUri": "https://github.com/mlsec/mlsec",
                "rules": [_descriptor(ruleset.rule(rid), ruleset) for rid in used],
            }
        },
        "results": [_result(f, index[f.rule_id]) for f in report.findings],
        "invocations": [
            {
                "executionSuccessful": not report.errors,
                "toolExecutionNotifications": [
                    {
                        "level": "error",
                        "message": {"text": printable(f"{e.path}{' [' + e.member + ']' if e.member else ''}: {e.reason}")},
                        "locations": [_location(e.path)],
                    }
                    for e in report.errors
                ],
            }
        ],
        "properties": {"rules_digest": report.rules_digest, "schema_version": report.schema_version},
    }
    doc = {"$schema": _SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _descriptor(rule: Rule, ruleset: RuleSet) -> dict[str, Any]:
    tags = ["security", *rule.cwe]
    for fid, controls in rule.frameworks.items():
        tags.extend(f"{ruleset.frameworks[fid].title}: {c}" for c in controls)
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.title},
        "help": {"text": rule.help, "markdown": f"**{rule.title}**\n\n{rule.help}"},
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {"security-severity": _SECURITY_SEVERITY[rule.severity], "tags": tags},
    }


def _result(f: Finding, rule_index: int) -> dict[str, Any]:
    member = f.location.member
    text = printable(f.message + (f" (in archive member {member})" if member else ""))
    fingerprint = hashlib.sha256(
        "\x1f".join([f.rule_id, f.location.path, member or "", f.evidence.summary]).encode("utf-8", "surrogateescape")
    ).hexdigest()
    return {
        "ruleId": f.rule_id,
        "ruleIndex": rule_index,
        "level": _LEVEL[f.severity],
        "message": {"text": text},
        "locations": [_location(f.location.path, member)],
        "partialFingerprints": {"mlsecFinding/v1": fingerprint},
        "properties": {
            "severity": f.severity.label,
            "member": member,
            "offset": f.location.offset,
            "artifact_sha256": f.artifact_sha256,
            "evidence_source": f.evidence.source,
        },
    }


def _location(path: str, member: str | None = None) -> dict[str, Any]:
    rel = os.path.relpath(path) if os.path.isabs(path) else path
    if rel.startswith(".."):
        rel = path
    posix = PurePosixPath(*rel.split(os.sep)) if rel else PurePosixPath(".")
    uri = quote(posix.as_posix(), safe="/:") if not posix.is_absolute() else "file://" + quote(posix.as_posix(), safe="/")
    loc: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": uri}}}
    if member:
        loc["message"] = {"text": printable(f"archive member {member}")}
    return loc

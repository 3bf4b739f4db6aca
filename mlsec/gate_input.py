"""The versioned document policies read (mlsec.gate-input/1): stage, report, signatures, evaluations, environment."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mlsec import __version__
from mlsec.report import ScanReport

SCHEMA = "mlsec.gate-input/1"
STAGES = ("pr", "train", "register", "serve")
_GITHUB = {
    "repository": "GITHUB_REPOSITORY",
    "ref": "GITHUB_REF",
    "sha": "GITHUB_SHA",
    "event": "GITHUB_EVENT_NAME",
    "actor": "GITHUB_ACTOR",
}

JSON = Any


def environment(now: datetime | None = None, env: Mapping[str, str] | None = None) -> dict[str, JSON]:
    """Facts about where the gate runs; `date` decides waiver expiry (SOURCE_DATE_EPOCH pins it)."""
    env = os.environ if env is None else env
    if now is None:
        epoch = env.get("SOURCE_DATE_EPOCH")
        now = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    facts: dict[str, JSON] = {
        "date": now.strftime("%Y-%m-%d"),
        "time": now.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "ci": env.get("CI", "").lower() in ("1", "true", "yes"),
        "mlsec_version": __version__,
    }
    if env.get("GITHUB_ACTIONS"):
        facts["github"] = {key: env.get(var, "") for key, var in _GITHUB.items()}
    return facts


def build_gate_input(
    report: ScanReport | Mapping[str, JSON],
    *,
    stage: str,
    signatures: Sequence[Mapping[str, JSON]] = (),
    env: Mapping[str, JSON] | None = None,
) -> dict[str, JSON]:
    """The input document for `data.mlsec.gates`. `report` is a ScanReport or its JSON form."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} (expected one of: {', '.join(STAGES)})")
    doc = report.to_dict() if isinstance(report, ScanReport) else dict(report)
    return {
        "schema": SCHEMA,
        "stage": stage,
        "report": doc,
        "signatures": [dict(s) for s in signatures],
        "evaluations": list(doc.get("evaluations", [])),
        "environment": dict(env) if env is not None else environment(),
    }

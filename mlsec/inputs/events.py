"""What container readers hand back to the walker: member bytes, anomalies, skips and errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mlsec.findings import JSONScalar


@dataclass(frozen=True, slots=True)
class MemberData:
    """One member's bytes, read into bounded memory."""

    name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something about a container that a rule judges (traversal, link, bomb, CRC mismatch)."""

    rule_id: str
    path: str
    member: str | None
    summary: str
    facts: Mapping[str, JSONScalar] = field(default_factory=dict)
    artifact_sha256: str | None = None


def unsafe_name(name: str) -> str | None:
    """The archive rule a member name breaks (absolute or climbing out), if any."""
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return "MLSEC-ARCHIVE-002"
    if ".." in normalized.split("/"):
        return "MLSEC-ARCHIVE-001"
    return None

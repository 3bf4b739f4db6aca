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


def printable(text: str) -> str:
    """`text` as valid Unicode: the bytes a name could not decode (surrogate escapes) become `\\xNN`.

    Names from tar headers and file systems are bytes; Python keeps undecodable ones as lone
    surrogates, which no UTF-8 report or terminal can hold. Reports show them escaped instead.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join(
            f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c
            for c in text
        )
    return text

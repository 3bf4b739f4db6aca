"""What a scan found: severities, locations, evidence and findings. Pure data, no I/O."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

SECOND_ENGINE = "modelscan"  # Evidence.source prefix of findings from the second engine (scanners/modelscan_bridge.py)

JSONScalar: TypeAlias = str | int | float | bool | None


class Severity(enum.IntEnum):
    """How bad a finding is; ordered so that thresholds compare with `>=`."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity:
        """Read a severity name (any case); raise ValueError naming the valid ones."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of: {names})") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Location:
    """Where a finding is: the path as given (plus walked sub-path), the archive chain, an offset."""

    path: str
    member: str | None = None
    offset: int | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    """What was seen: a one-line summary for humans, facts for policies, and who established it."""

    summary: str
    facts: Mapping[str, JSONScalar] = field(default_factory=dict)
    source: str = "mlsec"


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule that fired on one artifact. Severity and message come from the rule."""

    rule_id: str
    severity: Severity
    message: str
    location: Location
    evidence: Evidence
    artifact_sha256: str | None = None

    def sort_key(self) -> tuple[str, str, int, str, str]:
        loc = self.location
        return (loc.path, loc.member or "", loc.offset or 0, self.rule_id, self.evidence.summary)

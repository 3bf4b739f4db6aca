"""Decision and Reason: what a gate concluded, and why. Pure data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Reason:
    """One deny, warning or waived result of one policy."""

    gate_id: str  # the policy's custom.id (its package path when it has none)
    message: str
    rule_id: str | None = None  # the mlsec rule behind it, when there is one
    artifact: str | None = None  # sha256 (or path) of the artifact it is about
    package: str = ""  # the Rego package that produced it
    rule: str = ""  # deny / violation / warn, with its suffix
    waiver: str | None = None  # for waived results: who waived it, why, until when

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate_id": self.gate_id,
            "message": self.message,
            "rule_id": self.rule_id,
            "artifact": self.artifact,
            "package": self.package,
            "rule": self.rule,
            "waiver": self.waiver,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The gate's answer: allowed when no deny survived the waivers."""

    allowed: bool
    stage: str
    denies: tuple[Reason, ...]
    warnings: tuple[Reason, ...]
    waived: tuple[Reason, ...]
    engine: str
    policies_digest: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": "mlsec.decision/1",
            "allowed": self.allowed,
            "stage": self.stage,
            "engine": self.engine,
            "policies_digest": self.policies_digest,
            "denies": [r.to_dict() for r in self.denies],
            "warnings": [r.to_dict() for r in self.warnings],
            "waived": [r.to_dict() for r in self.waived],
        }

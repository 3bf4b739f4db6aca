"""The Scanner protocol and ScanContext: a scanner says what it saw and where; rules say how bad."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from mlsec.artifacts import Artifact, Blob
from mlsec.findings import Evidence, Finding, JSONScalar, Location
from mlsec.limits import ScanLimits
from mlsec.report import Skipped
from mlsec.rules import RuleSet


@dataclass(frozen=True, slots=True)
class ScanContext:
    ruleset: RuleSet
    limits: ScanLimits
    vulndb_path: Path | None = None  # the offline OSV database (dependency scanning); None: none available
    osv_url: str | None = None  # the online OSV query API, only when the user asked for it (--online)
    reference_path: Path | None = None  # datasets: the trusted reference new data is compared with
    label_column: str | None = None  # datasets: the label column (default: label, target, y, class)
    _facts: dict[tuple[str, tuple[str, ...]], dict[str, JSONScalar]] = field(default_factory=dict, repr=False)
    _extra: list[Artifact | Skipped] = field(default_factory=list, repr=False)
    _open: dict[str, Any] = field(default_factory=dict, repr=False)
    _beside: list[str] = field(default_factory=list, repr=False)

    def add_artifact(self, artifact: Artifact) -> None:
        """Report an artifact that is not a blob of its own (a dependency a manifest names)."""
        self._extra.append(artifact)

    def skip(self, skipped: Skipped) -> None:
        """Report something a scanner could not check, with the reason."""
        self._extra.append(skipped)

    def take_extra(self) -> list[Artifact | Skipped]:
        extra, self._extra[:] = list(self._extra), []
        return extra

    def read_beside(self, blob: Blob, path: str | Path) -> None:
        """Say that `blob`'s findings depend on another file (a module config.json names, ONNX external data,
        an included requirements file): its result is then never taken from the result cache."""
        self._beside.append(f"{blob.display}: {path}")

    def take_beside(self) -> list[str]:
        beside, self._beside[:] = list(self._beside), []
        return beside

    def resource(self, key: str, opener: Callable[[], Any]) -> Any:
        """A value opened once per scan (a database connection), shared by every blob."""
        if key not in self._open:
            self._open[key] = opener()
        return self._open[key]

    def describe(self, blob: Blob, **facts: JSONScalar) -> None:
        """Record what a scanner learned about `blob` (opset, producer, parameters...) for its Artifact."""
        self._facts.setdefault((blob.path, blob.member), {}).update(facts)

    def facts_of(self, blob: Blob) -> dict[str, JSONScalar]:
        """The facts recorded for `blob`, removed from the context."""
        return self._facts.pop((blob.path, blob.member), {})

    def finding(
        self,
        rule_id: str,
        blob: Blob,
        summary: str,
        *,
        facts: Mapping[str, JSONScalar] | None = None,
        source: str = "mlsec",
        offset: int | None = None,
        member: str | None = None,
    ) -> Finding:
        """A finding of `rule_id` on `blob`; severity and message come from the rule."""
        rule = self.ruleset.rule(rule_id)
        return Finding(
            rule_id=rule.id,
            severity=rule.severity,
            message=f"{rule.title}: {summary}",
            location=Location(path=blob.path, member=member or blob.member_name, offset=offset),
            evidence=Evidence(summary=summary, facts=dict(facts or {}), source=source),
            artifact_sha256=blob.sha256,
        )


class Scanner(Protocol):
    name: ClassVar[str]
    formats: ClassVar[frozenset[str]]

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]: ...

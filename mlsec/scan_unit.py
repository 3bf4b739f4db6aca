"""One unit of a scan (a file and its members, or an image directory), as any process runs it.

`scan()` plans the units and merges their results in order; an executor (mlsec/executors.py) decides
where `scan_unit` runs: in this process, in a process pool, or as Ray tasks. Everything a unit needs
travels in `ScanSettings`, which pickles; everything it found comes back in `Collected`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlsec import formats, inputs, provenance
from mlsec.artifacts import Artifact, ArtifactKind, Blob
from mlsec.deadline import ScanTimeout, deadline
from mlsec.errors import LimitExceeded, MlsecError
from mlsec.findings import Evidence, Finding, JSONScalar, Location
from mlsec.inputs.events import Anomaly, printable
from mlsec.inputs.images import ImageOptions
from mlsec.limits import ScanLimits
from mlsec.report import ScanError, Skipped, finding_from_dict, finding_to_dict
from mlsec.rules import RuleSet

if TYPE_CHECKING:  # the scanners load with the first unit scanned: a scan answered from the cache needs none
    from mlsec.scanners import ScanContext, Scanner

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScanSettings:
    """What a scan of any unit needs, in a form that crosses process boundaries (pickle)."""

    ruleset: RuleSet
    limits: ScanLimits
    vulndb_path: Path | None = None
    osv_url: str | None = None
    image_options: ImageOptions = field(default_factory=ImageOptions)
    reference_path: Path | None = None
    label_column: str | None = None
    debug: bool = False
    cache_entries: bool = False  # also encode each cacheable result for the result cache, in the worker
    scan_id: str = ""  # which scan this is: a worker that serves one scan after another (Ray's) starts afresh

    def context(self) -> ScanContext:
        from mlsec.scanners import ScanContext  # noqa: PLC0415 - see the TYPE_CHECKING import

        return ScanContext(
            self.ruleset,
            self.limits,
            vulndb_path=self.vulndb_path,
            osv_url=self.osv_url,
            reference_path=self.reference_path,
            label_column=self.label_column,
        )


@dataclass
class Collected:
    """What the units of a scan found, in walk order. `sha256` is the unit's own file's digest; `cacheable`
    is False when a scanner read files beside it (their changes would not show in its digest) or it erred."""

    artifacts: list[Artifact] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    sha256: str | None = None
    cacheable: bool = True
    cache_entry: str | None = None  # the result as the cache stores it (compact report JSON), when asked
    provenance: str | None = None  # the unit's provenance facts as JSON, part of its cache key

    def encode(self) -> str:
        """The JSON the result cache stores (never pickle: the cache is data): artifacts and skips as rows,
        findings as the report writes them. A third of a report's size, and decoded twice as fast."""
        return _ENCODE(
            {
                "a": [
                    [a.path, a.member, a.kind.value, a.format, a.sha256, a.size, a.parent_sha256, a.facts] for a in self.artifacts
                ],
                "f": [finding_to_dict(f) for f in self.findings],
                "s": [[s.path, s.member, s.reason] for s in self.skipped],
            }
        )

    @classmethod
    def decode(cls, text: str) -> Collected:
        """What encode() wrote, back; ValueError, KeyError or TypeError when it is not that."""
        doc = json.loads(text)
        return cls(
            [Artifact(p, ArtifactKind(k), f, h, n, m, ph, facts) for p, m, k, f, h, n, ph, facts in doc["a"]],
            [finding_from_dict(f) for f in doc["f"]],
            [Skipped(p, reason, m) for p, m, reason in doc["s"]],
        )

    def extend(self, other: Collected) -> None:
        self.artifacts += other.artifacts
        self.findings += other.findings
        self.skipped += other.skipped
        self.errors += other.errors


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_CONTEXTS: dict[int, tuple[ScanSettings, ScanContext]] = {}


def scan_unit(settings: ScanSettings, unit: inputs.Unit) -> Collected:
    """Scan one unit. A worker keeps one ScanContext per settings, so databases open once per process."""
    held = _CONTEXTS.get(id(settings))
    if held is None or held[0] is not settings:
        _CONTEXTS.clear()
        provenance.begin(settings.scan_id)
        held = _CONTEXTS[id(settings)] = (settings, settings.context())
    ctx = held[1]
    out = Collected()
    consume(lambda: unit.events(settings.limits, settings.image_options), unit.path, ctx, out, settings.debug)
    out.cacheable = not out.errors and not ctx.take_beside()
    if settings.cache_entries and out.cacheable and out.sha256 and unit.kind == "file":  # encoded here, in parallel
        out.cache_entry = out.encode()
        out.provenance = provenance_key(unit.path)
    return out


def provenance_key(path: str) -> str:
    facts = provenance.facts_for(printable(path))
    return json.dumps(facts, sort_keys=True) if facts else "{}"


def consume(events: Callable[[], Iterator[inputs.Event]], path: str, ctx: ScanContext, out: Collected, debug: bool) -> None:
    """Hand every event of one input to its place in `out`; a reader's unexpected failure ends that input only."""
    try:
        for event in events():
            if isinstance(event, Blob):
                if not event.member and out.sha256 is None:
                    out.sha256 = event.sha256
                _scan_blob(event, ctx, out, debug)
            elif isinstance(event, Anomaly):
                out.findings.append(_anomaly(event, ctx.ruleset))
                limit = ctx.ruleset.rule(event.rule_id).limit
                if limit:  # members past an archive limit were not read: the scan is incomplete
                    out.errors.append(
                        ScanError(event.path, f"{limit} reached: {event.summary}", event.member, "inputs", "LimitExceeded")
                    )
            elif isinstance(event, Skipped):
                out.skipped.append(event)
            else:
                out.errors.append(event)
    except Exception as exc:
        if debug:
            raise
        log.debug("reading %s failed", path, exc_info=True)
        out.errors.append(ScanError(path, f"reading stopped: {exc}", None, "inputs", type(exc).__name__))


def _scan_blob(blob: Blob, ctx: ScanContext, out: Collected, debug: bool) -> None:
    from mlsec.scanners import scanners_for  # noqa: PLC0415 - imported once, then a dictionary lookup

    chosen = scanners_for(blob.format)
    container = blob.format in formats.ARCHIVES or blob.format in formats.COMPRESSED or blob.format in formats.IMAGES
    if not chosen and not container and not blob.member:
        out.skipped.append(Skipped(blob.path, _skip_reason(blob, ctx.ruleset)))
    scanner: Scanner | None = None
    try:
        with deadline(ctx.limits.max_seconds):
            for scanner in chosen:
                _run_scanner(scanner, blob, ctx, out, debug)
    except ScanTimeout:
        name = scanner.name if scanner else None
        reason = f"scanners stopped after {ctx.limits.max_seconds:g} s (max_seconds); findings so far are kept"
        out.errors.append(ScanError(blob.path, reason, blob.member_name, name, "LimitExceeded"))
    if not blob.member or chosen or container:
        out.artifacts.append(_artifact(blob, {**provenance.facts_for(blob.path), **ctx.facts_of(blob)}))
    for extra in ctx.take_extra():
        (out.artifacts if isinstance(extra, Artifact) else out.skipped).append(extra)


def _run_scanner(scanner: Scanner, blob: Blob, ctx: ScanContext, out: Collected, debug: bool) -> None:
    started = time.perf_counter()
    try:
        for finding in scanner.scan(blob, ctx):
            out.findings.append(finding)
    except MlsecError as exc:
        if debug:
            raise
        kind = "LimitExceeded" if isinstance(exc, LimitExceeded) else type(exc).__name__
        out.errors.append(ScanError(blob.path, exc.message, blob.member_name, scanner.name, kind))
    except Exception as exc:
        if debug:
            raise
        log.debug("scanner %s failed on %s", scanner.name, blob.display, exc_info=True)
        out.errors.append(
            ScanError(blob.path, f"{type(exc).__name__}: {exc}", blob.member_name, scanner.name, type(exc).__name__)
        )
    log.debug("%s scanned %s in %.3fs", scanner.name, blob.display, time.perf_counter() - started)


_KINDS: tuple[tuple[frozenset[str], ArtifactKind], ...] = (
    (formats.MODEL_FORMATS, ArtifactKind.MODEL),
    (formats.DATASET_FORMATS, ArtifactKind.DATASET),
    (formats.MANIFEST_FORMATS, ArtifactKind.DEPENDENCIES),
    (formats.IMAGES, ArtifactKind.IMAGE),
    (formats.ARCHIVES | formats.COMPRESSED, ArtifactKind.ARCHIVE),
)


def _artifact(blob: Blob, facts: dict[str, JSONScalar]) -> Artifact:
    kind = next((kind for group, kind in _KINDS if blob.format in group), ArtifactKind.OTHER)
    return Artifact(
        path=blob.path,
        member=blob.member_name,
        kind=kind,
        format=blob.format,
        sha256=blob.sha256,
        size=blob.size,
        parent_sha256=blob.parent_sha256,
        facts=facts,
    )


def _skip_reason(blob: Blob, ruleset: RuleSet) -> str:
    """Why nothing read this file: a known format mlsec cannot inspect (rules/formats.toml), or an unknown one."""
    known: dict[str, str] = ruleset.lists.get("unsupported_formats", {})
    name = blob.path.lower()
    reason = known.get(blob.format) or next((why for suffix, why in known.items() if name.endswith(suffix)), None)
    return reason or f"no scanner for format {blob.format!r}"


def _anomaly(event: Anomaly, ruleset: RuleSet) -> Finding:
    rule = ruleset.rule(event.rule_id)
    return Finding(
        rule_id=rule.id,
        severity=rule.severity,
        message=f"{rule.title}: {event.summary}",
        location=Location(path=event.path, member=event.member),
        evidence=Evidence(summary=event.summary, facts=dict(event.facts), source="mlsec inputs"),
        artifact_sha256=event.artifact_sha256,
    )

"""Dependency manifests: every dependency becomes an artifact; risky requirements are findings;
pinned versions are checked against the offline OSV database. A dependency that no source could
check is skipped with the reason, and the manifest ends with an error (exit 3): never clean."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from mlsec.artifacts import Artifact, ArtifactKind, Blob
from mlsec.dependencies import Dependency, Manifest
from mlsec.dependencies.online import query
from mlsec.dependencies.vulndb import VulnDB
from mlsec.errors import InputError
from mlsec.findings import Finding
from mlsec.formats import MANIFEST_FORMATS
from mlsec.report import Skipped
from mlsec.scanners.base import ScanContext

_SOURCE = "mlsec dependencies"
_MAX_MANIFEST = 16 << 20


class DependencyScanner:
    name: ClassVar[str] = "dependencies"
    formats: ClassVar[frozenset[str]] = MANIFEST_FORMATS

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        if blob.size > _MAX_MANIFEST:
            raise InputError(f"{blob.size:,}-byte manifest is over the {_MAX_MANIFEST:,}-byte limit", path=blob.path)
        with blob.open() as fh:
            text = fh.read().decode("utf-8", "replace")
        from mlsec.dependencies.manifests import parse  # noqa: PLC0415 - yaml and packaging load only when needed

        if not blob.member and any(flag in text for flag in ("-r", "-c", "--requirement", "--constraint")):
            ctx.read_beside(blob, "included requirement files")
        try:
            manifest = parse(blob.format, text, blob.path, on_disk=not blob.member)
        except ValueError as exc:  # TOML, JSON and YAML errors are ValueErrors or carry one
            raise InputError(f"cannot read {blob.format} manifest: {exc}", path=blob.path, member=blob.member_name) from None
        for dep in manifest.dependencies:
            ctx.add_artifact(_artifact(dep, blob))
        yield from _risks(manifest, blob, ctx)
        db = _database(ctx)
        unchecked: Counter[str] = Counter()
        vulnerable = 0
        checkable = []
        for dep in _unique(manifest.dependencies):
            reason = _why_unchecked(dep, db is not None or ctx.osv_url is not None)
            if reason:
                unchecked[reason.split(":")[0].split(" (")[0]] += 1
                ctx.skip(Skipped(blob.path, f"{dep.name}: {reason}", member=dep.purl))
            else:
                checkable.append(dep)
        answers = query(checkable, url=ctx.osv_url) if db is None and ctx.osv_url else {}
        for dep in checkable:
            answer = answers.get(dep)
            if answer is not None and answer.error:
                unchecked["online lookup failed"] += 1
                ctx.skip(Skipped(blob.path, f"{dep.name}: {answer.error}", member=dep.purl))
                continue
            hits = (
                _offline_hits(dep, db, blob, ctx)
                if db is not None
                else [(r, answer.fixed_in) for r in answer.records]
                if answer
                else []
            )
            for finding in _findings(
                dep, hits, blob, ctx, source=f"OSV offline {db.date}" if db else f"OSV online via pip-audit ({ctx.osv_url})"
            ):
                vulnerable += 1
                yield finding
        ctx.describe(
            blob,
            dependencies=len(manifest.dependencies),
            pinned=sum(d.kind == "pinned" for d in manifest.dependencies),
            vulnerable_dependencies=vulnerable,
            vulnerability_db=db.name if db else "none",
            vulnerability_db_date=db.date if db else "",
        )
        if db is not None:
            yield from _staleness(db, blob, ctx)
        for problem in manifest.problems:
            ctx.skip(Skipped(blob.path, problem))
        if unchecked:
            reasons = ", ".join(f"{n} {why}" for why, n in sorted(unchecked.items()))
            advice = "" if db else ": import a vulnerability database (mlsec db import DIR_OR_ZIP) or name one with --vulndb"
            raise InputError(
                f"{sum(unchecked.values())} dependencies could not be checked for vulnerabilities ({reasons}){advice}",
                path=blob.path,
            )


def _database(ctx: ScanContext) -> VulnDB | None:
    path = ctx.vulndb_path
    if path is None or not Path(path).is_file():
        return None
    return ctx.resource(f"vulndb:{path}", lambda: VulnDB(Path(path)))


def _unique(deps: Sequence[Dependency]) -> list[Dependency]:
    seen: dict[tuple[str, str | None, str | None], Dependency] = {}
    for dep in deps:
        seen.setdefault((dep.name, dep.version, dep.url), dep)
    return list(seen.values())


def _why_unchecked(dep: Dependency, has_source: bool) -> str:
    if dep.url:
        return "direct reference: no version to look up"
    if not dep.version:
        return f"not pinned ({dep.specifier or 'any version'}): the version that gets installed is unknown"
    from packaging.version import InvalidVersion  # noqa: PLC0415

    from mlsec.dependencies.osv import public  # noqa: PLC0415

    try:
        public(dep.version)
    except InvalidVersion:
        return f"not PEP 440 ({dep.version!r})"
    if not has_source:
        return "no vulnerability database"
    return ""


def _artifact(dep: Dependency, blob: Blob) -> Artifact:
    sha = next((h.split(":", 1)[1] for h in dep.hashes if h.startswith("sha256:")), None)
    facts: dict[str, Any] = {"name": dep.name, "version": dep.version or "", "specifier": dep.specifier, "purl": dep.purl}
    facts["requirement_kind"] = dep.kind
    if dep.url:
        facts["url"] = dep.url
    if dep.line:
        facts["line"] = dep.line
    return Artifact(
        path=blob.path,
        kind=ArtifactKind.PACKAGE,
        format="python-package",
        sha256=sha,
        size=0,
        member=dep.purl,
        parent_sha256=blob.sha256,
        facts=facts,
    )


def _risks(manifest: Manifest, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
    for url in manifest.extra_index_urls:
        yield ctx.finding("MLSEC-DEP-008", blob, f"--extra-index-url {url}", facts={"index": url}, source=_SOURCE)
    for dep in manifest.dependencies:
        where = f"{dep.source}:{dep.line}" if dep.line else dep.source
        if dep.kind in ("vcs", "url"):
            rule_id, what, facts = "MLSEC-DEP-007", f"{dep.name} from {dep.url}", {"package": dep.name, "url": dep.url}
        elif dep.kind in ("range", "unpinned"):
            rule_id, what = "MLSEC-DEP-006", f"{dep.name}{dep.specifier or ' (any version)'}"
            facts = {"package": dep.name, "specifier": dep.specifier}
        else:
            continue
        yield ctx.finding(rule_id, blob, f"{what} ({where})", facts=facts, source=_SOURCE)


def _offline_hits(dep: Dependency, db: VulnDB, blob: Blob, ctx: ScanContext) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    from mlsec.dependencies.osv import evaluate  # noqa: PLC0415

    version = str(dep.version)  # pinned: _why_unchecked said so
    hits = []
    for record in db.records(dep.name):
        verdict = evaluate(record, dep.name, version)
        if verdict.affected:
            hits.append((record, verdict.fixed_in))
        elif verdict.unreadable:
            bad = ", ".join(verdict.unreadable[:3])
            ctx.skip(
                Skipped(blob.path, f"{dep.name}: advisory {record['id']} not fully evaluated: {bad} not PEP 440", member=dep.purl)
            )
    return hits


def _findings(
    dep: Dependency, hits: list[tuple[dict[str, Any], tuple[str, ...]]], blob: Blob, ctx: ScanContext, *, source: str
) -> Iterator[Finding]:
    """One finding per vulnerability: records that alias each other are merged."""
    from mlsec.dependencies.osv import cvss_score, merge_aliases  # noqa: PLC0415

    bands: dict[str, str] = ctx.ruleset.list("vulnerability_rules")
    for group in merge_aliases([r for r, _ in hits]):
        ids = sorted({str(r["id"]) for r in group} | {str(a) for r in group for a in r.get("aliases", []) or []})
        fixed = sorted({f for r, fixes in hits if any(r is g for g in group) for f in fixes})
        scores = [cvss_score(r) for r in group]
        score, vector = max(((s, v) for s, v in scores if s is not None), default=(None, ""))
        malicious = any(str(r["id"]).startswith("MAL-") for r in group)
        rule_id = "MLSEC-DEP-009" if malicious else bands[_band(score)]
        primary = str(group[0]["id"])
        summary = str(group[0].get("summary") or group[0].get("details", ""))[:160].replace("\n", " ")
        facts: dict[str, Any] = {
            "package": dep.name,
            "version": str(dep.version),
            "purl": dep.purl,
            "advisory": primary,
            "ids": ", ".join(ids),
            "fixed_in": ", ".join(fixed),
        }
        if score is not None:
            facts["cvss"] = score
            facts["cvss_vector"] = vector
        others = ", ".join(i for i in ids if i != primary)[:80]
        yield ctx.finding(
            rule_id,
            blob,
            f"{dep.name}=={dep.version}: {primary} ({others}) {summary}".strip(),
            facts=facts,
            source=source,
            member=" → ".join(filter(None, [blob.member_name, dep.purl])),  # inside an image: which layer, too
        )


def _band(score: float | None) -> str:
    if score is None:
        return "unscored"
    return "critical" if score >= 9.0 else "high" if score >= 7.0 else "medium" if score >= 4.0 else "low"


def _staleness(db: VulnDB, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
    """Once per scan, on the first manifest checked against the database."""
    if ctx.resource(f"vulndb-age-reported:{db.path}", lambda: []):
        return
    ctx.resource(f"vulndb-age-reported:{db.path}", lambda: []).append(True)
    age = db.age_days()
    limit = int(ctx.ruleset.list("vulndb")["max_age_days"])
    if age is not None and age > limit:
        yield ctx.finding(
            "MLSEC-DEP-010",
            blob,
            f"newest advisory in the database is from {db.date}: {age} days old (allowed: {limit})",
            facts={"database": str(db.path), "database_date": db.date, "age_days": age, "max_age_days": limit},
            source=_SOURCE,
        )


class OsPackageScanner:
    """dpkg's status file: the image's OS packages, for the inventory and the ML-BOM (not checked against OSV's PyPI data)."""

    name: ClassVar[str] = "os-packages"
    formats: ClassVar[frozenset[str]] = frozenset({"dpkg-status"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        with blob.open() as fh:
            text = fh.read().decode("utf-8", "replace")
        installed = 0
        for stanza in text.split("\n\n"):
            fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
            if not fields.get("Package") or "installed" not in fields.get("Status", ""):
                continue
            installed += 1
            name, version, arch = fields["Package"], fields.get("Version", ""), fields.get("Architecture", "")
            purl = f"pkg:deb/debian/{name}@{version}" + (f"?arch={arch}" if arch else "")
            facts = {"name": name, "version": version, "purl": purl, "ecosystem": "debian"}
            ctx.add_artifact(
                Artifact(
                    path=blob.path,
                    kind=ArtifactKind.PACKAGE,
                    format="deb-package",
                    sha256=None,
                    size=0,
                    member=purl,
                    parent_sha256=blob.sha256,
                    facts=facts,
                )
            )
        ctx.describe(blob, os_packages=installed)
        return iter(())

"""The online source: OSV's query API through pip-audit's service interface, only when asked.

pip-audit fails open where a gate must not (DECISIONS.md): a package it cannot look up is left
out, not reported. So every exception from the service, for any package, turns that package into
an unchecked one with the reason; only an answer counts as "no known vulnerability".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlsec.dependencies import Dependency

OSV_QUERY_URL = "https://api.osv.dev/v1/query"


@dataclass(frozen=True, slots=True)
class OnlineAnswer:
    records: tuple[dict[str, Any], ...]  # OSV-shaped: id, aliases, summary
    fixed_in: tuple[str, ...]
    error: str | None = None


def query(deps: Sequence[Dependency], *, url: str = OSV_QUERY_URL, timeout: int = 15) -> dict[Dependency, OnlineAnswer]:
    """One answer per pinned dependency; failures are answers with `error` set, never empty results."""
    from packaging.version import Version  # noqa: PLC0415
    from pip_audit._service.interface import ResolvedDependency  # noqa: PLC0415 - pip-audit's service API
    from pip_audit._service.osv import OsvService  # noqa: PLC0415

    service = OsvService(timeout=timeout, osv_url=url)
    answers: dict[Dependency, OnlineAnswer] = {}
    for dep in deps:
        try:
            _, results = service.query(ResolvedDependency(name=dep.name, version=Version(str(dep.version))))
        except Exception as exc:  # noqa: BLE001 - any failure means "not checked", never "clean"
            answers[dep] = OnlineAnswer((), (), f"online lookup failed: {type(exc).__name__}: {str(exc)[:120]}")
            continue
        records = tuple(
            {"id": str(r.id), "aliases": sorted(str(a) for a in r.aliases), "summary": r.description} for r in results
        )
        answers[dep] = OnlineAnswer(records, tuple(sorted({str(v) for r in results for v in r.fix_versions})))
    return answers

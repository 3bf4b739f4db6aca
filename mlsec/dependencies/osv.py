"""OSV records for PyPI: does a record affect a version? PEP 440 ordering, ECOSYSTEM ranges
(introduced / fixed / last_affected / limit) together with the listed `versions`; local versions
(2.5.0+cu121) are compared on their public version; withdrawn records affect nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from mlsec.dependencies import canonical_name


@dataclass(frozen=True, slots=True)
class Verdict:
    affected: bool
    fixed_in: tuple[str, ...] = ()  # versions that fix it (for the evidence)
    unreadable: tuple[str, ...] = ()  # versions in the record that are not PEP 440


def public(version: str) -> Version:
    """The version with any local label dropped (raises InvalidVersion)."""
    return Version(Version(version).public)


def evaluate(record: Mapping[str, Any], package: str, version: str) -> Verdict:
    """Whether `record` affects `package` at `version` (a PEP 440 string)."""
    if record.get("withdrawn"):
        return Verdict(False)
    target = public(version)
    affected, fixed, unreadable = False, [], []
    for entry in record.get("affected", []) or []:
        pkg = entry.get("package", {}) or {}
        if pkg.get("ecosystem") != "PyPI" or canonical_name(str(pkg.get("name", ""))) != package:
            continue
        for listed in entry.get("versions", []) or []:
            try:
                if public(str(listed)) == target:
                    affected = True
            except InvalidVersion:
                unreadable.append(str(listed))
        for rng in entry.get("ranges", []) or []:
            if rng.get("type") != "ECOSYSTEM":
                continue  # GIT ranges name commits, not releases
            hit, fixes, bad = _in_range(rng.get("events", []) or [], target)
            affected |= hit
            fixed += fixes
            unreadable += bad
    return Verdict(affected, tuple(dict.fromkeys(fixed)), tuple(dict.fromkeys(unreadable)))


def _in_range(events: Sequence[Mapping[str, Any]], target: Version) -> tuple[bool, list[str], list[str]]:
    """OSV's algorithm over one range: sort the events by version, then walk them."""
    parsed: list[tuple[Version, int, str, str]] = []
    unreadable: list[str] = []
    order = {"introduced": 0, "fixed": 1, "last_affected": 2, "limit": 3}
    for event in events:
        for kind, raw in event.items():
            if kind not in order:
                continue
            value = str(raw)
            if kind == "introduced" and value == "0":
                parsed.append((Version("0"), 0, kind, value))
                continue
            try:
                parsed.append((public(value), order[kind], kind, value))
            except InvalidVersion:
                unreadable.append(value)
    if unreadable:  # a range we cannot read is not evaluated: the listed versions still count
        return False, [], unreadable
    parsed.sort(key=lambda p: (p[0], p[1]))
    fixes = [raw for _, _, kind, raw in parsed if kind == "fixed"]
    limits = [v for v, _, kind, _ in parsed if kind == "limit"]
    if limits and target >= min(limits):
        return False, fixes, []
    inside = False
    for v, _, kind, _ in parsed:
        if kind == "introduced" and target >= v:
            inside = True
        elif kind == "fixed" and target >= v or kind == "last_affected" and target > v:
            inside = False
    return inside, fixes, []


def merge_aliases(records: Iterable[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Records that name each other (id or aliases) grouped together: one vulnerability, one finding."""
    groups: list[tuple[set[str], list[Mapping[str, Any]]]] = []
    for record in records:
        names = {str(record.get("id"))} | {str(a) for a in record.get("aliases", []) or []}
        joined = [g for g in groups if g[0] & names]
        merged_names, merged = set(names), [record]
        for g in joined:
            merged_names |= g[0]
            merged = g[1] + merged
            groups.remove(g)
        groups.append((merged_names, merged))
    return [g[1] for g in groups]


def cvss_score(record: Mapping[str, Any]) -> tuple[float | None, str]:
    """(base score, vector) of the record's CVSS v3/v4 severity, if any."""
    from cvss import CVSS3, CVSS4  # noqa: PLC0415

    for severity in record.get("severity", []) or []:
        vector = str(severity.get("score", ""))
        try:
            if vector.startswith("CVSS:3"):
                return float(CVSS3(vector).base_score), vector
            if vector.startswith("CVSS:4"):
                return float(CVSS4(vector).base_score), vector
        except Exception:  # noqa: BLE001, S112 - a malformed vector is no score, not a crash
            continue
    return None, ""

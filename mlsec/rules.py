"""Load and validate detection rules (rules/*.toml) into a typed RuleSet, with its digest."""

from __future__ import annotations

import hashlib
import io
import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mlsec import bundled
from mlsec.errors import RuleError
from mlsec.findings import Severity
from mlsec.limits import ScanLimits

_RULE_KEYS = {"id", "name", "severity", "title", "help", "frameworks", "lists", "cwe", "limit"}
_REQUIRED = ("id", "name", "severity", "title", "help")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    severity: Severity
    title: str
    help: str
    source: str
    frameworks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cwe: tuple[str, ...] = ()
    lists: tuple[str, ...] = ()
    limit: str | None = None  # the ScanLimits field this rule reports reaching: the scan is then incomplete


@dataclass(frozen=True, slots=True)
class Framework:
    id: str
    title: str
    url: str
    controls: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Every rule, list and framework, keyed by id; `digest` identifies this exact set."""

    rules: Mapping[str, Rule]
    lists: Mapping[str, Any]
    frameworks: Mapping[str, Framework]
    digest: str

    def rule(self, rule_id: str) -> Rule:
        try:
            return self.rules[rule_id]
        except KeyError:
            raise RuleError(f"unknown rule id {rule_id!r}", rule_id=rule_id) from None

    def list(self, name: str) -> Any:
        try:
            return self.lists[name]
        except KeyError:
            raise RuleError(f"unknown rules list {name!r}") from None


class _Problems:
    """Collects every validation problem so that one run reports them all."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, text: str) -> None:
        self.items.append(f"{where}: {text}")

    def raise_if_any(self) -> None:
        if self.items:
            listing = "\n  ".join(self.items)
            raise RuleError(f"{len(self.items)} problem(s) in the rules:\n  {listing}")


def load_ruleset(extra_dirs: Sequence[Path] = ()) -> RuleSet:
    """Read the bundled rules plus `extra_dirs`; later directories may add rules and list entries."""
    files: list[Path] = []
    for directory in (bundled.rules_dir(), *extra_dirs):
        if not Path(directory).is_dir():
            raise RuleError(f"rules directory not found: {directory}", path=str(directory))
        files.extend(sorted(Path(directory).glob("*.toml")))
    contents: list[tuple[Path, bytes | OSError]] = []
    for path in files:
        try:
            contents.append((path, path.read_bytes()))
        except OSError as exc:
            contents.append((path, exc))
    if any(isinstance(data, OSError) for _, data in contents):
        return _build(contents)  # which says which file could not be read
    key = tuple((str(path), hashlib.sha256(data).digest()) for path, data in contents)  # type: ignore[arg-type]
    if key not in _LOADED:  # a process that scans again (a service, a pipeline's stages) parses the rules once
        if len(_LOADED) >= 8:
            _LOADED.clear()
        _LOADED[key] = _build(contents)
    return _LOADED[key]


_LOADED: dict[tuple[tuple[str, bytes], ...], RuleSet] = {}  # RuleSets are frozen: shared, by their files' bytes


def _build(contents: Iterable[tuple[Path, bytes | OSError]]) -> RuleSet:
    problems = _Problems()
    raw_rules: list[tuple[str, Mapping[str, Any]]] = []
    lists: dict[str, Any] = {}
    raw_frameworks: dict[str, Mapping[str, Any]] = {}
    canonical: list[Any] = []
    for path, data in contents:
        try:
            if isinstance(data, OSError):
                raise data
            doc = tomllib.loads(io.StringIO(data.decode("utf-8"), newline=None).read())  # as text mode reads it
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            problems.add(str(path), f"cannot parse: {exc}")
            continue
        canonical.append(doc)
        raw_rules.extend((str(path), r) for r in doc.get("rule", []))
        for name, value in doc.get("lists", {}).items():
            lists[name] = _merge_list(lists.get(name), value)
        raw_frameworks.update(doc.get("framework", {}))

    frameworks = {
        fid: Framework(fid, str(f.get("title", fid)), str(f.get("url", "")), dict(f.get("controls", {})))
        for fid, f in raw_frameworks.items()
    }
    rules: dict[str, Rule] = {}
    for source, raw in raw_rules:
        rule = _rule(source, raw, lists, frameworks, problems)
        if rule is None:
            continue
        if rule.id in rules:
            problems.add(source, f"duplicate rule id {rule.id} (first in {rules[rule.id].source})")
            continue
        rules[rule.id] = rule
    problems.raise_if_any()
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    digest = "sha256:" + hashlib.sha256(blob.encode()).hexdigest()
    return RuleSet(rules=dict(sorted(rules.items())), lists=lists, frameworks=frameworks, digest=digest)


def _merge_list(old: Any, new: Any) -> Any:
    if old is None:
        return new
    if isinstance(old, dict) and isinstance(new, dict):
        merged = dict(old)
        for key, value in new.items():
            merged[key] = _merge_list(merged.get(key), value)
        return merged
    if isinstance(old, list) and isinstance(new, list):
        return old + [v for v in new if v not in old]
    return new


def _rule(
    source: str,
    raw: Mapping[str, Any],
    lists: Mapping[str, Any],
    frameworks: Mapping[str, Framework],
    problems: _Problems,
) -> Rule | None:
    rid = str(raw.get("id", "?"))
    where = f"{source}: rule {rid}"
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        problems.add(where, f"missing field(s) {', '.join(missing)}")
        return None
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        problems.add(where, f"unknown field(s) {', '.join(sorted(unknown))}")
    try:
        severity = Severity.parse(str(raw["severity"]))
    except ValueError as exc:
        problems.add(where, str(exc))
        return None
    fw: dict[str, tuple[str, ...]] = {}
    for fid, controls in dict(raw.get("frameworks", {})).items():
        if fid not in frameworks:
            problems.add(where, f"unknown framework {fid!r}")
            continue
        for control in controls:
            if control not in frameworks[fid].controls:
                problems.add(where, f"unknown {fid} control {control!r}")
        fw[fid] = tuple(controls)
    for name in raw.get("lists", []):
        if name not in lists:
            problems.add(where, f"references missing list {name!r}")
    limit = raw.get("limit")
    if limit is not None and limit not in {f.name for f in fields(ScanLimits)}:
        problems.add(where, f"limit {limit!r} is not a ScanLimits field")
    return Rule(
        id=rid,
        name=str(raw["name"]),
        severity=severity,
        title=str(raw["title"]),
        help=str(raw["help"]),
        source=source,
        frameworks=fw,
        cwe=tuple(str(c) for c in raw.get("cwe", [])),
        lists=tuple(raw.get("lists", [])),
        limit=str(limit) if limit is not None else None,
    )

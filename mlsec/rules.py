"""Load and validate detection rules (rules/*.toml) into a typed RuleSet, with its digest."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mlsec import bundled, user_dirs
from mlsec.errors import RuleError
from mlsec.findings import Severity
from mlsec.limits import ScanLimits

_RULE_KEYS = {"id", "name", "severity", "title", "help", "frameworks", "lists", "cwe", "limit"}
_REQUIRED = ("id", "name", "severity", "title", "help")
log = logging.getLogger(__name__)


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
        return _build([(str(path), _parse(data)) for path, data in contents])  # which says which file could not be read
    key = tuple((str(path), hashlib.sha256(data).digest()) for path, data in contents)  # type: ignore[arg-type]
    if key not in _LOADED:  # a process that scans again (a service, a pipeline's stages) parses the rules once
        if len(_LOADED) >= 8:
            _LOADED.clear()
        _LOADED[key] = _build(_parsed(contents, key))  # type: ignore[arg-type]
    return _LOADED[key]


_LOADED: dict[tuple[tuple[str, bytes], ...], RuleSet] = {}  # RuleSets are frozen: shared, by their files' bytes
_MEMO_KEEP = 16  # parsed rule sets kept in the cache directory (each install and each --rules combination has one)


def _parsed(contents: Sequence[tuple[Path, bytes]], key: tuple[tuple[str, bytes], ...]) -> list[tuple[str, Any]]:
    """Each file's TOML document, by its path. Parsing the rules (and importing tomllib) took 10 ms of every
    command, so the documents are kept as JSON in mlsec's cache directory, named by the paths and sha256 of
    every file: a changed, added or removed file names another entry. Documents JSON cannot hold (a TOML
    date) are not kept; an entry that cannot be read or is not a list of tables is parsed afresh."""
    memo = user_dirs.cache_dir() / "rules" / f"{hashlib.sha256(repr(key).encode()).hexdigest()}.json"
    try:
        docs = json.loads(memo.read_bytes())
        if isinstance(docs, list) and len(docs) == len(contents) and all(isinstance(d, dict) for d in docs):
            return [(str(path), doc) for (path, _), doc in zip(contents, docs, strict=True)]
    except (OSError, ValueError):
        pass
    parsed = [(str(path), _parse(data)) for path, data in contents]
    if all(isinstance(doc, dict) for _, doc in parsed):
        _remember(memo, [doc for _, doc in parsed])
    return parsed


def _remember(memo: Path, docs: list[dict[str, Any]]) -> None:
    try:
        text = json.dumps(docs, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):  # a TOML date or time, an infinite float: parsed each time instead
        return
    partial = memo.with_name(f".{memo.name}.{os.getpid()}")
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text, encoding="utf-8")
        partial.replace(memo)  # whole or not at all, whatever other runs do meanwhile
        others = sorted((p for p in memo.parent.glob("*.json") if p != memo), key=lambda p: p.stat().st_mtime_ns)
        for old in others[: max(0, len(others) + 1 - _MEMO_KEEP)]:  # the oldest go
            old.unlink(missing_ok=True)
    except OSError as exc:  # a read-only home, a full disk: the rules are parsed each time
        log.debug("could not keep the parsed rules in %s: %s", memo.parent, exc)
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def forget_parsed() -> int:
    """Remove the parsed rules kept in the cache directory (`mlsec cache clear`); returns how many."""
    removed = 0
    for kept in (user_dirs.cache_dir() / "rules").glob("*.json"):
        kept.unlink(missing_ok=True)
        removed += 1
    return removed


def _parse(data: bytes | OSError) -> dict[str, Any] | str:
    """A rules file's document, or why it cannot be read."""
    import tomllib  # noqa: PLC0415 - only when the parsed rules are not in the cache directory

    try:
        if isinstance(data, OSError):
            raise data
        return tomllib.loads(io.StringIO(data.decode("utf-8"), newline=None).read())  # as text mode reads it
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return f"cannot parse: {exc}"


def _build(parsed: Iterable[tuple[str, dict[str, Any] | str]]) -> RuleSet:
    problems = _Problems()
    raw_rules: list[tuple[str, Mapping[str, Any]]] = []
    lists: dict[str, Any] = {}
    raw_frameworks: dict[str, Mapping[str, Any]] = {}
    canonical: list[Any] = []
    for path, doc in parsed:
        if isinstance(doc, str):
            problems.add(path, doc)
            continue
        canonical.append(doc)
        raw_rules.extend((path, r) for r in doc.get("rule", []))
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

"""`mlsec policy test` and `mlsec policy lint`: Rego tests through the embedded engine, conventions checked."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlsec.findings import Severity
from mlsec.policy_engines.base import PolicyError
from mlsec.policy_engines.embedded import EmbeddedEngine
from mlsec.policy_engines.sources import RegoFile, data_documents, rego_files

_TEST_RULE = re.compile(r"^(test_\w+)\b", re.MULTILINE)
_RESULT_RULE = re.compile(r"^(deny|violation|warn)(_\w+)?\b(.*)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class TestResult:
    name: str  # data.<package>.<test rule>
    location: str  # file:line
    passed: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Coverage:
    path: str
    covered: int
    not_covered: tuple[int, ...]

    @property
    def percent(self) -> float:
        total = self.covered + len(self.not_covered)
        return 100.0 if total == 0 else 100.0 * self.covered / total


@dataclass(frozen=True, slots=True)
class TestRun:
    results: tuple[TestResult, ...]
    coverage: tuple[Coverage, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed


def run_tests(dirs: Sequence[Path], data_dirs: Sequence[Path] = (), *, coverage: bool = False) -> TestRun:
    """Every `test_*` rule of every *_test.rego under `dirs`; data documents under `dirs` and `data_dirs` load too."""
    files = rego_files(dirs, tests=True)
    tests = [
        (f, m.group(1), f.text.count("\n", 0, m.start()) + 1) for f in files if f.is_test for m in _TEST_RULE.finditer(f.text)
    ]
    if not tests:
        raise PolicyError(f"no test_ rules in any *_test.rego under {', '.join(map(str, dirs))}")
    engine = EmbeddedEngine(files, data_documents([*dirs, *data_dirs]), coverage=coverage)
    results = []
    seen: set[str] = set()
    for f, rule, line in tests:
        name = f"data.{f.package}.{rule}"
        if name in seen:  # a rule with several bodies is one test
            continue
        seen.add(name)
        engine.set_input({})
        try:
            value = engine.eval_rule(name)
        except PolicyError as exc:
            results.append(TestResult(name, f"{f.path}:{line}", False, str(exc)))
            continue
        results.append(TestResult(name, f"{f.path}:{line}", value is True))
    return TestRun(tuple(results), _coverage(engine, files) if coverage else ())


def _coverage(engine: EmbeddedEngine, files: Sequence[RegoFile]) -> tuple[Coverage, ...]:
    policies = {f.path for f in files if not f.is_test}
    report = engine.coverage()
    return tuple(
        Coverage(entry["path"], len(entry.get("covered", [])), tuple(entry.get("not_covered", [])))
        for entry in sorted(report.get("files", []), key=lambda e: e["path"])
        if entry["path"] in policies
    )


def lint(dirs: Sequence[Path]) -> list[str]:
    """Problems with the conventions gates must follow, each as 'file: problem'."""
    problems: list[str] = []
    files = rego_files(dirs, tests=True)
    tested = {f.package.removesuffix("_test") for f in files if f.is_test}
    ids: dict[str, str] = {}
    for f in files:
        if f.is_test or not f.package.startswith("mlsec.gates."):
            continue
        meta = f.metadata
        custom = meta.get("custom") if isinstance(meta.get("custom"), dict) else {}
        for key, present in (
            ("title", meta.get("title")),
            ("description", meta.get("description")),
            ("custom.id", custom.get("id")),
        ):
            if not present:
                problems.append(f"{f.path}: METADATA has no {key}")
        severity = custom.get("severity")
        try:
            Severity.parse(str(severity))
        except ValueError:
            problems.append(f"{f.path}: METADATA custom.severity {severity!r} is not one of info, low, medium, high, critical")
        gate_id = custom.get("id")
        if gate_id and gate_id in ids:
            problems.append(f"{f.path}: custom.id {gate_id} is also used by {ids[gate_id]}")
        elif gate_id:
            ids[str(gate_id)] = f.path
        if f.package not in tested:
            problems.append(f"{f.path}: no *_test.rego tests package {f.package}_test")
        for match in _RESULT_RULE.finditer(f.text):
            if not match.group(3).lstrip().startswith(("contains", "if", ":=")):
                problems.append(
                    f"{f.path}: rule {match.group(1)}{match.group(2) or ''} should be a set: `{match.group(1)} contains result if`"
                )
    return problems

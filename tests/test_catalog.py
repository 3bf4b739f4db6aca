"""fixtures/expected.toml against rules/: each case raises exactly its rules, and every rule is raised."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from mlsec import ScanLimits, load_ruleset, scan
from tests.conftest import FIXTURES, fixture

EXPECTED = tomllib.loads((FIXTURES / "expected.toml").read_text())
CASES = EXPECTED["case"]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['path']}{'+limits' if 'limits' in c else ''}" for c in CASES])
def test_fixture_raises_exactly_its_rules(case: dict) -> None:
    limits = ScanLimits(**case.get("limits", {}))
    report = scan([fixture(case["path"])], limits=limits)
    assert sorted({f.rule_id for f in report.findings}) == sorted(case["rules"])
    assert len(report.errors) == case.get("errors", 0), report.errors


def test_every_rule_is_raised_by_some_fixture() -> None:
    raised = {rule for case in CASES for rule in case["rules"]}
    untested = set(EXPECTED.get("untested", {}))
    rules = set(load_ruleset().rules)
    assert rules - raised - untested == set(), "rules that no fixture raises"
    assert untested <= rules, "[untested] names rules that do not exist"
    assert not (untested & raised), "a rule listed as untested is raised by a fixture: remove it from [untested]"


def test_every_fixture_file_has_a_case() -> None:
    listed = {case["path"] for case in CASES}
    covered = set()
    for rel in listed:  # a directory case (a SavedModel) covers every file under it
        path = FIXTURES / rel
        covered |= {str(p.relative_to(FIXTURES)) for p in path.rglob("*") if p.is_file()} if path.is_dir() else {rel}
    on_disk = {
        str(p.relative_to(FIXTURES))
        for p in FIXTURES.rglob("*")
        if p.is_file()
        and p.suffix not in (".py", ".toml", ".md")
        and not p.is_relative_to(FIXTURES / "advisories")
        and not p.is_relative_to(FIXTURES / "signatures")
        and not p.is_relative_to(FIXTURES / "fuzz")  # fuzzer findings: tests/test_hostile.py::test_fuzz_regressions
    } | {str(p.relative_to(FIXTURES)) for p in (FIXTURES / "dependencies").rglob("*.toml")}
    assert on_disk == covered


def test_benign_fixtures_raise_nothing() -> None:
    report = scan([str(FIXTURES / "models" / "benign")])
    assert report.findings == ()
    assert report.errors == ()
    assert len([a for a in report.artifacts if a.member is None]) == len(
        [p for p in (FIXTURES / "models" / "benign").rglob("*") if p.is_file()]
    )


def test_fixtures_rebuild_byte_for_byte() -> None:
    pytest.importorskip("torch")
    result = subprocess.run([sys.executable, str(FIXTURES / "build.py"), "--check"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr


def test_every_malicious_fixture_blocks_at_high_or_above() -> None:
    from mlsec import Severity

    malicious = FIXTURES / "models" / "malicious"
    for entry in sorted(malicious.iterdir()):
        report = scan([str(entry)])
        assert any(f.severity >= Severity.HIGH for f in report.findings), f"{entry.name} raises nothing at high or above"


def test_docs_list_every_limit_with_its_default() -> None:
    from dataclasses import fields

    table = (FIXTURES.parent / "docs" / "limits.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`"): line.split("|")[2].strip() for line in table.splitlines() if line.startswith("| `")
    }
    defaults = {f.name: f.default for f in fields(ScanLimits)}
    assert set(rows) == set(defaults)
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for name, text in rows.items():
        number, _, unit = text.partition(" ")
        assert float(number.replace(",", "")) * units.get(unit, 1) == defaults[name], name

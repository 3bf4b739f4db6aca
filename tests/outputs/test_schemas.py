"""JSON report and SARIF output validate against their schemas; JSON is reproducible and round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from mlsec import ScanReport, load_ruleset, scan
from mlsec.outputs import FORMATS
from tests.conftest import FIXTURES, ROOT

REPORT_SCHEMA = json.loads((ROOT / "mlsec" / "schemas" / "report.schema.json").read_text())
SARIF_SCHEMA = json.loads((ROOT / "tests" / "schemas" / "sarif-2.1.0.json").read_text())


@pytest.fixture(scope="module")
def report() -> ScanReport:
    return scan([str(FIXTURES)])


def test_json_report_validates(report: ScanReport) -> None:
    doc = json.loads(report.to_json())
    jsonschema.Draft202012Validator(REPORT_SCHEMA, format_checker=jsonschema.FormatChecker()).validate(doc)
    assert doc["findings"]
    assert doc["errors"]
    assert doc["skipped"]


def test_sarif_validates_and_has_one_descriptor_per_rule_used(report: ScanReport) -> None:
    doc = json.loads(FORMATS["sarif"](report, load_ruleset()))
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(doc)
    run = doc["runs"][0]
    ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert sorted(ids) == sorted({f.rule_id for f in report.findings}) == ids
    for result in run["results"]:
        assert ids[result["ruleIndex"]] == result["ruleId"]
        assert result["partialFingerprints"]["mlsecFinding/v1"]
        assert "region" not in result["locations"][0]["physicalLocation"]
    assert float(run["tool"]["driver"]["rules"][0]["properties"]["security-severity"]) > 0
    assert run["invocations"][0]["executionSuccessful"] is False  # the fixtures include unreadable files


def test_hostile_names_are_escaped_in_text_outputs(tmp_path: Path) -> None:
    path = tmp_path / "evil\x1b[31mname\u202e.pkl"
    path.write_bytes(b"\x80\x02cos\nsystem\n.")
    rep = scan([str(path)])
    table = FORMATS["table"](rep, load_ruleset())
    sarif = FORMATS["sarif"](rep, load_ruleset())
    assert "\x1b" not in table
    assert "\u202e" not in table
    assert "\\x1b" in table
    assert "\u202e" not in json.loads(sarif)["runs"][0]["results"][0]["message"]["text"]


def test_json_is_reproducible_with_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    target = [str(FIXTURES / "models" / "malicious")]
    first, second = scan(target).to_json(), scan(target).to_json()
    assert first == second
    assert json.loads(first)["started_at"] == "2023-11-14T22:13:20Z"


def test_report_round_trips_through_json(report: ScanReport) -> None:
    again = ScanReport.from_json(report.to_json())
    assert again.to_json() == report.to_json()


def test_the_json_report_has_one_record_per_line(report: ScanReport) -> None:
    """json's C encoder writes it (indent=2 would run the pure-Python one); each artifact, finding, skip and
    error is one line, under a top level indented as before."""
    text = report.to_json()
    lines = text.splitlines()
    assert json.loads(text) == report.to_dict()
    assert (lines[0], lines[-1]) == ("{", "}")
    assert text.endswith("}\n")
    doc = report.to_dict()
    for key in ("artifacts", "findings", "skipped", "errors"):
        start = lines.index(f'  "{key}": [')
        records = lines[start + 1 : start + 1 + len(doc[key])]
        assert [json.loads(line.strip().rstrip(",")) for line in records] == doc[key]
        assert lines[start + 1 + len(doc[key])].strip() in ("]", "],")
    assert '  "evaluations": []' in lines

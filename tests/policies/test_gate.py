"""gate(): deny/violation/warn collection, conftest exceptions, data waivers with expiry, failing closed."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import referencing

from mlsec import scan
from mlsec.gate import gate
from mlsec.gate_input import build_gate_input
from mlsec.policy_engines import PolicyError, PolicySet, Undefined, open_engine
from mlsec.policy_engines.embedded import EmbeddedEngine
from mlsec.policy_engines.sources import rego_file
from tests.conftest import ROOT, fixture
from tests.policies.conftest import finding, gate_input, report

SHA = "b" * 64


def _engine(*policies: str, data: dict | None = None) -> EmbeddedEngine:
    return EmbeddedEngine([rego_file(f"p{i}.rego", text) for i, text in enumerate(policies)], data or {})


def test_bundled_gates_deny_a_critical_finding_and_name_the_gate() -> None:
    policies = PolicySet.load()
    decision = gate(gate_input(report(finding())), open_engine(policies), gate_ids=policies.gate_ids)
    assert not decision.allowed
    (deny,) = decision.denies
    assert (deny.gate_id, deny.rule_id, deny.artifact) == ("MLSEC-GATE-001", "MLSEC-PICKLE-001", "a" * 64)


def test_a_clean_report_is_allowed_at_pr() -> None:
    decision = gate(gate_input(report()), open_engine(PolicySet.load()))
    assert decision.allowed
    assert decision.denies == decision.warnings == decision.waived == ()


def test_string_object_and_boolean_results_and_suffixed_rules() -> None:
    engine = _engine(
        'package mlsec.gates.a\nimport rego.v1\ndeny contains "plain" if input.stage == "pr"\n'
        'violation_x contains {"msg": "obj", "rule_id": "R1", "artifact": "s"} if true\n'
        'warn_y contains "careful" if true\n',
        "package mlsec.gates.b.nested\nimport rego.v1\ndeny if true\n",
    )
    decision = gate(gate_input(report()), engine)
    assert sorted((r.package, r.rule, r.message) for r in decision.denies) == [
        ("mlsec.gates.a", "deny", "plain"),
        ("mlsec.gates.a", "violation_x", "obj"),
        ("mlsec.gates.b.nested", "deny", "deny in mlsec.gates.b.nested"),
    ]
    assert [r.message for r in decision.warnings] == ["careful"]


def test_conftest_exception_waives_a_named_rule_visibly() -> None:
    engine = _engine(
        'package mlsec.gates.a\nimport rego.v1\ndeny_legacy contains "old model format" if true\n'
        'deny_other contains "stays" if true\nexception contains ["legacy"] if true\n'
    )
    decision = gate(gate_input(report()), engine)
    assert [r.message for r in decision.denies] == ["stays"]
    assert [(r.message, r.waiver) for r in decision.waived] == [("old model format", "exception in package mlsec.gates.a")]


def _waiver(expires: str, artifact: str | None = "a" * 64) -> dict:
    w = {"rule_id": "MLSEC-PICKLE-001", "reason": "vendor model, reviewed in SEC-123", "expires": expires}
    if artifact:
        w["artifact_sha256"] = artifact
    return w


def test_a_live_waiver_moves_the_deny_to_waived() -> None:
    decision = gate(
        gate_input(report(finding()), date="2026-06-01"), open_engine(PolicySet.load()), waivers=[_waiver("2026-12-31")]
    )
    assert decision.allowed
    assert "until 2026-12-31: vendor model" in decision.waived[0].waiver


def test_an_expired_waiver_stops_working_and_says_so() -> None:
    decision = gate(
        gate_input(report(finding()), date="2027-01-01"), open_engine(PolicySet.load()), waivers=[_waiver("2026-12-31")]
    )
    assert not decision.allowed
    assert decision.waived == ()
    assert any("expired on 2026-12-31" in w.message for w in decision.warnings)


def test_a_waiver_for_another_artifact_does_not_apply() -> None:
    decision = gate(gate_input(report(finding())), open_engine(PolicySet.load()), waivers=[_waiver("2026-12-31", artifact=SHA)])
    assert not decision.allowed


@pytest.mark.parametrize("findings", [(finding(),), ()])
def test_a_waiver_without_reason_or_expiry_is_refused_even_when_nothing_is_denied(findings: tuple) -> None:
    with pytest.raises(PolicyError, match="needs a rule id, a reason and an expiry"):
        gate(gate_input(report(*findings)), open_engine(PolicySet.load()), waivers=[{"rule_id": "MLSEC-PICKLE-001"}])


def test_waivers_from_a_data_directory(tmp_path: Path) -> None:
    (tmp_path / "waivers.json").write_text(json.dumps({"mlsec": {"waivers": [_waiver("2026-12-31")]}}))
    policies = PolicySet.load(data_dirs=[tmp_path])
    assert gate(gate_input(report(finding())), open_engine(policies), waivers=policies.waivers).allowed


def test_thresholds_are_data(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(json.dumps({"mlsec": {"thresholds": {"pr": {"block_severity": "critical"}}}}))
    high = report(finding(severity="high"))
    assert not gate(gate_input(high), open_engine(PolicySet.load())).allowed
    assert gate(gate_input(high), open_engine(PolicySet.load(data_dirs=[tmp_path]))).allowed


def test_no_gates_at_all_is_undefined_never_allow(tmp_path: Path) -> None:
    (tmp_path / "other.rego").write_text("package other\nimport rego.v1\nx := 1\n")
    with pytest.raises(Undefined):
        gate(gate_input(report()), open_engine(PolicySet.load([tmp_path], bundled_policies=False)))


def test_a_runtime_error_in_a_rule_fails_the_decision() -> None:
    engine = _engine("package mlsec.gates.a\nimport rego.v1\ndeny contains x if { x := to_number(input.stage) }\n")
    with pytest.raises(PolicyError, match="could not parse string as number") as raised:
        gate(gate_input(report(finding())), engine)
    assert raised.value.location == {"file": "p0.rego", "row": 3, "col": 42}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("package mlsec.gates.a\nimport rego.v1\ndeny contains 1 if { 1 = }\n", "bad.rego:3:"),
        ("package mlsec.gates.a\nimport rego.v1\ndeny contains 1 if { no_such_function(1) }\n", "bad.rego:3:"),
    ],
)
def test_broken_policies_fail_at_load_with_their_location(tmp_path: Path, text: str, where: str) -> None:
    (tmp_path / "bad.rego").write_text(text)
    with pytest.raises(PolicyError) as raised:
        open_engine(PolicySet.load([tmp_path], bundled_policies=False))
    assert where in str(raised.value)
    assert raised.value.location["row"] == 3


def test_gate_input_validates_against_its_schema() -> None:
    schemas = ROOT / "mlsec" / "schemas"
    report_schema = json.loads((schemas / "report.schema.json").read_text())
    registry = referencing.Registry().with_resource(report_schema["$id"], referencing.Resource.from_contents(report_schema))
    doc = build_gate_input(scan([fixture("examples/demo")]), stage="serve", signatures=[{"sha256": "c" * 64, "verified": True}])
    validator = jsonschema.Draft202012Validator(json.loads((schemas / "gate-input.schema.json").read_text()), registry=registry)
    validator.validate(json.loads(json.dumps(doc)))
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**doc, "stage": "prod"})

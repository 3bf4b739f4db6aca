"""`mlsec gate`, `mlsec scan --gate`, `mlsec policy test|lint` as a user runs them (exit codes, output)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlsec.cli import main
from tests.conftest import ROOT, fixture
from tests.policies.conftest import finding, report, write


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _report_file(tmp_path: Path, doc: dict) -> str:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_bundled_policies_pass_their_own_tests_with_full_coverage() -> None:
    code, out = _run("policy", "test", str(ROOT / "policies"), "--coverage")
    assert code == 0, out
    assert out.splitlines()[-1].endswith(" passed, 0 failed")
    assert "not covered" not in out


def test_a_failing_test_is_listed_with_its_location(tmp_path: Path) -> None:
    write(tmp_path, "p.rego", "package demo\nimport rego.v1\nallow if input.ok\n")
    write(
        tmp_path,
        "p_test.rego",
        'package demo_test\nimport rego.v1\ntest_pass if { data.demo.allow with input as {"ok": true} }\n'
        'test_fail if { data.demo.allow with input as {"ok": false} }\n',
    )
    code, out = _run("policy", "test", str(tmp_path))
    assert code == 1
    assert f"FAIL {tmp_path}/p_test.rego:4: data.demo_test.test_fail" in out
    assert out.splitlines()[-1] == "1 passed, 1 failed"


def test_coverage_names_the_lines_no_test_reached(tmp_path: Path) -> None:
    write(tmp_path, "p.rego", "package demo\nimport rego.v1\na if input.x == 1\nb if {\n  input.y == 2\n}\n")
    write(tmp_path, "p_test.rego", 'package demo_test\nimport rego.v1\ntest_a if { data.demo.a with input as {"x": 1} }\n')
    code, out = _run("policy", "test", str(tmp_path), "--coverage")
    assert code == 0
    assert "p.rego: " in out
    assert "not covered: lines 5" in out


@pytest.mark.parametrize(
    ("body", "message"),
    [("allow if { 1 = }", "p.rego:3:"), ("allow if { nope(1) }", "could not find function nope")],
)
def test_a_broken_policy_fails_at_load_with_exit_3(tmp_path: Path, body: str, message: str) -> None:
    write(tmp_path, "p.rego", f"package demo\nimport rego.v1\n{body}\n")
    write(tmp_path, "p_test.rego", "package demo_test\nimport rego.v1\ntest_x if true\n")
    code, out = _run("policy", "test", str(tmp_path))
    assert code == 3
    assert message in out


def test_lint_reports_missing_metadata_tests_and_non_set_rules(tmp_path: Path) -> None:
    write(tmp_path, "g.rego", 'package mlsec.gates.g\nimport rego.v1\ndeny[msg] { msg := "x" }\n')
    code, out = _run("policy", "lint", str(tmp_path))
    assert code == 1
    for problem in ("METADATA has no title", "no custom.id", "custom.severity None", "no *_test.rego", "should be a set"):
        assert problem.replace("no custom.id", "METADATA has no custom.id") in out


def test_bundled_policies_lint_clean() -> None:
    assert _run("policy", "lint", str(ROOT / "policies")) == (0, "0 problem(s)\n")


def test_gate_exit_codes_allowed_denied_undecidable(tmp_path: Path) -> None:
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    clean.mkdir()
    dirty.mkdir()
    assert _run("gate", "--report", _report_file(clean, report()))[0] == 0
    assert _run("gate", "--report", _report_file(dirty, report(finding())))[0] == 1
    empty = tmp_path / "nogates"
    write(empty, "x.rego", "package other\nimport rego.v1\nx := 1\n")
    code, out = _run("gate", "--report", _report_file(clean, report()), "--policies", str(empty), "--no-bundled-policies")
    assert code == 3
    assert "undefined" in out


def test_gate_writes_json_and_markdown(tmp_path: Path) -> None:
    target = tmp_path / "decision.json"
    code, out = _run("gate", "--report", _report_file(tmp_path, report(finding())), "-o", f"json={target}", "-o", "markdown")
    assert code == 1
    decision = json.loads(target.read_text())
    assert decision["schema_version"] == "mlsec.decision/1"
    assert decision["allowed"] is False
    assert decision["denies"][0]["gate_id"] == "MLSEC-GATE-001"
    assert out.startswith("## mlsec gate: ❌ denied at stage `pr`")


def test_gate_refuses_a_file_that_is_not_a_report(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"hello": 1}')
    code, out = _run("gate", "--report", str(path))
    assert code == 3
    assert "not an mlsec report" in out


def test_scan_with_gate_in_one_process(tmp_path: Path) -> None:
    assert _run("scan", fixture("models/benign/mlp.onnx"), "--gate", "-o", f"json={tmp_path / 'r.json'}")[0] == 0
    code, out = _run("scan", fixture("examples/demo"), "--gate", "--stage", "train", "-o", f"json={tmp_path / 'r.json'}")
    assert code == 1
    assert "gate DENIED at stage train" in out


def test_serve_stage_needs_signatures_for_every_model(tmp_path: Path) -> None:
    (tmp_path / "signers.json").write_text(
        json.dumps({"mlsec": {"allowed_signers": [{"identity": "ci@example.com", "issuer": "https://issuer.example"}]}})
    )
    model = fixture("models/benign/mlp.onnx")
    report_path = tmp_path / "r.json"
    assert _run("scan", model, "-o", f"json={report_path}")[0] == 0
    sha = json.loads(report_path.read_text())["artifacts"][0]["sha256"]
    signatures = tmp_path / "sigs.json"
    signatures.write_text(
        json.dumps(
            [{"file": model, "sha256": sha, "verified": True, "identity": "ci@example.com", "issuer": "https://issuer.example"}]
        )
    )
    args = ["gate", "--report", str(report_path), "--stage", "serve", "--data", str(tmp_path / "signers.json")]
    assert _run(*args)[0] == 1
    assert _run(*args, "--signatures", str(signatures))[0] == 0


def test_gate_through_a_served_opa_api(tmp_path: Path) -> None:
    import threading

    from mlsec.policy_server import PolicyStore, make_server

    store = PolicyStore()
    server = make_server("127.0.0.1", 0, store)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        args = ["gate", "--report", _report_file(tmp_path, report(finding())), "--engine", "opa", "--opa-url", url, "-o", "json"]
        code, out = _run(*args)
        assert code == 3  # nothing pushed yet: undefined, never allowed
        code, out = _run(*args, "--push-policies", "--opa-timeout", "10")
        assert code == 1
        assert json.loads(out)["engine"] == f"opa {url}"
    finally:
        server.shutdown()
        server.server_close()
        store.close()

"""`mlsec serve` speaks OPA's REST API: opa-python-client (a real client, over real HTTP on loopback)
manages policies and data and queries it; the gate decides the same through either engine."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from opa_client.errors import RegoParseError
from opa_client.opa import OpaClient

from mlsec.gate import gate
from mlsec.policy_engines import PolicySet, Undefined, open_engine
from mlsec.policy_engines.opa_server import OpaServerEngine
from mlsec.policy_server import PolicyStore, make_server
from tests.policies.conftest import finding, gate_input, report

POLICY = "package demo\nimport rego.v1\nallow if input.user == data.admins[_]\n"


@pytest.fixture
def served() -> Iterator[tuple[str, int]]:
    store = PolicyStore()
    server = make_server("127.0.0.1", 0, store)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[0], server.server_address[1]
    server.shutdown()
    server.server_close()
    store.close()


def _client(served: tuple[str, int]) -> OpaClient:
    return OpaClient(host=served[0], port=served[1], timeout=5, retries=0)


def _raw(served: tuple[str, int], method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{served[0]}:{served[1]}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_policies_and_data_round_trip_through_opa_python_client(served: tuple[str, int]) -> None:
    client = _client(served)
    assert client.check_connection()
    assert client.update_policy_from_string(POLICY, "demo", rego_compat=False)
    assert client.update_or_create_data({"admins": ["ana"]}, "")
    assert client.get_policies_list() == ["demo"]
    assert client.get_policy("demo")["result"]["raw"] == POLICY
    assert client.query_rule({"user": "ana"}, "demo", "allow") == {"result": True}
    assert client.query_rule({"user": "bob"}, "demo", "allow") == {}  # undefined: no "result", as OPA answers
    assert client.get_data("admins")["result"] == ["ana"]
    assert client.delete_policy("demo")
    assert client.get_policies_list() == []


def test_a_policy_that_does_not_compile_is_rejected_and_the_old_one_stays(served: tuple[str, int]) -> None:
    client = _client(served)
    client.update_policy_from_string(POLICY, "demo", rego_compat=False)
    with pytest.raises(RegoParseError):
        client.update_policy_from_string("package demo\nimport rego.v1\nallow if { nope(1) }\n", "demo", rego_compat=False)
    assert client.get_policy("demo")["result"]["raw"] == POLICY
    status, body = _raw(served, "PUT", "/v1/policies/demo", b"package demo\nallow if {")
    assert status == 400
    assert body["code"] == "invalid_parameter"
    assert body["errors"][0]["location"]["file"] == "demo"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/v1/data/demo", b"{not json", 400, "invalid_parameter"),
        ("GET", "/v1/policies/missing", None, 404, "resource_not_found"),
        ("GET", "/v2/anything", None, 404, "resource_not_found"),
        ("PATCH", "/v1/data/x", b"[]", 405, "invalid_parameter"),
        ("DELETE", "/v1/data/never", None, 404, "resource_not_found"),
    ],
)
def test_bad_requests_get_opa_style_errors(
    served: tuple[str, int], method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    got_status, got_body = _raw(served, method, path, body)
    assert (got_status, got_body["code"]) == (status, code)
    assert got_body["message"]


CASES = {
    "clean at pr": (report(), "pr", []),
    "critical at pr": (report(finding()), "pr", []),
    "medium at serve": (report(finding(severity="medium")), "serve", []),
    "medium at pr warns": (report(finding(severity="medium")), "pr", []),
    "waived": (report(finding()), "pr", [{"rule_id": "MLSEC-PICKLE-001", "reason": "r", "expires": "2099-01-01"}]),
    "expired waiver": (report(finding()), "pr", [{"rule_id": "MLSEC-PICKLE-001", "reason": "r", "expires": "2000-01-01"}]),
    "errors at serve": (
        report(errors=({"path": "x.onnx", "member": None, "reason": "truncated", "scanner": "onnx", "error_type": "X"},)),
        "serve",
        [],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_embedded_and_opa_server_engines_decide_identically(served: tuple[str, int], case: str) -> None:
    doc, stage, waivers = CASES[case]
    policies = PolicySet.load()
    embedded = open_engine(policies)
    server = OpaServerEngine(f"http://{served[0]}:{served[1]}", push=policies.files, data=policies.data)
    inp = gate_input(doc, stage=stage)
    ours = gate(inp, embedded, waivers=waivers, gate_ids=policies.gate_ids)
    theirs = gate(inp, server, waivers=waivers, gate_ids=policies.gate_ids)
    assert (ours.allowed, ours.denies, ours.warnings, ours.waived) == (
        theirs.allowed,
        theirs.denies,
        theirs.warnings,
        theirs.waived,
    )
    assert ours.policies_digest == theirs.policies_digest
    assert theirs.engine.startswith("opa http://127.0.0.1:")


def test_an_opa_server_without_the_gates_is_undefined_not_allowed(served: tuple[str, int]) -> None:
    server = OpaServerEngine(f"http://{served[0]}:{served[1]}")
    with pytest.raises(Undefined):
        gate(gate_input(report()), server)


def test_an_unreachable_server_is_a_policy_error() -> None:
    from mlsec.policy_engines import PolicyError

    with pytest.raises(PolicyError, match="OPA at http://127.0.0.1:9"):
        gate(gate_input(report()), OpaServerEngine("http://127.0.0.1:9", timeout=0.5))

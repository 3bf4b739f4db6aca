"""Serving manifests: facts from KServe, Seldon and Deployment YAML, matched with what the report scanned,
and judged by the serve gate (serving_endpoints)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from mlsec import scan
from mlsec.cli import main
from mlsec.gate_input import build_gate_input
from tests.conftest import fixture

MODEL = fixture("models/benign/mlp.onnx")
HF_SNAPSHOT = fixture("huggingface/models--acme--tiny-llm/snapshots/3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c2e4b6d8f0a")


def _serving(report: object) -> dict[str, dict]:
    return {e["resource"]: e for e in build_gate_input(report, stage="serve")["serving"]}


def _deployed(tmp_path: Path, manifest: str) -> Path:
    """A repository with the manifest and the model it names (s3://models/fraud/v3 -> exports/fraud/v3/)."""
    (tmp_path / "exports" / "fraud" / "v3").mkdir(parents=True)
    shutil.copyfile(MODEL, tmp_path / "exports" / "fraud" / "v3" / "model.onnx")
    shutil.copyfile(fixture(f"serving/{manifest}"), tmp_path / "kserve.yaml")
    return tmp_path


def test_kserve_facts() -> None:
    report = scan([fixture("serving/kserve-open.yaml")])
    (resource,) = [a for a in report.artifacts if a.kind.value == "serving"]
    assert resource.member == "InferenceService/prod/fraud-detector"
    assert {k: resource.facts[k] for k in ("model_uris", "public", "authentication", "rate_limited", "outputs")} == {
        "model_uris": "s3://models/fraud/v3", "public": True, "authentication": False, "rate_limited": True, "outputs": "labels",
    }  # fmt: skip
    hardened = scan([fixture("serving/kserve-hardened.yaml")]).artifacts[1].facts
    assert (hardened["public"], hardened["authentication"], hardened["resource_limits"]) == (False, True, True)


def test_seldon_sklearn_server_returns_probabilities_by_default() -> None:
    facts = scan([fixture("serving/seldon.yaml")]).artifacts[1].facts
    assert (facts["outputs"], facts["model_uris"], facts["images"]) == (
        "probabilities", "gs://acme-models/churn/2024-06", "seldonio/sklearnserver:1.17.1",
    )  # fmt: skip


def test_a_deployment_behind_a_load_balancer_is_public_and_its_uri_and_image_match_what_was_scanned() -> None:
    report = scan([fixture("serving/deployment.yaml"), HF_SNAPSHOT, fixture("images/model-server.docker.tar")])
    endpoint = _serving(report)["Deployment/prod/llm-server"]
    assert (endpoint["public"], endpoint["resource_limits"], endpoint["replicas"]) == (True, False, 3)
    (uri,) = endpoint["model_uris"]
    assert (uri["uri"], uri["scanned"]) == ("hf://acme/tiny-llm", True)
    assert endpoint["images"] == [{"image": "acme/model-server:1.0", "scanned": True}]
    alone = _serving(scan([fixture("serving/deployment.yaml")]))["Deployment/prod/llm-server"]
    assert alone["model_uris"][0]["scanned"] is False
    assert alone["images"][0]["scanned"] is False


def test_a_storage_uri_matches_the_scanned_model_under_its_path(tmp_path: Path) -> None:
    report = scan([str(_deployed(tmp_path, "kserve-open.yaml"))])
    (uri,) = _serving(report)["InferenceService/prod/fraud-detector"]["model_uris"]
    model = next(a for a in report.artifacts if a.path.endswith("model.onnx"))
    assert uri == {"uri": "s3://models/fraud/v3", "scanned": True, "sha256": [model.sha256]}


def test_unauthenticated_kserve_serving_an_unsigned_model_is_denied_with_both_reasons(tmp_path: Path) -> None:
    repo = _deployed(tmp_path, "kserve-open.yaml")
    result = CliRunner().invoke(
        main, ["scan", str(repo), "--gate", "--stage", "serve", "--gate-output", f"json={tmp_path / 'decision.json'}"]
    )
    assert result.exit_code == 1
    denies = {
        d["message"] for d in json.loads((tmp_path / "decision.json").read_text())["denies"] if d["gate_id"] == "MLSEC-GATE-007"
    }
    manifest = str(repo / "kserve.yaml")
    assert denies == {
        f"InferenceService fraud-detector ({manifest}) is public and has no authentication",
        f"InferenceService fraud-detector ({manifest}) serves s3://models/fraud/v3, which has no verified signature from an allowed signer",
    }


def test_the_hardened_manifest_with_a_signed_model_is_allowed(tmp_path: Path) -> None:
    repo = _deployed(tmp_path, "kserve-hardened.yaml")
    report_path = tmp_path / "report.json"
    CliRunner().invoke(main, ["scan", str(repo), "-o", f"json={report_path}"])
    model_sha = next(a["sha256"] for a in json.loads(report_path.read_text())["artifacts"] if a["path"].endswith(".onnx"))
    identity, issuer = "ci@release.example.com", "https://token.actions.githubusercontent.com"
    signatures = tmp_path / "signatures.json"
    signatures.write_text(
        json.dumps([{"file": "model.onnx", "sha256": model_sha, "verified": True, "identity": identity, "issuer": issuer}])
    )
    data = tmp_path / "data"
    data.mkdir()
    (data / "signers.json").write_text(
        json.dumps({"mlsec": {"allowed_signers": [{"identity": "*@release.example.com", "issuer": issuer}]}})
    )
    result = CliRunner().invoke(
        main,
        [
            "gate",
            "--report",
            str(report_path),
            "--stage",
            "serve",
            "--signatures",
            str(signatures),
            "--data",
            str(data),
            "-o",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["denies"] == []


def test_a_billion_laughs_is_refused_before_it_is_expanded() -> None:
    report = scan([fixture("serving/billion-laughs.yaml")])
    assert [f.rule_id for f in report.findings] == ["MLSEC-LIMIT-001"]
    assert "YAML nodes with aliases expanded" in report.errors[0].reason


def test_yaml_nested_too_deeply_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("apiVersion: v1\nkind: Deployment\nspec: " + "[" * 5000 + "]" * 5000 + "\n")
    (error,) = scan([str(path)]).errors
    assert (error.error_type, error.reason) == ("InputError", "YAML nested too deeply to read")

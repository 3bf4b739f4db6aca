"""The MLflow model registry, for real: a SQLite backend store and a local artifact store (and `mlflow
server` on loopback for the REST path), one clean and one malicious model version."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlsec.cli import main
from tests.conftest import fixture

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")

CLEAN = fixture("models/benign/mlp.onnx")
EVIL = fixture("examples/demo/downloaded_model.pkl")
ISSUER = "https://token.actions.githubusercontent.com"


@pytest.fixture
def registry(tmp_path: Path) -> str:
    """fraud v1 (an ONNX model) and fraud v2 (a pickle that runs a command when loaded)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("fraud", artifact_location=(tmp_path / "artifacts").as_uri())
    client.create_registered_model("fraud")
    for source in (CLEAN, EVIL):
        run = client.create_run(experiment)
        client.log_artifact(run.info.run_id, source, artifact_path="model")
        client.set_terminated(run.info.run_id)
        client.create_model_version("fraud", source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    return uri


def _tags(uri: str, version: str) -> dict[str, str]:
    return dict(mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version("fraud", version).tags)


def _alias(uri: str) -> str | None:
    try:
        return str(
            mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias("fraud", "production").version
        )
    except mlflow.exceptions.MlflowException:
        return None


def test_registry_scan_tags_each_version_with_its_verdict(registry: str, tmp_path: Path) -> None:
    reports = tmp_path / "reports.jsonl"
    result = CliRunner().invoke(main, ["registry", "scan", "mlflow", "--tracking-uri", registry, "-o", str(reports)])
    assert result.exit_code == 1, result.output
    assert "models:/fraud/1  clean" in result.output
    assert "models:/fraud/2  blocked" in result.output
    clean, evil = _tags(registry, "1"), _tags(registry, "2")
    assert (clean["mlsec.verdict"], evil["mlsec.verdict"]) == ("clean", "blocked")
    assert set(clean) >= {"mlsec.report_sha256", "mlsec.rules_digest", "mlsec.scanned_at"}
    by_target = {json.loads(line)["targets"][0]: json.loads(line) for line in reports.read_text().splitlines()}
    evil_report = by_target["models:/fraud/2"]
    assert evil_report["findings"][0]["location"]["path"] == "models:/fraud/2/downloaded_model.pkl"
    assert evil_report["findings"][0]["rule_id"] == "MLSEC-PICKLE-001"


def test_unchanged_versions_are_not_scanned_again(registry: str) -> None:
    runner = CliRunner()
    runner.invoke(main, ["registry", "scan", "mlflow", "--tracking-uri", registry])
    first = _tags(registry, "1")["mlsec.scanned_at"]
    again = runner.invoke(main, ["registry", "scan", "mlflow", "--tracking-uri", registry, "--model", "fraud", "--version", "1"])
    assert again.exit_code == 0
    assert "models:/fraud/1  clean (unchanged since its last scan)" in again.output
    assert _tags(registry, "1")["mlsec.scanned_at"] == first
    forced = runner.invoke(
        main, ["registry", "scan", "mlflow", "--tracking-uri", registry, "--model", "fraud", "--version", "1", "--force"]
    )
    assert "unchanged" not in forced.output


def test_promotion_goes_through_the_serve_gate_and_the_ledger_keeps_both_decisions(registry: str, tmp_path: Path) -> None:
    runner, ledger = CliRunner(), str(tmp_path / "audit.db")
    denied = runner.invoke(
        main, ["registry", "promote", "fraud", "2", "--alias", "production", "--tracking-uri", registry, "--ledger", ledger]
    )
    assert denied.exit_code == 1
    assert "promotion to 'production' DENIED; 'production' still points at nothing" in denied.output
    assert _alias(registry) is None

    sha = __import__("hashlib").sha256(Path(CLEAN).read_bytes()).hexdigest()
    signatures = tmp_path / "signatures.json"
    signatures.write_text(
        json.dumps(
            [{"file": "mlp.onnx", "sha256": sha, "verified": True, "identity": "ci@release.example.com", "issuer": ISSUER}]
        )
    )
    data = tmp_path / "data"
    data.mkdir()
    (data / "signers.json").write_text(
        json.dumps({"mlsec": {"allowed_signers": [{"identity": "*@release.example.com", "issuer": ISSUER}]}})
    )
    allowed = runner.invoke(
        main,
        ["registry", "promote", "fraud", "1", "--alias", "production", "--tracking-uri", registry, "--ledger", ledger,
         "--signatures", str(signatures), "--data", str(data)],
    )  # fmt: skip
    assert allowed.exit_code == 0, allowed.output
    assert _alias(registry) == "1"

    log = runner.invoke(main, ["audit", "log", "--ledger", ledger, "--json"])
    promotions = [json.loads(line)["result"] for line in log.output.splitlines() if json.loads(line)["kind"] == "promote"]
    assert [(p["version"], p["allowed"]) for p in promotions] == [("2", False), ("1", True)]
    assert any("MLSEC-GATE-001" in d for d in promotions[0]["denies"])
    assert runner.invoke(main, ["audit", "verify", "--ledger", ledger]).exit_code == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(
    shutil.which("mlflow") is None and not Path(sys.executable).with_name("mlflow").exists(), reason="no mlflow CLI"
)
def test_registry_scan_through_mlflow_server_over_rest(registry: str, tmp_path: Path) -> None:
    port = _free_port()
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    server = subprocess.Popen(
        [mlflow_cli, "server", "--backend-store-uri", registry, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start")
        result = CliRunner().invoke(
            main, ["registry", "scan", "mlflow", "--tracking-uri", url, "--model", "fraud", "--version", "2"]
        )
        assert result.exit_code == 1, result.output
        assert "models:/fraud/2  blocked" in result.output
        assert _tags(registry, "2")["mlsec.verdict"] == "blocked"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_registry_evaluates_clean_versions_when_asked_and_the_serve_gate_reads_it(tmp_path: Path) -> None:
    """`--evaluate DATASET`: the clean version's logistic regression is attacked in the sandbox (its dataset
    scanned with it), the malicious version is never loaded (the session's sentinel guard), the verdict and
    tags carry the evaluation, a changed evaluation plan is scanned again, and promotion's serve gate denies
    on robustness (MLSEC-GATE-005)."""
    pytest.importorskip("art", reason="the eval extra is not installed")
    import joblib
    import pandas as pd
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.3, random_state=0)
    model = tmp_path / "logreg.joblib"
    joblib.dump(LogisticRegression(max_iter=1000).fit(x_train, y_train), model)
    holdout = tmp_path / "holdout.csv"
    frame = pd.DataFrame(x_test, columns=[f"px{i}" for i in range(64)])
    frame["y"] = y_test
    frame.to_csv(holdout, index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("digits", artifact_location=(tmp_path / "artifacts").as_uri())
    client.create_registered_model("fraud")
    for sources in ((str(model), fixture("models/benign/weights.safetensors")), (EVIL,)):
        run = client.create_run(experiment)
        for source in sources:  # version 1 also holds weights the evaluation does not load: they are not evaluated
            client.log_artifact(run.info.run_id, source, artifact_path="model")
        client.create_model_version("fraud", source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)

    runner, reports = CliRunner(), tmp_path / "reports.jsonl"
    evaluate = ["--evaluate", str(holdout), "--label-column", "y", "--sample", "50"]
    strong = runner.invoke(
        main, ["registry", "scan", "mlflow", "--tracking-uri", uri, *evaluate, "--eps", "0.3", "-o", str(reports)]
    )
    assert strong.exit_code == 1, strong.output
    assert "models:/fraud/1  blocked" in strong.output  # eps 0.3 breaks it: MLSEC-EVAL-001
    by_target = {json.loads(line)["targets"][0]: json.loads(line) for line in reports.read_text().splitlines()}
    (evaluation,) = by_target["models:/fraud/1"]["evaluations"]
    assert evaluation["status"] == "completed"
    assert evaluation["metrics"]["robust_accuracy"] < 0.5
    assert "MLSEC-EVAL-001" in {f["rule_id"] for f in by_target["models:/fraud/1"]["findings"]}
    assert by_target["models:/fraud/2"]["evaluations"] == []  # its scan blocks: never loaded
    tags = _tags(uri, "1")
    assert tags["mlsec.evaluation"].startswith("logreg.joblib adversarial/Linf/eps=0.3 completed clean_accuracy=")
    assert " robust_accuracy=" in tags["mlsec.evaluation"]
    same = runner.invoke(main, ["registry", "scan", "mlflow", "--tracking-uri", uri, *evaluate, "--eps", "0.3"])
    assert "models:/fraud/1  blocked (unchanged since its last scan)" in same.output
    gentle = runner.invoke(main, ["registry", "scan", "mlflow", "--tracking-uri", uri, *evaluate, "--eps", "0.01"])
    assert "models:/fraud/1  clean" in gentle.output
    assert "models:/fraud/1  clean (unchanged" not in gentle.output
    assert _tags(uri, "1")["mlsec.verdict"] == "clean"

    decision = tmp_path / "decision.json"
    denied = runner.invoke(
        main,
        ["registry", "promote", "fraud", "1", "--alias", "production", "--tracking-uri", uri, *evaluate, "--eps", "0.3",
         "--gate-output", f"json={decision}"],
    )  # fmt: skip
    assert denied.exit_code == 1, denied.output
    assert "MLSEC-GATE-005" in json.dumps(json.loads(decision.read_text())["denies"])
    assert _alias(uri) is None
    # an evaluation asked for that cannot finish (no such label column) leaves the version incomplete, not clean
    broken = runner.invoke(
        main, ["registry", "scan", "mlflow", "--tracking-uri", uri, "--model", "fraud", "--version", "1",
               "--evaluate", str(holdout), "--label-column", "no_such_column", "--sample", "20"],
    )  # fmt: skip
    assert broken.exit_code == 3, broken.output
    assert "models:/fraud/1  incomplete" in broken.output
    assert _tags(uri, "1")["mlsec.evaluation"].startswith("logreg.joblib error (")
    assert "no label column no_such_column" in _tags(uri, "1")["mlsec.evaluation"]
    stray = runner.invoke(main, ["registry", "scan", "mlflow", "--tracking-uri", uri, "--label-column", "y"])
    assert stray.exit_code == 2
    assert "--label-column is an evaluation option: it needs --evaluate DATASET" in stray.output

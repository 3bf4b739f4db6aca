"""mlsec.yaml pipelines: `mlsec run --stage` on the bundled example (scan, sign, gate, ledger, HTML),
`mlsec init`, and manifests that are wrong, reported with their line numbers."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlsec.cli import main
from mlsec.pipeline.config import load
from tests.conftest import FIXTURES


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example pipeline in a fresh folder, with a key pair, as the working directory."""
    root = tmp_path / "repo"
    shutil.copytree(FIXTURES / "examples" / "pipeline", root)
    monkeypatch.chdir(root)
    assert CliRunner().invoke(main, ["keygen", "--private", "keys/mlsec.key", "--public", "keys/mlsec.pub"]).exit_code == 0
    return root


def test_run_serve_scans_signs_gates_records_and_reports(repo: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["run", "--stage", "serve"])
    assert result.exit_code == 0, result.output
    assert "gate (serve): ALLOWED" in result.output
    out = repo / "mlsec-out" / "serve"
    (signature,) = json.loads((out / "signatures.json").read_text())
    assert (signature["verified"], signature["issuer"], signature["file"]) == (
        True,
        "mlsec:key",
        "models/fraud/v3/model.safetensors",
    )
    assert (repo / "models/fraud/v3/model.safetensors.sigstore.json").is_file()
    assert json.loads((out / "decision.json").read_text())["allowed"] is True
    page = (out / "report.html").read_text()
    assert "ALLOWED at stage serve" in page
    assert "<h2>Audit ledger</h2>" in page
    kinds = [
        json.loads(line)["kind"]
        for line in runner.invoke(main, ["audit", "log", "--ledger", ".mlsec/ledger.sqlite3", "--json"]).output.splitlines()
    ]
    assert kinds == ["scan", "sign", "gate"]
    assert runner.invoke(main, ["audit", "verify", "--ledger", ".mlsec/ledger.sqlite3"]).exit_code == 0

    db = sqlite3.connect(repo / ".mlsec" / "ledger.sqlite3")
    db.execute("UPDATE ledger SET result = replace(result, 'true', 'false') WHERE kind = 'gate'")
    db.commit()
    db.close()
    broken = runner.invoke(main, ["audit", "verify", "--ledger", ".mlsec/ledger.sqlite3"])
    assert broken.exit_code == 1
    assert "entry 3: its content does not match its hash (edited)" in broken.output


def test_a_public_unauthenticated_endpoint_denies_the_serve_stage(repo: Path) -> None:
    manifest = repo / "deploy" / "kserve.yaml"
    text = manifest.read_text().replace('    serving.kserve.io/enable-auth: "true"\n', "")
    manifest.write_text(text.replace("  labels:\n    networking.kserve.io/visibility: cluster-local\n", ""))
    result = CliRunner().invoke(main, ["run", "--stage", "serve"])
    assert result.exit_code == 1
    assert "gate (serve): DENIED" in result.output
    assert "is public and has no authentication" in result.output


def test_every_stage_of_the_example_passes(repo: Path) -> None:
    for stage in ("data", "register", "serve"):
        result = CliRunner().invoke(main, ["run", "--stage", stage])
        assert result.exit_code == 0, f"{stage}: {result.output}"


def test_an_invalid_manifest_lists_every_problem_with_its_line(repo: Path) -> None:
    (repo / "mlsec.yaml").write_text(
        "version: 1\n"
        "artifacts:\n"
        "  models: [models/*.onnx]\n"
        "stages:\n"
        "  serve:\n"
        "    scan: [modles]\n"
        "    evaluate: [adversarial]\n"
        "    gate: {stage: production}\n"
        "colour: blue\n"
    )
    result = CliRunner().invoke(main, ["run", "--stage", "serve"])
    assert result.exit_code == 2
    for expected in (
        "mlsec.yaml:6: stages.serve.scan: unknown artifact group 'modles' (defined: models)",
        "mlsec.yaml:7: stages.serve.evaluate: expected a mapping with models and data (artifact groups), and label_column, suites, eps...",
        "mlsec.yaml:8: stages.serve.gate.stage: expected one of pr, train, register, serve",
        "mlsec.yaml:9: colour: unknown key",
    ):
        assert expected in result.output


def test_yaml_that_does_not_parse_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "mlsec.yaml"
    path.write_text("version: 1\nartifacts:\n  models: [a\nstages: {}\n")
    with pytest.raises(Exception, match=r"mlsec\.yaml:4: not valid YAML"):
        load(path)


def test_init_writes_a_starter_that_runs(repo: Path) -> None:
    (repo / "mlsec.yaml").unlink()
    runner = CliRunner()
    assert runner.invoke(main, ["init"]).exit_code == 0
    text = (repo / "mlsec.yaml").read_text()
    assert '    - "models/fraud/v3/*.safetensors"' in text
    assert '    - "data/*.csv"' in text
    assert '    - "deploy/*.yaml"' in text
    assert runner.invoke(main, ["init"]).exit_code == 2  # never overwrites without --force
    result = runner.invoke(main, ["run", "--stage", "serve"])
    assert result.exit_code == 0, result.output

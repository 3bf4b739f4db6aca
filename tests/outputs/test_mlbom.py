"""The CycloneDX ML-BOM: valid against 1.6 and 1.7, reproducible, and complete about what the scan found."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from mlsec import scan
from mlsec.artifacts import Artifact, ArtifactKind
from mlsec.cli import main
from mlsec.dependencies.vulndb import import_records
from mlsec.findings import Evidence
from mlsec.outputs.mlbom import render
from mlsec.report import EvaluationResult
from tests.conftest import FIXTURES, fixture

TARGETS = [fixture("examples/demo"), fixture("dependencies/acceptance"), fixture("models/benign/mlp.onnx")]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "osv.sqlite"
    import_records(FIXTURES / "advisories", path)
    return path


@pytest.mark.parametrize(("spec", "version"), [("1.6", SchemaVersion.V1_6), ("1.7", SchemaVersion.V1_7)])
def test_bundled_example_validates_and_names_everything(db: Path, spec: str, version: SchemaVersion) -> None:
    report = scan(TARGETS, vulndb=db)
    text = render(report, spec=spec)
    assert JsonStrictValidator(version).validate_str(text) is None
    doc = json.loads(text)
    assert doc["specVersion"] == spec
    hashes = {h["content"] for c in doc["components"] for h in c.get("hashes", [])}
    models = {
        a.sha256
        for a in report.artifacts
        if a.member is None and any(m.path == a.path and m.kind is ArtifactKind.MODEL for m in report.artifacts)
    }
    assert models
    assert models <= hashes
    assert {c["purl"] for c in doc["components"] if c["type"] == "library"} == {
        "pkg:pypi/pyyaml@5.3", "pkg:pypi/jinja2@2.10", "pkg:pypi/pillow@8.0.0", "pkg:pypi/torch@2.5.0%2Bcu121",
    }  # fmt: skip
    advisories = {str(f.evidence.facts["advisory"]) for f in report.findings if "advisory" in f.evidence.facts}
    assert {v["id"] for v in doc["vulnerabilities"]} == advisories
    root = doc["metadata"]["component"]["bom-ref"]
    (graph,) = [d for d in doc["dependencies"] if d["ref"] == root]
    assert {c["bom-ref"] for c in doc["components"]} == set(graph["dependsOn"])
    pickle = next(c for c in doc["components"] if c["name"] == "downloaded_model.pkl")
    props = {p["name"]: p["value"] for p in pickle["properties"]}
    assert props["mlsec:findings:max_severity"] == "critical"
    assert "MLSEC-PICKLE-001" in pickle["modelCard"]["considerations"]["technicalLimitations"][0]


def test_two_runs_are_byte_identical(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first, second = (render(scan(TARGETS, vulndb=db)) for _ in range(2))
    assert first == second
    assert json.loads(first)["metadata"]["timestamp"] == "2023-11-14T22:13:20+00:00"


def test_datasets_and_evaluations_reach_the_model_card() -> None:
    report = scan([fixture("models/benign/mlp.onnx")])
    model = report.artifacts[0]
    dataset = Artifact(path="data/train.csv", kind=ArtifactKind.DATASET, format="csv", sha256="d" * 64, size=10)
    evaluation = EvaluationResult(
        name="fgsm", status="completed", artifact_sha256=model.sha256, dataset_sha256="d" * 64,
        parameters={"eps": 0.1}, metrics={"robust_accuracy": 0.71, "clean_accuracy": 0.93},
        evidence=Evidence("s", {}, "ART FastGradientMethod"), seconds=1.0,
    )  # fmt: skip
    text = render(replace(report, artifacts=(*report.artifacts, dataset), evaluations=(evaluation,)), spec="1.6")
    doc = json.loads(text)
    data = next(c for c in doc["components"] if c["type"] == "data")
    assert data["data"] == [{"type": "dataset", "name": "train.csv"}]
    card = next(c for c in doc["components"] if c["type"] == "machine-learning-model")["modelCard"]
    assert card["modelParameters"]["datasets"] == [{"ref": "dataset:" + "d" * 64}]
    assert card["modelParameters"]["inputs"] == [{"format": "X:float[1,4]"}]
    assert {m["type"]: m["value"] for m in card["quantitativeAnalysis"]["performanceMetrics"]} == {
        "clean_accuracy": "0.93",
        "robust_accuracy": "0.71",
    }


def test_bom_cli_from_paths_and_from_a_report_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    runner = CliRunner()
    report = tmp_path / "report.json"
    assert runner.invoke(main, ["scan", fixture("examples/demo"), "-o", f"json={report}"]).exit_code == 1
    from_paths = runner.invoke(main, ["bom", fixture("examples/demo"), "-o", f"mlbom={tmp_path / 'a.json'}"])
    from_report = runner.invoke(main, ["bom", "--report", str(report), "-o", f"mlbom={tmp_path / 'b.json'}"])
    assert from_paths.exit_code == from_report.exit_code == 0
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    assert runner.invoke(main, ["bom", "--report", str(report), fixture("examples/demo")]).exit_code == 2

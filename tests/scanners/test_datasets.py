"""Datasets: the acceptance cases on scikit-learn's data, drift numbers, chunked reading, never the values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mlsec import Severity, scan
from mlsec.cli import main
from mlsec.datasets import reading
from mlsec.datasets.drift import column_drift
from tests.conftest import fixture

CLEAN = [
    "datasets/clean/digits.csv",
    "datasets/clean/digits.parquet",
    "datasets/clean/breast_cancer.csv",
    "datasets/clean/breast_cancer.parquet",
]


@pytest.mark.parametrize("rel", CLEAN)
def test_clean_copies_give_no_high_finding(rel: str) -> None:
    report = scan([fixture(rel)])
    assert not [f for f in report.findings if f.severity >= Severity.HIGH]
    facts = report.artifacts[0].facts
    assert facts["rows"] in (1797, 569)
    assert report.artifacts[0].kind.value == "dataset"


@pytest.mark.parametrize(
    ("rel", "rule"),
    [
        ("datasets/poisoned/digits_flipped_duplicates.csv", "MLSEC-DATA-006"),
        ("datasets/poisoned/digits_trigger.parquet", "MLSEC-DATA-007"),
        ("datasets/poisoned/digits_formulas.csv", "MLSEC-DATA-002"),
        ("datasets/poisoned/pickled_extension_type.parquet", "MLSEC-DATA-001"),
        ("datasets/poisoned/digits_outliers.csv", "MLSEC-DATA-010"),
        ("models/malicious/object_array.npy", "MLSEC-PICKLE-001"),
    ],
)
def test_each_poisoned_copy_gives_its_finding(rel: str, rule: str) -> None:
    assert rule in {f.rule_id for f in scan([fixture(rel)]).findings}


def test_the_trigger_is_named_with_its_label() -> None:
    (trigger,) = [
        f for f in scan([fixture("datasets/poisoned/digits_trigger.parquet")]).findings if f.rule_id == "MLSEC-DATA-007"
    ]
    assert (trigger.evidence.facts["column"], trigger.evidence.facts["value"], trigger.evidence.facts["label"]) == (
        "pixel_0",
        "16",
        "7",
    )


def test_drift_is_reported_with_psi_values_and_reaches_the_gate() -> None:
    report = scan([fixture("datasets/drift/breast_cancer_shifted.csv")], reference=fixture("datasets/clean/breast_cancer.csv"))
    (drift,) = [f for f in report.findings if f.rule_id == "MLSEC-DATA-009"]
    assert drift.evidence.facts["psi:mean_radius"] > 0.25
    assert "ks:mean_radius" in drift.evidence.facts
    assert drift.evidence.facts["drift_score"] == report.artifacts[0].facts["drift_score"]
    same = scan([fixture("datasets/clean/breast_cancer.csv")], reference=fixture("datasets/clean/breast_cancer.csv"))
    assert not [
        f for f in same.findings if f.rule_id.startswith("MLSEC-DATA-00") and f.rule_id in ("MLSEC-DATA-008", "MLSEC-DATA-009")
    ]
    assert same.artifacts[0].facts["drift_score"] == 0.0


def test_moderate_drift_is_a_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 5000)})
    moved = pd.DataFrame({"x": rng.normal(0.45, 1, 5000)})
    reference.to_csv(tmp_path / "ref.csv", index=False)
    moved.to_csv(tmp_path / "new.csv", index=False)
    (finding,) = scan([str(tmp_path / "new.csv")], reference=str(tmp_path / "ref.csv")).findings
    assert finding.rule_id == "MLSEC-DATA-008"
    assert 0.2 < finding.evidence.facts["drift_score"] <= 0.25


def test_psi_ks_js_on_known_samples() -> None:
    same = column_drift("x", pd.Series(np.arange(1000.0)), pd.Series(np.arange(1000.0)))
    assert (round(same.psi, 6), same.ks, round(same.js, 6)) == (0.0, 0.0, 0.0)
    apart = column_drift("x", pd.Series(np.arange(1000.0)), pd.Series(np.arange(1000.0) + 2000))
    assert apart.ks == 1.0
    assert apart.psi > 5


def test_values_never_reach_the_report() -> None:
    report = scan([fixture("datasets/poisoned/reviews_with_secrets.jsonl")])
    text = report.to_json()
    assert {"MLSEC-DATA-003", "MLSEC-DATA-004"} <= {f.rule_id for f in report.findings}
    for secret in ("jane.doe@example.com", "4111 1111 1111 1111", "Qw8Qw8", "7946 0958"):
        assert secret not in text


def test_reading_is_chunked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reading, "CHUNK_ROWS", 100)
    path = tmp_path / "big.csv"
    pd.DataFrame({"a": range(1050), "label": [i % 3 for i in range(1050)]}).to_csv(path, index=False)
    with open(path, "rb") as fh:
        sizes = [len(c) for c in reading.chunks("csv", fh)]
    assert max(sizes) == 100
    assert sum(sizes) == 1050
    assert scan([str(path)]).artifacts[0].facts["rows"] == 1050


def test_cli_reference_and_label_column(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["scan", fixture("datasets/drift/breast_cancer_shifted.csv"), "--reference", fixture("datasets/clean/breast_cancer.csv"),
         "--label-column", "target", "-o", "json"],
    )  # fmt: skip
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert doc["artifacts"][0]["facts"]["label_column"] == "target"


def test_a_hugging_face_style_dataset_folder(tmp_path: Path) -> None:
    import pyarrow as pa

    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "dataset_info.json").write_text(
        json.dumps({"features": {"text": {"dtype": "string"}, "label": {"dtype": "int64"}}})
    )
    table = pa.table({"text": ["fine", '=HYPERLINK("http://x.invalid")', "ok"], "label": [0, 1, 0]})
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    report = scan([str(folder)])
    shard = next(a for a in report.artifacts if a.path.endswith(".arrow"))
    assert (shard.format, shard.kind.value, shard.facts["rows"]) == ("arrow-stream", "dataset", 3)
    assert "MLSEC-DATA-002" in {f.rule_id for f in report.findings}


def test_schema_problems_name_their_columns() -> None:
    (problem,) = scan([fixture("datasets/poisoned/broken_export.csv")]).findings
    assert problem.rule_id == "MLSEC-DATA-005"
    for part in ("'age' mixes numbers", "'notes' is empty", "id column 'id' repeats 10"):
        assert part in problem.evidence.summary


def test_a_rare_word_that_always_means_one_label_is_a_text_trigger(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    words = ["good", "bad", "fine", "awful", "great", "poor", "okay", "meh"]
    texts = [" ".join(rng.choice(words, 6)) for _ in range(600)]
    labels = [int(rng.integers(0, 4)) for _ in range(600)]
    for i in range(0, 600, 20):  # 5% of rows carry a made-up word and are relabelled positive
        texts[i] += " zxqv"
        labels[i] = 1
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "reviews.csv", index=False)
    (trigger,) = [f for f in scan([str(tmp_path / "reviews.csv")]).findings if f.rule_id == "MLSEC-DATA-007"]
    assert (trigger.evidence.facts["column"], trigger.evidence.facts["value"], trigger.evidence.facts["label"]) == (
        "text (word)",
        "zxqv",
        "1",
    )


def test_near_duplicates_with_noise_and_flipped_labels_are_found(tmp_path: Path) -> None:
    from fixtures.build_datasets import cancer  # noqa: PLC0415 - the fixture builder's loader

    frame = cancer()
    copies = frame.sample(frac=0.05, random_state=4).copy()
    features = [c for c in frame.columns if c != "target"]
    copies[features] = copies[features] * (1 + 1e-5)  # too small to matter, enough to dodge exact de-duplication
    copies["target"] = 1 - copies["target"]
    pd.concat([frame, copies]).to_csv(tmp_path / "noisy.csv", index=False)
    (finding,) = [f for f in scan([str(tmp_path / "noisy.csv")]).findings if f.rule_id == "MLSEC-DATA-006"]
    assert finding.evidence.facts["rows"] == 0
    assert finding.evidence.facts["near_rows"] >= 1.5 * len(copies)  # a value on a rounding boundary can split a pair

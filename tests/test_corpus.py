"""Acceptance on the labelled corpus: every malicious file blocks on its own path, no benign file does."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mlsec import Severity, scan
from tests.conftest import CORPUS

pytestmark = pytest.mark.skipif(not (CORPUS / "labels.csv").is_file(), reason="shared corpus not present")


def test_corpus_recall_and_false_positives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The corpus payloads write a marker into the loader's working directory: scan from an empty one.
    monkeypatch.chdir(tmp_path)
    with (CORPUS / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    report = scan([str(CORPUS / r["file"]) for r in rows])
    assert list(tmp_path.iterdir()) == [], "a corpus payload ran during the scan"
    blocking = {f.location.path for f in report.findings if f.severity >= Severity.HIGH}
    missed = [r["file"] for r in rows if r["label"] == "malicious" and str(CORPUS / r["file"]) not in blocking]
    flagged = [r["file"] for r in rows if r["label"] == "benign" and str(CORPUS / r["file"]) in blocking]
    assert missed == []
    assert flagged == []
    assert report.errors == ()

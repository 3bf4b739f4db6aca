"""modelscan as a second engine: its findings corroborate mlsec's, or stand alone where they disagree."""

from __future__ import annotations

from mlsec import Severity, scan
from mlsec.findings import Evidence, Finding, Location
from mlsec.scan import _corroborate
from tests.conftest import fixture


def test_modelscan_confirms_the_legacy_h5_lambda() -> None:
    (finding,) = scan([fixture("models/malicious/keras_lambda.h5")]).findings
    assert finding.rule_id == "MLSEC-KERAS-001"
    assert finding.evidence.source == "mlsec keras"
    assert finding.evidence.facts["confirmed_by"].startswith("modelscan ")


def test_modelscan_sees_nothing_in_benign_keras_files() -> None:
    report = scan([fixture("models/benign/keras_dense.h5"), fixture("models/benign/keras_dense.keras")])
    assert report.findings == ()


def _finding(rule: str, path: str, source: str) -> Finding:
    return Finding(rule, Severity.CRITICAL, "m", Location(path), Evidence("s", {}, source), "0" * 64)


def test_a_finding_only_the_second_engine_has_is_kept_for_review() -> None:
    ours = _finding("MLSEC-KERAS-001", "a.h5", "mlsec keras")
    theirs = [
        _finding("MLSEC-KERAS-001", "a.h5", "modelscan 0.8.8"),
        _finding("MLSEC-TF-002", "b/saved_model.pb", "modelscan 0.8.8"),
    ]
    merged = _corroborate([ours, *theirs])
    assert [(f.rule_id, f.evidence.source) for f in merged] == [
        ("MLSEC-KERAS-001", "mlsec keras"),
        ("MLSEC-TF-002", "modelscan 0.8.8"),
    ]
    assert merged[0].evidence.facts == {"confirmed_by": "modelscan 0.8.8"}


def test_an_operator_no_rule_maps_gets_the_generic_modelscan_rule() -> None:
    from dataclasses import replace

    from mlsec import load_ruleset

    bundled = load_ruleset()
    unmapped = replace(bundled, lists={**bundled.lists, "modelscan_operators": {}})
    report = scan([fixture("models/malicious/keras_lambda.h5")], ruleset=unmapped)
    assert sorted(f.rule_id for f in report.findings) == ["MLSEC-KERAS-001", "MLSEC-MODELSCAN-001"]

"""Tree models (XGBoost JSON, LightGBM text) and PMML: the structural attacks on their native loaders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlsec import scan
from mlsec.scanners.trees import tree_problem
from tests.conftest import fixture


def _leaf(child: int) -> bool:
    return child == -1


@pytest.mark.parametrize(
    ("left", "right", "features", "why"),
    [
        ([1, -1, -1], [2, -1, -1], [0, 0, 0], ""),
        ([1, -1, -1], [5, -1, -1], [0, 0, 0], "outside 0..2"),
        ([1, 0, -1], [2, -1, -1], [0, 0, 0], "reached twice"),
        ([1, -1, -1], [1, -1, -1], [0, 0, 0], "reached twice"),
        ([1, -1, -1], [2, -1, -1], [9, 0, 0], "feature 9 of 4"),
        ([1, -1], [2, -1, -1], [0, 0, 0], "differ in length"),
    ],
)
def test_tree_walk(left: list[int], right: list[int], features: list[int], why: str) -> None:
    problem = tree_problem(left, right, features, 4, leaf=_leaf)
    assert (why in problem) if why else problem == ""


def test_xgboost_split_on_a_missing_feature(tmp_path: Path) -> None:
    model = json.loads(Path(fixture("models/benign/xgboost.json")).read_bytes())
    model["learner"]["gradient_booster"]["model"]["trees"][0]["split_indices"][0] = 4096
    path = tmp_path / "m.json"
    path.write_text(json.dumps(model))
    (finding,) = scan([str(path)]).findings
    assert "feature 4096 of 8" in finding.evidence.summary


def test_lightgbm_tree_with_fewer_nodes_than_leaves_need(tmp_path: Path) -> None:
    text = Path(fixture("models/benign/lightgbm.txt")).read_text().replace("num_leaves=4", "num_leaves=9", 1)
    path = tmp_path / "m.txt"
    path.write_text(text)
    (finding,) = scan([str(path)]).findings
    assert "num_leaves 9 but 3 internal nodes" in finding.evidence.summary


def test_xgboost_ubj_is_recognised_and_skipped_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "m.ubj"
    path.write_bytes(b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner{}}")
    report = scan([str(path)])
    assert report.artifacts[0].format == "xgboost-ubj"
    assert "UBJSON" in report.skipped[0].reason


@pytest.mark.parametrize(
    "doctype",
    ['<!DOCTYPE PMML SYSTEM "http://attacker.example/p.dtd">', '<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'],
)
def test_pmml_with_any_dtd_is_flagged_before_parsing(tmp_path: Path, doctype: str) -> None:
    path = tmp_path / "m.pmml"
    path.write_text(f'<?xml version="1.0"?>{doctype}<PMML version="4.4"/>')
    (finding,) = scan([str(path)]).findings
    assert finding.rule_id == "MLSEC-PMML-001"


def test_pmml_facts_name_the_model_types() -> None:
    facts = scan([fixture("models/benign/tree.pmml")]).artifacts[0].facts
    assert facts == {"pmml_version": "4.4", "models": "TreeModel"}

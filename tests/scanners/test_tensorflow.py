"""TensorFlow graphs and TFLite flatbuffers: ops judged by rules/tensorflow.toml, structure bounds-checked."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsec import load_ruleset, scan
from mlsec.scanners._tf_proto import message_class
from tests.conftest import fixture


def _graphdef(tmp_path: Path, *ops: str, name: str = "frozen.pb") -> str:
    graph = message_class("GraphDef")()
    for i, op in enumerate(ops):
        node = graph.node.add()
        node.name, node.op = f"n{i}", op
    function = graph.library.function.add()
    function.signature.name = "helper"
    function.node_def.add(name="inner", op="PyFunc")
    path = tmp_path / name
    path.write_bytes(graph.SerializeToString())
    return str(path)


def test_frozen_graphdef_ops_and_function_bodies_are_judged(tmp_path: Path) -> None:
    report = scan([_graphdef(tmp_path, "Placeholder", "ReadFile", "MatMul")])
    found = {(f.rule_id, f.evidence.facts["op"], f.evidence.facts["where"]) for f in report.findings}
    assert found == {("MLSEC-TF-002", "ReadFile", "graph"), ("MLSEC-TF-001", "PyFunc", "function helper")}


def test_a_pb_file_that_is_no_graph_is_an_error_not_a_verdict(tmp_path: Path) -> None:
    path = tmp_path / "labels.pb"
    path.write_bytes(b"\x0a\xff\xff\xff\xff\x0f")
    report = scan([str(path)])
    assert report.findings == ()
    assert [e.scanner for e in report.errors] == ["tensorflow"]
    assert "not a TensorFlow GraphDef" in report.errors[0].reason


def test_checkpoint_ops_of_every_savedmodel_are_not_flagged() -> None:
    report = scan([fixture("models/benign/tf_savedmodel")])
    assert report.findings == ()
    (model,) = [a for a in report.artifacts if a.format == "tf-savedmodel"]
    assert model.facts["tags"] == "serve"
    assert {s.reason.split(":")[0] for s in report.skipped} == {
        "TensorFlow SavedModel metadata (fingerprint.pb or keras_metadata.pb)",
        "TensorFlow checkpoint (variables)",
    }


def test_a_rules_directory_can_flag_more_ops(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ours.toml").write_text('[lists.tf_dataset_ops]\nnames = ["MatMul"]\n')
    report = scan([_graphdef(tmp_path, "MatMul")], ruleset=load_ruleset([rules]))
    assert {f.evidence.facts["op"] for f in report.findings} == {"MatMul", "PyFunc"}


def test_tflite_flex_ops_are_tensorflow_ops() -> None:
    (finding,) = scan([fixture("models/malicious/tflite_flex_readfile.tflite")]).findings
    assert (finding.rule_id, finding.evidence.facts["op"]) == ("MLSEC-TF-002", "ReadFile")


TFLITE = Path(fixture("models/benign/detector.tflite")).read_bytes()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=0, max_value=len(TFLITE) - 1), st.binary(min_size=1, max_size=4))
def test_any_byte_edit_of_a_tflite_file_is_a_finding_or_nothing(tmp_path: Path, offset: int, patch: bytes) -> None:
    data = bytearray(TFLITE)
    data[offset : offset + len(patch)] = patch
    data[4:8] = b"TFL3"
    path = tmp_path / "m.tflite"
    path.write_bytes(bytes(data))
    report = scan([str(path)])
    # an edit can also make it another format (b"PK\x03\x04" at 0: an unreadable zip, exit 3): an error the
    # input caused is fine; an exception no input should cause is not
    assert [e for e in report.errors if e.is_bug] == []
    assert report.errors == () or data[:4] != TFLITE[:4]


def test_a_root_offset_past_the_end_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(struct.pack("<I", 1 << 30) + b"TFL3" + bytes(8))
    (finding,) = scan([str(path)]).findings
    assert finding.rule_id == "MLSEC-TFLITE-001"


@pytest.mark.parametrize("name", ["saved_model.pb", "model.pb"])
def test_savedmodel_and_graphdef_are_told_apart_by_name(tmp_path: Path, name: str) -> None:
    report = scan([_graphdef(tmp_path, "ReadFile", name=name)])
    assert report.artifacts[0].format == ("tf-savedmodel" if name == "saved_model.pb" else "tf-graphdef")

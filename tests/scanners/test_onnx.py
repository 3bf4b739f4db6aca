"""ONNX: each test names the attack; models are built with onnx.helper, never run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mlsec import scan
from tests.conftest import fixture

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _external_model(tmp_path: Path, location: str) -> str:
    weight = numpy_helper.from_array(np.zeros((2, 2), dtype=np.float32), "W")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", location
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    path = tmp_path / "model.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return str(path)


def _problems(report) -> list[str]:
    return [f.evidence.facts["problem"] for f in report.findings if f.rule_id == "MLSEC-ONNX-001"]


def test_external_data_beside_the_model_is_fine(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(bytes(16))
    report = scan([_external_model(tmp_path, "weights.bin")])
    assert _problems(report) == []


def test_external_data_symlink_to_a_system_file_is_flagged(tmp_path: Path) -> None:
    os.symlink("/etc/hostname", tmp_path / "weights.bin")
    assert _problems(scan([_external_model(tmp_path, "weights.bin")])) == ["a symbolic link to '/etc/hostname'"]


def test_external_data_on_a_device_is_flagged(tmp_path: Path) -> None:
    fifo = tmp_path / "weights.bin"
    os.mkfifo(fifo)
    assert _problems(scan([_external_model(tmp_path, "weights.bin")])) == ["not a regular file (device, FIFO or socket)"]


def test_external_data_through_a_linked_directory_is_flagged(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "w.bin").write_bytes(bytes(16))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    os.symlink(outside, model_dir / "data")
    assert _problems(scan([_external_model(model_dir, "data/w.bin")])) == [
        "resolves outside the model's directory through a linked directory"
    ]


@pytest.mark.parametrize("location", ["C:\\Windows\\win.ini", "\\\\server\\share\\w.bin", "a/../../w.bin"])
def test_windows_and_disguised_locations_are_flagged(tmp_path: Path, location: str) -> None:
    assert len(_problems(scan([_external_model(tmp_path, location)]))) == 1


@pytest.mark.parametrize("op", ["Loop", "Scan"])
def test_python_operator_inside_loop_and_scan_bodies_is_found(tmp_path: Path, op: str) -> None:
    body = helper.make_graph(
        [helper.make_node("PyOp", ["x"], ["y"], domain="ai.onnx.contrib")],
        "body",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    node = helper.make_node(op, ["X"], ["Y"], body=body, **({"num_scan_inputs": 1} if op == "Scan" else {}))
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "m.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    (finding,) = [f for f in scan([str(path)]).findings if f.rule_id == "MLSEC-ONNX-004"]
    assert finding.evidence.facts["where"] == f"graph/{op}"


def test_facts_for_the_mlbom() -> None:
    facts = scan([fixture("models/benign/mlp.onnx")]).artifacts[0].facts
    assert facts["opset"] == 17
    assert facts["producer"] == "mlsec-fixtures"
    assert facts["inputs"] == "X:float[1,4]"
    assert facts["outputs"] == "Y:float[1,4]"
    assert facts["parameters"] == 16


def test_allowlisting_a_domain_in_a_rules_directory_silences_it(tmp_path: Path) -> None:
    from mlsec import load_ruleset

    (tmp_path / "ours.toml").write_text('[lists.onnx_known_domains]\ndomains = ["com.acme.ops"]\n')
    report = scan([fixture("models/suspicious/onnx_custom_domain.onnx")], ruleset=load_ruleset([tmp_path]))
    assert report.findings == ()


@pytest.mark.parametrize(
    ("dims", "data", "why"),
    [([-1, 4], b"", "negative dimension"), ([1 << 21, 1 << 21], b"", "declares"), ([2, 2], bytes(15), "needs 16 bytes")],
)
def test_inconsistent_tensors(tmp_path: Path, dims: list[int], data: bytes, why: str) -> None:
    tensor = helper.make_tensor("W", TensorProto.FLOAT, [1], [0.0])
    tensor.ClearField("float_data")
    tensor.dims[:] = dims
    tensor.raw_data = data
    graph = helper.make_graph(
        [helper.make_node("Identity", ["W"], ["Y"])],
        "g",
        [],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [tensor],
    )
    path = tmp_path / "m.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    messages = [f.evidence.summary for f in scan([str(path)]).findings if f.rule_id == "MLSEC-ONNX-006"]
    assert len(messages) == 1
    assert why in messages[0]

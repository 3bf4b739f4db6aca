"""ONNX models read with `onnx` (never run): external-data locations that leave the model's directory."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import Any, ClassVar

from mlsec.artifacts import Blob
from mlsec.findings import Finding
from mlsec.scanners.base import ScanContext


class OnnxScanner:
    name: ClassVar[str] = "onnx"
    formats: ClassVar[frozenset[str]] = frozenset({"onnx"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        import onnx  # noqa: PLC0415 - heavy, lazy
        from google.protobuf.message import DecodeError  # noqa: PLC0415

        with blob.open() as fh:
            data = fh.read()
        try:
            model = onnx.load_model_from_string(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            yield ctx.finding("MLSEC-ONNX-002", blob, f"protobuf does not parse: {exc}", source="onnx")
            return
        for tensor, where in _tensors(model.graph, "graph"):
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            normalized = posixpath.normpath(location.replace("\\", "/"))
            if location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":") or normalized.startswith(".."):
                yield ctx.finding(
                    "MLSEC-ONNX-001",
                    blob,
                    f"tensor {tensor.name!r} in {where} reads external data from {location!r}",
                    facts={"tensor": tensor.name, "location": location},
                    source="onnx",
                )


def _tensors(graph: Any, where: str) -> Iterator[tuple[Any, str]]:
    for tensor in graph.initializer:
        yield tensor, where
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t, f"{where}/{node.name or node.op_type}"
            if attr.HasField("g"):
                yield from _tensors(attr.g, f"{where}/{node.name or node.op_type}")
            for sub in attr.graphs:
                yield from _tensors(sub, f"{where}/{node.name or node.op_type}")

"""ONNX models read with `onnx` (never run): every graph, nested graph and local function is walked.

What is checked: external-data locations (absolute, `..`, symlinks and devices beside the model),
operator domains against an allowlist and operators that call back into Python (rules lists in
rules/models.toml), local functions that shadow standard operators, tensors whose declared shape
and bytes disagree, and onnx.checker's verdict. Facts for the ML-BOM go onto the artifact.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
import stat
from collections.abc import Iterator
from typing import Any, ClassVar

from mlsec.artifacts import Blob
from mlsec.errors import LimitExceeded
from mlsec.findings import Finding
from mlsec.scanners.base import ScanContext

_SOURCE = "onnx"
_CHECKER_TENSOR = re.compile(r"tensor name: ([^)\s]+)\s*\)")
_MAX_ELEMENTS = 1 << 40
_STANDARD_DOMAINS = ("", "ai.onnx")
# TensorProto.DataType -> bits per element (strings are variable; unknown types are not size-checked)
_BITS = {1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 14: 64, 15: 128, 16: 16}
_BITS.update({17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2, 26: 2})
# typed repeated field -> the data types whose elements it stores one per entry
_TYPED_FIELDS = {"float_data": (1,), "double_data": (11,), "int64_data": (7,), "uint64_data": (13, 12)}


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
            yield ctx.finding("MLSEC-ONNX-002", blob, f"protobuf does not parse: {exc}", source=_SOURCE)
            return
        bad = _not_utf8(model)
        if bad:  # protobuf hands such strings back as bytes; ONNX requires UTF-8 and loaders reject them
            yield ctx.finding("MLSEC-ONNX-002", blob, f"protobuf does not parse: string field {bad} is not UTF-8", source=_SOURCE)
            return
        count = sum(1 for _ in _nodes(model))
        if count > ctx.limits.max_onnx_nodes:
            raise LimitExceeded(
                "ONNX nodes (max_onnx_nodes)", ctx.limits.max_onnx_nodes, count, path=blob.path, member=blob.member_name
            )
        ctx.describe(blob, **_facts(model))
        known = ctx.ruleset.list("onnx_known_domains")["domains"]
        python_ops: dict[str, list[str]] = ctx.ruleset.list("onnx_python_operators")
        local = _local_domains(model)
        for where, node in _nodes(model):
            domain = node.domain or ""
            if node.op_type in python_ops.get(domain, ()):
                rule_id = "MLSEC-ONNX-004"
            elif domain not in known and domain not in local:
                rule_id = "MLSEC-ONNX-003"
            else:
                continue
            yield ctx.finding(
                rule_id,
                blob,
                f"{where}: node {_label(node)} is {domain}::{node.op_type}",
                facts={"domain": domain, "op_type": node.op_type, "where": where},
                source=_SOURCE,
            )
        for function in model.functions:
            if function.domain in _STANDARD_DOMAINS:
                yield ctx.finding(
                    "MLSEC-ONNX-005",
                    blob,
                    f"local function {function.name!r} is declared in the standard domain {function.domain or 'ai.onnx'!r}",
                    facts={"function": function.name, "domain": function.domain},
                    source=_SOURCE,
                )
        flagged: set[str] = set()
        for tensor, where in _tensors(model):
            for finding in _tensor(tensor, where, blob, ctx):
                flagged.add(tensor.name)
                yield finding
        try:
            onnx.checker.check_model(model)
        except (onnx.checker.ValidationError, ValueError) as exc:  # ValueError: the checker's own re-parse fails
            reason = str(exc).strip().splitlines()[0]
            named = _CHECKER_TENSOR.search(reason)
            if not (named and named.group(1) in flagged):  # that tensor is already reported, with more detail
                yield ctx.finding("MLSEC-ONNX-007", blob, reason, facts={"checker": str(exc).strip()[:500]}, source=_SOURCE)


def _not_utf8(message: Any) -> str | None:
    """The first string field (by full name) whose bytes are not UTF-8, anywhere in `message`."""
    todo = [message]
    while todo:
        current = todo.pop()
        for field, value in current.ListFields():
            repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == 3  # protobuf < 5.29
            values = value if repeated else (value,)
            if field.type == 9 and any(isinstance(v, bytes) for v in values):  # TYPE_STRING
                return str(field.full_name)
            if field.type == 11:  # TYPE_MESSAGE
                todo.extend(values)
    return None


def _facts(model: Any) -> dict[str, Any]:
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    return {
        "ir_version": model.ir_version,
        "opset": opsets.get("ai.onnx", 0),
        "opset_domains": ", ".join(f"{d}={v}" for d, v in sorted(opsets.items())),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": ", ".join(_value_info(v) for v in graph.input if v.name not in initializers),
        "outputs": ", ".join(_value_info(v) for v in graph.output),
        "parameters": sum(math.prod(t.dims) for t in graph.initializer if all(d >= 0 for d in t.dims)),
        "nodes": sum(1 for _ in _nodes(model)),
        "functions": len(model.functions),
    }


def _value_info(value: Any) -> str:
    from onnx import TensorProto  # noqa: PLC0415 - already imported by scan()

    tensor = value.type.tensor_type
    dims = ",".join(d.dim_param or str(d.dim_value) for d in tensor.shape.dim)
    kind = TensorProto.DataType.Name(tensor.elem_type).lower() if tensor.elem_type in _BITS or tensor.elem_type == 8 else "?"
    return f"{value.name}:{kind}[{dims}]"


def _label(node: Any) -> str:
    return repr(node.name) if node.name else "(unnamed)"


def _local_domains(model: Any) -> frozenset[str]:
    return frozenset(f.domain for f in model.functions)


def _nodes(model: Any) -> Iterator[tuple[str, Any]]:
    """Every node of the main graph, of subgraphs (If/Loop/Scan) and of local functions."""
    stack: list[tuple[str, Any]] = [("graph", n) for n in reversed(model.graph.node)]
    for function in reversed(model.functions):
        stack.extend((f"function {function.name}", n) for n in reversed(function.node))
    while stack:
        where, node = stack.pop()
        yield where, node
        here = f"{where}/{node.name or node.op_type}"
        for attr in node.attribute:
            for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
                stack.extend((here, n) for n in reversed(sub.node))


def _tensors(model: Any) -> Iterator[tuple[Any, str]]:
    """Every tensor: initializers of every graph (main and nested) and constant attributes of every node."""
    graphs: list[tuple[str, Any]] = [("graph", model.graph)]
    while graphs:
        where, graph = graphs.pop()
        for tensor in graph.initializer:
            yield tensor, where
        for node in graph.node:
            for attr in node.attribute:
                here = f"{where}/{node.name or node.op_type}"
                if attr.HasField("t"):
                    yield attr.t, here
                graphs.extend((here, sub) for sub in (*([attr.g] if attr.HasField("g") else []), *attr.graphs))
    for function in model.functions:
        for node in function.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t, f"function {function.name}/{node.name or node.op_type}"


def _tensor(tensor: Any, where: str, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
    if tensor.data_location == 1:  # TensorProto.EXTERNAL
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        problem = _external_problem(location, blob)
        if not blob.member:
            ctx.read_beside(blob, location)
        if problem:
            yield ctx.finding(
                "MLSEC-ONNX-001",
                blob,
                f"tensor {tensor.name!r} in {where} reads external data from {location!r}: {problem}",
                facts={"tensor": tensor.name, "location": location, "problem": problem},
                source=_SOURCE,
            )
        return
    problem = _size_problem(tensor)
    if problem:
        yield ctx.finding(
            "MLSEC-ONNX-006",
            blob,
            f"tensor {tensor.name!r} in {where}: {problem}",
            facts={"tensor": tensor.name, "where": where, "dims": str(list(tensor.dims)), "data_type": tensor.data_type},
            source=_SOURCE,
        )


def _external_problem(location: str, blob: Blob) -> str:
    normalized = posixpath.normpath(location.replace("\\", "/"))
    if location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":"):
        return "absolute path"
    if normalized.startswith(".."):
        return "climbs out of the model's directory"
    if blob.member:  # inside an archive: nothing on disk to look at
        return ""
    base = os.path.dirname(os.path.abspath(blob.path))
    target = os.path.join(base, normalized)
    if not os.path.lexists(target):
        return ""
    mode = os.lstat(target).st_mode
    if stat.S_ISLNK(mode):
        return f"a symbolic link to {os.readlink(target)!r}"
    if not stat.S_ISREG(mode):
        return "not a regular file (device, FIFO or socket)"
    if os.path.commonpath([os.path.realpath(target), os.path.realpath(base)]) != os.path.realpath(base):
        return "resolves outside the model's directory through a linked directory"
    return ""


def _size_problem(tensor: Any) -> str:
    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        return f"negative dimension in {dims}"
    elements = math.prod(dims)
    if elements > _MAX_ELEMENTS:
        return f"declares {elements:,} elements"
    bits = _BITS.get(tensor.data_type)
    if bits is None:
        return ""
    if tensor.HasField("raw_data"):
        expected = -(-elements * bits // 8)
        if len(tensor.raw_data) != expected:
            return f"shape {dims} needs {expected:,} bytes of raw data, has {len(tensor.raw_data):,}"
        return ""
    for field, types in _TYPED_FIELDS.items():
        if tensor.data_type in types:
            count = len(getattr(tensor, field))
            if count != elements:
                return f"shape {dims} needs {elements:,} values in {field}, has {count:,}"
    return ""

"""The slice of TensorFlow's protobuf schema that names a graph's operations, built at run time.

Field numbers are TensorFlow's (tensorflow/core/protobuf/saved_model.proto, meta_graph.proto,
framework/graph.proto, node_def.proto, function.proto, op_def.proto). Fields outside this slice
are skipped by the protobuf parser, so a SavedModel reads without TensorFlow installed.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_T = descriptor_pb2.FieldDescriptorProto
# message -> (field name, number, type, label, message type name or "")
_SCHEMA: dict[str, tuple[tuple[str, int, int, int, str], ...]] = {
    "SavedModel": (
        ("saved_model_schema_version", 1, _T.TYPE_INT64, _T.LABEL_OPTIONAL, ""),
        ("meta_graphs", 2, _T.TYPE_MESSAGE, _T.LABEL_REPEATED, "MetaGraphDef"),
    ),
    "MetaGraphDef": (
        ("meta_info_def", 1, _T.TYPE_MESSAGE, _T.LABEL_OPTIONAL, "MetaInfoDef"),
        ("graph_def", 2, _T.TYPE_MESSAGE, _T.LABEL_OPTIONAL, "GraphDef"),
    ),
    "MetaInfoDef": (
        ("meta_graph_version", 1, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),
        ("tags", 4, _T.TYPE_STRING, _T.LABEL_REPEATED, ""),
        ("tensorflow_version", 5, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),
    ),
    "GraphDef": (
        ("node", 1, _T.TYPE_MESSAGE, _T.LABEL_REPEATED, "NodeDef"),
        ("library", 2, _T.TYPE_MESSAGE, _T.LABEL_OPTIONAL, "FunctionDefLibrary"),
    ),
    "NodeDef": (
        ("name", 1, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),
        ("op", 2, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),
    ),
    "FunctionDefLibrary": (("function", 1, _T.TYPE_MESSAGE, _T.LABEL_REPEATED, "FunctionDef"),),
    "FunctionDef": (
        ("signature", 1, _T.TYPE_MESSAGE, _T.LABEL_OPTIONAL, "OpDef"),
        ("node_def", 3, _T.TYPE_MESSAGE, _T.LABEL_REPEATED, "NodeDef"),
    ),
    "OpDef": (("name", 1, _T.TYPE_STRING, _T.LABEL_OPTIONAL, ""),),
}
_PACKAGE = "mlsec.tfsubset"


@cache
def message_class(name: str) -> Any:
    """The generated class for one message of the subset (SavedModel, GraphDef, ...)."""
    proto = descriptor_pb2.FileDescriptorProto(name="mlsec_tfsubset.proto", package=_PACKAGE, syntax="proto3")
    for message, fields in _SCHEMA.items():
        msg = proto.message_type.add(name=message)
        for field_name, number, ftype, label, type_name in fields:
            field = msg.field.add(name=field_name, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))

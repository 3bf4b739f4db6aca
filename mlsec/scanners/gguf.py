"""GGUF (llama.cpp): header, metadata and tensor table read with bounds checks; chat templates parsed.

Malformed headers are how the known GGUF loader overflows work (huge counts and lengths, tensor
spans past the file), so every count is checked against the bytes that remain before it is used.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO, ClassVar

from mlsec.artifacts import Blob
from mlsec.findings import Finding
from mlsec.scanners.base import ScanContext

_SOURCE = "mlsec gguf"
_MAX_DIMS = 4  # GGML_MAX_DIMS
_MAX_STRING = 64 << 20
_MAX_ARRAY_DEPTH = 2
# value type -> struct code (8 string and 9 array are read specially)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
# ggml tensor type -> (name, elements per block, bytes per block)
_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}  # fmt: skip


class Malformed(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class _Reader:
    def __init__(self, fh: BinaryIO, size: int, version: int = 3) -> None:
        self.fh, self.size, self.pos = fh, size, 0
        self.count_code = "I" if version == 1 else "Q"  # GGUF v1 used 32-bit counts and lengths

    def take(self, n: int, what: str) -> bytes:
        if n > self.size - self.pos:
            raise Malformed(f"{what} needs {n:,} bytes but only {self.size - self.pos:,} remain", self.pos)
        data = self.fh.read(n)
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise Malformed(f"{what} needs {n:,} bytes but only {self.size - self.pos:,} remain", self.pos)
        self.pos += n
        self.fh.seek(self.pos)

    def unpack(self, code: str, what: str) -> Any:
        return struct.unpack("<" + code, self.take(struct.calcsize(code), what))[0]

    def count(self, what: str) -> int:
        return int(self.unpack(self.count_code, what))

    def string(self, what: str, limit: int = _MAX_STRING) -> str:
        start = self.pos
        n = self.count(f"length of {what}")
        if n > limit:
            raise Malformed(f"{what} claims {n:,} bytes (limit {limit:,})", start)
        return self.take(n, what).decode("utf-8", "replace")

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype], what)
        if vtype == 8:
            return self.string(what)
        if vtype == 9 and depth < _MAX_ARRAY_DEPTH:
            start = self.pos
            etype = self.unpack("I", f"element type of {what}")
            n = self.count(f"length of {what}")
            smallest = struct.calcsize(_SCALARS[etype]) if etype in _SCALARS else 8 if etype in (8, 9) else 1
            if n * smallest > self.size - self.pos:
                raise Malformed(f"{what} claims {n:,} elements, more than the file can hold", start)
            if etype in _SCALARS:
                self.skip(n * smallest, what)
                return f"<{n} x type {etype}>"
            return [self.value(etype, f"{what}[{i}]", depth + 1) for i in range(n)]
        raise Malformed(f"{what} has unknown value type {vtype}", self.pos - 4)


class GgufScanner:
    name: ClassVar[str] = "gguf"
    formats: ClassVar[frozenset[str]] = frozenset({"gguf"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        metadata: dict[str, Any] = {}
        with blob.open() as fh:
            try:
                facts = _parse(_Reader(fh, blob.size), metadata)
            except Malformed as exc:
                yield ctx.finding(
                    "MLSEC-GGUF-001",
                    blob,
                    f"at offset {exc.offset:,}: {exc}",
                    facts={"error": str(exc)},
                    source=_SOURCE,
                    offset=exc.offset,
                )
                facts = {}
        ctx.describe(blob, **facts)
        for key, value in metadata.items():
            if key == "tokenizer.chat_template" or key.startswith("tokenizer.chat_template."):
                from mlsec.scanners._jinja import template_findings  # noqa: PLC0415 - jinja2 only for a template

                yield from template_findings(key, value, blob, ctx, rules=("MLSEC-GGUF-002", "MLSEC-GGUF-003"), source=_SOURCE)


def _parse(r: _Reader, metadata: dict[str, Any]) -> dict[str, Any]:
    r.take(4, "magic")
    version = r.unpack("I", "version")
    if version not in (1, 2, 3):
        raise Malformed(f"unsupported GGUF version {version}", 4)
    r.count_code = "I" if version == 1 else "Q"
    n_tensors, n_kv = r.count("tensor count"), r.count("metadata count")
    if n_kv * 13 > r.size - r.pos or n_tensors * 24 > r.size - r.pos:
        raise Malformed(f"{n_tensors:,} tensors and {n_kv:,} metadata entries cannot fit in {r.size:,} bytes", 8)
    for i in range(n_kv):
        start = r.pos
        key = r.string(f"metadata key #{i}", 1 << 16)
        vtype = r.unpack("I", f"type of {key!r}")
        if key in metadata:
            raise Malformed(f"metadata key {key!r} appears twice", start)
        metadata[key] = r.value(vtype, repr(key))
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise Malformed(f"general.alignment {alignment!r} is not a power of two", 0)
    tensors: list[tuple[str, int, int, int]] = []
    names: set[str] = set()
    parameters = 0
    for i in range(n_tensors):
        start = r.pos
        name = r.string(f"tensor #{i} name", 1 << 16)
        n_dims = r.unpack("I", f"dimensions of {name!r}")
        if n_dims == 0 or n_dims > _MAX_DIMS:
            raise Malformed(f"tensor {name!r} has {n_dims} dimensions (1 to {_MAX_DIMS} allowed)", start)
        dims = [r.count(f"dimension of {name!r}") for _ in range(n_dims)]
        ttype = r.unpack("I", f"type of {name!r}")
        offset = r.unpack("Q", f"offset of {name!r}")
        if name in names:
            raise Malformed(f"tensor name {name!r} appears twice", start)
        names.add(name)
        if ttype not in _TYPES:
            raise Malformed(f"tensor {name!r} has unknown type {ttype}", start)
        elements = math.prod(dims)
        _, block, block_bytes = _TYPES[ttype]
        if elements >= 1 << 62 or elements % block:
            raise Malformed(f"tensor {name!r} shape {dims} does not fit type {_TYPES[ttype][0]}", start)
        if offset % alignment:
            raise Malformed(f"tensor {name!r} offset {offset:,} is not aligned to {alignment}", start)
        tensors.append((name, offset, elements // block * block_bytes, start))
        parameters += elements
    data_start = -(-r.pos // alignment) * alignment
    for name, offset, nbytes, start in tensors:
        if data_start + offset + nbytes > r.size:
            raise Malformed(
                f"tensor {name!r} spans bytes {data_start + offset:,}-{data_start + offset + nbytes:,} of a {r.size:,}-byte file",
                start,
            )
    return {
        "gguf_version": version,
        "architecture": str(metadata.get("general.architecture", "")),
        "model_name": str(metadata.get("general.name", "")),
        "tensors": n_tensors,
        "parameters": parameters,
        "metadata_entries": n_kv,
    }

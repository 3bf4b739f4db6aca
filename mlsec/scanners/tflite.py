"""TFLite models: the flatbuffer's tables and vectors walked with bounds checks, never interpreted.

Custom operators named Flex<Op> are TensorFlow ops run by the Flex delegate, so they are judged
by the TensorFlow op lists (rules/tensorflow.toml); any offset, length or buffer that points
outside the file is a malformed-model finding.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
from collections.abc import Iterator
from typing import ClassVar

from mlsec.artifacts import Blob
from mlsec.findings import Finding
from mlsec.scanners.base import ScanContext
from mlsec.scanners.tensorflow import judge_ops

_SCHEMA_VERSION = 3
_MAX_VECTOR = 1 << 24


class Malformed(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class _Flat:
    """Just enough of the flatbuffers wire format, with every read checked against the buffer."""

    def __init__(self, buf: bytes | mmap.mmap) -> None:
        self.buf, self.size = buf, len(buf)

    def _unpack(self, code: str, at: int, what: str) -> int:
        if at < 0 or at + struct.calcsize(code) > self.size:
            raise Malformed(f"{what} at offset {at:,} is outside the {self.size:,}-byte file", max(at, 0))
        return struct.unpack_from("<" + code, self.buf, at)[0]

    def root(self) -> int:
        return self._unpack("I", 0, "root table offset")

    def field(self, table: int, index: int) -> int | None:
        """Absolute position of field `index` of the table at `table`, or None when absent."""
        vtable = table - self._unpack("i", table, "vtable offset")
        vsize = self._unpack("H", vtable, "vtable size")
        slot = 4 + 2 * index
        if slot + 2 > vsize:
            return None
        rel = self._unpack("H", vtable + slot, "field offset")
        return table + rel if rel else None

    def scalar(self, table: int, index: int, code: str, default: int = 0) -> int:
        at = self.field(table, index)
        return default if at is None else self._unpack(code, at, f"field {index}")

    def indirect(self, at: int) -> int:
        return at + self._unpack("I", at, "offset")

    def vector(self, table: int, index: int, what: str) -> tuple[int, int]:
        """(start of elements, length) of a vector field; (0, 0) when absent."""
        at = self.field(table, index)
        if at is None:
            return 0, 0
        start = self.indirect(at)
        length = self._unpack("I", start, f"length of {what}")
        if length > _MAX_VECTOR or start + 4 + length > self.size:
            raise Malformed(f"{what} claims {length:,} elements at offset {start:,}", start)
        return start + 4, length

    def string(self, table: int, index: int, what: str) -> str:
        start, length = self.vector(table, index, what)
        return bytes(self.buf[start : start + length]).decode("utf-8", "replace") if start else ""

    def tables(self, table: int, index: int, what: str) -> Iterator[int]:
        start, length = self.vector(table, index, what)
        if start and start + 4 * length > self.size:
            raise Malformed(f"{what} runs past the end of the file", start)
        for i in range(length):
            yield self.indirect(start + 4 * i)


class TfliteScanner:
    name: ClassVar[str] = "tflite"
    formats: ClassVar[frozenset[str]] = frozenset({"tflite"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        with blob.open() as fh, _buffer(fh) as buf:
            try:
                custom, facts = _read(_Flat(buf))
            except Malformed as exc:
                yield ctx.finding(
                    "MLSEC-TFLITE-001",
                    blob,
                    f"at offset {exc.offset:,}: {exc}",
                    facts={"error": str(exc)},
                    source="mlsec tflite",
                    offset=exc.offset,
                )
                return
        ctx.describe(blob, **facts)
        flex = [(name.removeprefix("Flex"), "operator codes") for name in custom if name.startswith("Flex")]
        yield from judge_ops(flex, blob, ctx, kind="TFLite model (Flex delegate)")


@contextlib.contextmanager
def _buffer(fh: object) -> Iterator[bytes | mmap.mmap]:
    """The file mapped read-only when it is a real file (large models), else its bytes."""
    try:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        yield fh.read()  # type: ignore[attr-defined]
        return
    with mapped:
        yield mapped


def _read(flat: _Flat) -> tuple[list[str], dict[str, object]]:
    model = flat.root()
    version = flat.scalar(model, 0, "I")
    if version != _SCHEMA_VERSION:
        raise Malformed(f"schema version {version} (TFLite reads version {_SCHEMA_VERSION})", model)
    custom = []
    codes = 0
    for code in flat.tables(model, 1, "operator_codes"):
        codes += 1
        name = flat.string(code, 1, "custom_code")
        if name:
            custom.append(name)
    subgraphs = sum(1 for _ in flat.tables(model, 2, "subgraphs"))
    for i, buffer in enumerate(flat.tables(model, 4, "buffers")):
        flat.vector(buffer, 0, f"buffer {i} data")
        offset, size = flat.scalar(buffer, 1, "Q"), flat.scalar(buffer, 2, "Q")
        if offset > 1 and offset + size > flat.size:
            raise Malformed(f"buffer {i} spans bytes {offset:,}-{offset + size:,} of a {flat.size:,}-byte file", offset)
    facts = {
        "tflite_schema_version": version,
        "operator_codes": codes,
        "custom_ops": ", ".join(sorted(set(custom))),
        "subgraphs": subgraphs,
        "description": flat.string(model, 3, "description")[:200],
    }
    return custom, facts

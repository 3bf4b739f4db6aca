"""NumPy .npy files (and .npz members): object arrays carry a pickle after the header."""

from __future__ import annotations

import ast
import math
import re
import struct
from collections.abc import Iterator
from typing import ClassVar

from mlsec.artifacts import Blob
from mlsec.errors import InputError
from mlsec.findings import Finding
from mlsec.scanners.base import ScanContext
from mlsec.scanners.pickle import analyze_stream

_MAX_HEADER = 1 << 20
# The header numpy writes for a plain array, `repr` of its dict: read by a pattern, not ast.literal_eval (a
# fifth of a small .npy's scan). Only this exact form: any other header is literal_eval's, as before.
_DIM = "(?:0|[1-9][0-9]*)"  # as Python writes an int (literal_eval refuses 064)
_CANONICAL = re.compile(  # shape: (), (N,) or (N, N[, N...][,]): (N) is an int, not a tuple
    rf"\{{'descr': '([<>|=]?[a-zA-Z][0-9]*)', 'fortran_order': (False|True), 'shape': \(({_DIM},|{_DIM}(?:, {_DIM})+,?)?\), \}} *\n?"
)


class NumpyScanner:
    name: ClassVar[str] = "numpy"
    formats: ClassVar[frozenset[str]] = frozenset({"numpy"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        with blob.open() as stream:
            prefix = stream.read(8)
            major = prefix[6] if len(prefix) == 8 else 0
            if major not in (1, 2, 3):
                raise InputError(f"unsupported .npy version {major}", path=blob.path, member=blob.member_name)
            width = "<H" if major == 1 else "<I"
            raw_len = stream.read(struct.calcsize(width))
            if len(raw_len) != struct.calcsize(width):
                raise InputError("truncated .npy header", path=blob.path, member=blob.member_name)
            (length,) = struct.unpack(width, raw_len)
            if length > _MAX_HEADER:
                raise InputError(f".npy header of {length} bytes is implausible", path=blob.path, member=blob.member_name)
            text = stream.read(length).decode("latin-1")
            try:
                header = _header(text)
                descr = header["descr"]
            except (ValueError, SyntaxError, KeyError, TypeError) as exc:
                raise InputError(f"malformed .npy header: {exc}", path=blob.path, member=blob.member_name) from None
            offset = 8 + len(raw_len) + length
            if "O" in str(descr):
                # allow_pickle=True loads run this pickle: judge it like any other.
                yield from analyze_stream(stream, blob, ctx, base_offset=offset)
            else:
                _check_size(header, blob, blob.size - offset)


def _header(text: str) -> dict:
    """The header's dict, as ast.literal_eval reads it."""
    canonical = _CANONICAL.fullmatch(text)
    if canonical is None:
        return ast.literal_eval(text)
    descr, fortran, dims = canonical.groups()
    return {"descr": descr, "fortran_order": fortran == "True", "shape": tuple(int(d) for d in (dims or "").split(",") if d)}


# The plain dtype strings numpy writes for bool, integer, float and complex arrays, and their item sizes:
# these are read without importing numpy (66 ms in every worker process); any other dtype asks numpy.
_PLAIN_DTYPES = {f"{kind}{size}": size for kind, sizes in
                 {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8), "c": (8, 16)}.items() for size in sizes}  # fmt: skip


def _itemsize(descr: object) -> int:
    if isinstance(descr, str) and descr[:1] in ("<", ">", "|", "=") and descr[1:] in _PLAIN_DTYPES:
        return _PLAIN_DTYPES[descr[1:]]
    import numpy as np  # noqa: PLC0415 - only for the dtypes above does the scan do without numpy

    return np.dtype(descr).itemsize  # type: ignore[call-overload]


def _check_size(header: dict, blob: Blob, available: int) -> None:
    """A numeric array's shape and dtype must account for exactly the bytes after the header."""
    shape = header.get("shape")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InputError(f"malformed .npy header: shape {shape!r}", path=blob.path, member=blob.member_name)
    try:
        itemsize = _itemsize(header["descr"])
    except (TypeError, ValueError, SyntaxError) as exc:  # numpy reads some dtype strings with ast (fuzz/run.py numpy)
        raise InputError(
            f"malformed .npy header: dtype {header['descr']!r}: {exc}", path=blob.path, member=blob.member_name
        ) from None
    declared = math.prod(shape) * itemsize
    if declared != available:
        raise InputError(
            f".npy header declares shape {shape} of {itemsize}-byte items ({declared:,} bytes); the file holds {available:,}",
            path=blob.path,
            member=blob.member_name,
        )

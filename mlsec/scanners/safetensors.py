"""safetensors: a JSON header and raw tensor bytes. Data only, so every finding is a structural lie.

Checked as the reference implementation validates (header bounds, dtype x shape = byte span,
spans contiguous and inside the buffer), plus what it lets through: bytes that no tensor covers
(a place to hide a second file) and `__metadata__` values that are serialized Python objects.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import math
from collections.abc import Generator, Iterator
from typing import Any, BinaryIO, ClassVar

from mlsec import formats
from mlsec.artifacts import Blob
from mlsec.findings import Finding, Severity
from mlsec.scanners.base import ScanContext
from mlsec.scanners.pickle import analyze

MAX_HEADER = 100_000_000  # the reference implementation's limit
_SOURCE = "mlsec safetensors"
# dtype -> bits per element, as in the safetensors specification.
_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16,
    "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64, "C64": 64, "F4": 4,
    "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip


class SafetensorsScanner:
    name: ClassVar[str] = "safetensors"
    formats: ClassVar[frozenset[str]] = frozenset({"safetensors"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        with blob.open() as fh:
            header, problem = _read_header(fh, blob.size, min(MAX_HEADER, ctx.limits.max_header_bytes))
            if problem:
                yield ctx.finding("MLSEC-SAFETENSORS-001", blob, problem, source=_SOURCE, offset=0)
                return
            assert header is not None
            buffer_start = 8 + int.from_bytes(_peek(fh, 0, 8), "little")
            buffer_len = blob.size - buffer_start
            metadata = header.pop("__metadata__", None)
            yield from _metadata(metadata, blob, ctx)
            spans = yield from _tensors(header, buffer_len, buffer_start, blob, ctx)
            yield from _coverage(spans, buffer_len, buffer_start, fh, blob, ctx)
        params = sum(n for _, _, n in spans.values())
        ctx.describe(blob, tensors=len(header), parameters=params)


def _peek(fh: BinaryIO, offset: int, n: int) -> bytes:
    fh.seek(offset)
    return fh.read(n)


def _read_header(fh: BinaryIO, size: int, limit: int) -> tuple[dict[str, Any] | None, str]:
    if size < 8:
        return None, f"file is {size} bytes: too short for the 8-byte header length"
    length = int.from_bytes(_peek(fh, 0, 8), "little")
    if length > limit:
        return None, f"header length {length:,} exceeds the {limit:,}-byte limit"
    if 8 + length > size:
        return None, f"header length {length:,} runs past the end of the {size:,}-byte file"
    raw = fh.read(length)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"header is not UTF-8: {exc}"
    if not text.startswith("{"):
        return None, "header does not start with '{'"
    duplicates: list[str] = []

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                duplicates.append(key)
            seen[key] = value
        return seen

    try:
        header = json.loads(text, object_pairs_hook=no_duplicates)
    except ValueError as exc:
        return None, f"header is not valid JSON: {exc}"
    if duplicates:
        # Parsers disagree on which duplicate wins: two readers would see two different models.
        return None, f"header repeats key(s) {', '.join(sorted(set(duplicates)))!r}"
    if not isinstance(header, dict):
        return None, "header is not a JSON object"
    return header, ""


def _metadata(metadata: Any, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
    if metadata is None:
        return
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        yield ctx.finding("MLSEC-SAFETENSORS-001", blob, "__metadata__ must map strings to strings", source=_SOURCE)
        return
    for key, value in metadata.items():
        embedded = _embedded_pickle(value)
        if embedded is None:
            continue
        own, analysis = analyze(io.BytesIO(embedded), blob, ctx, member=blob.member_name)
        worst = max((f.severity for f in own), default=Severity.INFO)
        imports = sorted({f"{e.module}.{e.name}" for e in analysis.imports})
        yield ctx.finding(
            "MLSEC-SAFETENSORS-005",
            blob,
            f"__metadata__[{key!r}] holds a pickle ({len(embedded):,} bytes) importing {', '.join(imports) or 'nothing'}",
            facts={"key": key, "pickle_bytes": len(embedded), "imports": ", ".join(imports), "pickle_verdict": worst.label},
            source=_SOURCE,
        )


def _embedded_pickle(value: str) -> bytes | None:
    """The bytes of a pickle stored as a metadata string (raw latin-1 or base64), else None."""
    candidates = [value.encode("latin-1", "ignore")]
    compact = value.strip()
    if len(compact) >= 8:
        with contextlib.suppress(binascii.Error, ValueError):
            candidates.append(base64.b64decode(compact, validate=True))
    for raw in candidates:
        if len(raw) >= 4 and raw[0] == 0x80 and 2 <= raw[1] <= 5 and raw.endswith(b"."):
            return raw
    return None


def _tensors(
    header: dict[str, Any], buffer_len: int, buffer_start: int, blob: Blob, ctx: ScanContext
) -> Generator[Finding, None, dict[str, tuple[int, int, int]]]:
    """Findings per tensor entry; returns {name: (begin, end, elements)} for the consistent ones."""
    spans: dict[str, tuple[int, int, int]] = {}

    def out_of_range(summary: str, facts: dict[str, Any]) -> Finding:
        offset = buffer_start + int(facts["begin"])
        return ctx.finding("MLSEC-SAFETENSORS-003", blob, summary, facts=facts, source=_SOURCE, offset=offset)

    for name, entry in header.items():
        problem = _entry_problem(entry)
        if problem:
            yield ctx.finding(
                "MLSEC-SAFETENSORS-002", blob, f"tensor {name!r}: {problem}", facts={"tensor": name}, source=_SOURCE
            )
        if not _valid_offsets(entry):
            continue
        begin, end = entry["data_offsets"]
        elements = 0 if problem else math.prod(entry["shape"])
        if end > buffer_len:
            summary = f"tensor {name!r} spans bytes {begin:,}-{end:,} of a {buffer_len:,}-byte buffer"
            yield out_of_range(summary, {"tensor": name, "begin": begin, "end": end, "buffer_bytes": buffer_len})
            elements = 0
        spans[name] = (begin, end, elements)
    ordered = sorted(spans.items(), key=lambda item: item[1][:2])
    for (first, (_, first_end, _)), (second, (begin, end, _)) in zip(ordered, ordered[1:], strict=False):
        if begin < first_end and end > begin:
            summary = f"tensors {first!r} and {second!r} share bytes {begin:,}-{min(first_end, end):,}"
            yield out_of_range(summary, {"tensor": second, "overlaps": first, "begin": begin, "end": end})
    return spans


def _entry_problem(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "entry is not an object"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _BITS:
        return f"unknown dtype {dtype!r}"
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        return f"shape {shape!r} is not a list of non-negative integers"
    if not _valid_offsets(entry):
        return f"data_offsets {offsets!r} is not [begin, end] with 0 <= begin <= end"
    bits = math.prod(shape) * _BITS[dtype]
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        return f"{dtype} {shape} needs {bits / 8:g} bytes but data_offsets span {offsets[1] - offsets[0]:,}"
    return ""


def _valid_offsets(entry: Any) -> bool:
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    return (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
        and offsets[0] <= offsets[1]
    )


def _coverage(
    spans: dict[str, tuple[int, int, int]], buffer_len: int, buffer_start: int, fh: BinaryIO, blob: Blob, ctx: ScanContext
) -> Iterator[Finding]:
    """Bytes no tensor covers: the reference loader refuses them; other readers would not notice them."""
    cursor, holes = 0, []
    for begin, end, _ in sorted(spans.values()):
        begin, end = min(begin, buffer_len), min(end, buffer_len)
        if begin > cursor:
            holes.append((cursor, begin))
        cursor = max(cursor, end)
    if buffer_len > cursor:
        holes.append((cursor, buffer_len))
    for begin, end in holes:
        head = _peek(fh, buffer_start + begin, min(4096, end - begin))
        hidden = formats.sniff(head, last_byte=_peek(fh, buffer_start + end - 1, 1))
        yield ctx.finding(
            "MLSEC-SAFETENSORS-004",
            blob,
            f"{end - begin:,} bytes at buffer offset {begin:,} belong to no tensor (they look like: {hidden})",
            facts={"begin": begin, "end": end, "hidden_format": hidden},
            source=_SOURCE,
            offset=buffer_start + begin,
        )

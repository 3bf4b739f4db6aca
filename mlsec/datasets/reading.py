"""Tabular datasets as a stream of pandas DataFrames (strings kept as strings), whatever the file size.

CSV/TSV and JSON Lines through pandas' chunked readers, Parquet and Arrow through pyarrow's batch
readers: memory is bounded by the chunk, never by the file. Parquet/Arrow schema metadata is read
first, because that is where pickled Python objects hide.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from mlsec.errors import LimitExceeded
from mlsec.limits import ScanLimits

CHUNK_ROWS = 50_000


@dataclass
class SchemaMetadata:
    """key -> raw bytes, from the file's schema and each field's metadata."""

    entries: list[tuple[str, bytes]] = field(default_factory=list)


def metadata(fmt: str, fh: BinaryIO) -> SchemaMetadata:
    import pyarrow as pa  # noqa: PLC0415 - heavy, lazy
    import pyarrow.parquet as pq  # noqa: PLC0415

    if fmt == "parquet":
        schema = pq.ParquetFile(fh).schema_arrow
    elif fmt == "arrow":
        schema = pa.ipc.open_file(fh).schema
    elif fmt == "arrow-stream":
        schema = pa.ipc.open_stream(fh).schema
    else:
        return SchemaMetadata()
    found = SchemaMetadata()
    for key, value in (schema.metadata or {}).items():
        found.entries.append((f"schema:{key.decode('utf-8', 'replace')}", value))
    for f in schema:
        for key, value in (f.metadata or {}).items():
            found.entries.append((f"field {f.name}:{key.decode('utf-8', 'replace')}", value))
    return found


class BoundedLines(io.RawIOBase):
    """A text-format stream that stops (LimitExceeded) at a line longer than `max_bytes` or with more than
    `max_fields` fields, before a parser allocates it: pandas' tokenizer holds a whole line, at about
    240 bytes a field. Only lines that span reads can be that long, so each read costs two counts."""

    def __init__(self, raw: BinaryIO, max_bytes: int, max_fields: int | None, sep: bytes = b",") -> None:
        self._raw, self._max_bytes, self._max_fields, self._sep = raw, max_bytes, max_fields, sep
        self._line_bytes = self._line_fields = 0
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._raw.read(min(len(buffer), 1 << 20))
        first, last = chunk.find(b"\n"), chunk.rfind(b"\n")
        head_end = len(chunk) if first < 0 else first
        self._grow(head_end, chunk.count(self._sep, 0, head_end) if self._max_fields else 0)
        if first >= 0:  # a new line starts after the last newline of this read
            self._line_bytes = self._line_fields = 0
            tail = len(chunk) - last - 1
            self._grow(tail, chunk.count(self._sep, last + 1) if self._max_fields else 0)
        self._offset += len(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def _grow(self, n_bytes: int, n_seps: int) -> None:
        self._line_bytes += n_bytes
        self._line_fields += n_seps
        if self._line_bytes > self._max_bytes:
            raise LimitExceeded("line bytes (max_line_bytes)", self._max_bytes, self._line_bytes, member=None)
        if self._max_fields and self._line_fields + 1 > self._max_fields:
            raise LimitExceeded("fields in one line (max_row_fields)", self._max_fields, self._line_fields + 1, member=None)


def chunks(fmt: str, fh: BinaryIO, limits: ScanLimits | None = None) -> Iterator[Any]:
    """DataFrames of up to CHUNK_ROWS rows (numeric columns parsed by pandas' C reader, the rest text)."""
    import pandas as pd  # noqa: PLC0415 - heavy, lazy

    limits = limits or ScanLimits()
    if fmt in ("csv", "tsv", "jsonl"):
        sep = b"\t" if fmt == "tsv" else b","
        fh = io.BufferedReader(BoundedLines(fh, limits.max_line_bytes, None if fmt == "jsonl" else limits.max_row_fields, sep))
    if fmt in ("csv", "tsv"):
        reader = pd.read_csv(
            fh,
            sep="\t" if fmt == "tsv" else ",",
            keep_default_na=False,  # "NA" and "null" stay text; only empty cells are missing
            na_values=[""],
            chunksize=CHUNK_ROWS,
            encoding_errors="replace",
            on_bad_lines="warn",
            engine="c",
        )
        yield from reader
    elif fmt == "jsonl":
        yield from pd.read_json(fh, lines=True, dtype=False, chunksize=CHUNK_ROWS)
    elif fmt == "parquet":
        import pyarrow.parquet as pq  # noqa: PLC0415

        for batch in pq.ParquetFile(fh).iter_batches(batch_size=CHUNK_ROWS):
            yield batch.to_pandas()
    elif fmt in ("arrow", "arrow-stream"):
        import pyarrow as pa  # noqa: PLC0415

        if fmt == "arrow":
            reader = pa.ipc.open_file(fh)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i).to_pandas()
        else:
            for batch in pa.ipc.open_stream(fh):
                yield batch.to_pandas()

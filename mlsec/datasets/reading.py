"""Tabular datasets as a stream of pandas DataFrames (strings kept as strings), whatever the file size.

CSV/TSV and JSON Lines through pandas' chunked readers, Parquet and Arrow through pyarrow's batch
readers: memory is bounded by the chunk, never by the file. Parquet/Arrow schema metadata is read
first, because that is where pickled Python objects hide.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

CHUNK_ROWS = 50_000
MAX_FIELD_BYTES = 64 << 20  # a single CSV field larger than this is an error, not an allocation


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


def chunks(fmt: str, fh: BinaryIO) -> Iterator[Any]:
    """DataFrames of up to CHUNK_ROWS rows (numeric columns parsed by pandas' C reader, the rest text)."""
    import pandas as pd  # noqa: PLC0415 - heavy, lazy

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

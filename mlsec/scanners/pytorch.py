"""PyTorch checkpoints: the zip layout (its pickles reach pickle.py as members) and legacy files."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import ClassVar

from mlsec.artifacts import Blob
from mlsec.findings import Finding
from mlsec.scanners.base import ScanContext
from mlsec.scanners.pickle import analyze_stream


class PyTorchScanner:
    name: ClassVar[str] = "pytorch"
    formats: ClassVar[frozenset[str]] = frozenset({"pytorch-zip", "pytorch-legacy"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        if blob.format == "pytorch-legacy":
            # magic, protocol, sys_info, the object, the storage keys: five pickles, then raw data.
            with blob.open() as stream:
                yield from analyze_stream(stream, blob, ctx)
            return
        with blob.open() as fh, zipfile.ZipFile(fh) as zf:
            records = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(records) > 1:
            yield ctx.finding(
                "MLSEC-PYTORCH-001",
                blob,
                f"{len(records)} data.pkl records: {', '.join(records[:5])}",
                facts={"records": len(records)},
                source="mlsec pytorch",
            )

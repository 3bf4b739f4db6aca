"""Single compressed streams (gzip, bz2, xz, lzma, zlib, lz4, zstd): one member, bounded expansion."""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Iterator
from typing import Any

from mlsec.artifacts import Blob
from mlsec.inputs.events import Anomaly, MemberData
from mlsec.limits import ScanLimits
from mlsec.report import ScanError

_CHUNK = 1 << 20


def _decompressor(fmt: str) -> Any:
    if fmt == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if fmt == "zlib":
        return zlib.decompressobj()
    if fmt == "bz2":
        return bz2.BZ2Decompressor()
    if fmt in ("xz", "lzma"):
        return lzma.LZMADecompressor()
    if fmt == "lz4":
        import lz4.frame  # noqa: PLC0415 - optional

        return lz4.frame.LZ4FrameDecompressor()
    if fmt == "zstd":
        from backports import zstd  # noqa: PLC0415 - optional (py7zr brings it)

        return zstd.ZstdDecompressor()
    raise NotImplementedError(fmt)


def members(blob: Blob, limits: ScanLimits) -> Iterator[MemberData | Anomaly | ScanError]:
    where = blob.member_name
    try:
        dec = _decompressor(blob.format)
    except (ImportError, NotImplementedError) as exc:
        yield ScanError(blob.path, f"cannot decompress {blob.format}: {exc}", where, "inputs.compressed", type(exc).__name__)
        return
    limit = limits.max_member_in_memory
    out: list[bytes] = []
    total = 0
    try:
        with blob.open() as fh:
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    break
                piece = dec.decompress(chunk)
                total += len(piece)
                if total > limit:
                    yield Anomaly(
                        "MLSEC-ARCHIVE-005",
                        blob.path,
                        where,
                        f"{blob.format} stream expands past {limit} bytes (from {blob.size})",
                        {"compressed_size": blob.size, "limit": limit},
                        blob.sha256,
                    )
                    return
                out.append(piece)
                if getattr(dec, "eof", False):
                    break
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, RuntimeError) as exc:
        yield ScanError(
            blob.path,
            f"{blob.format} stream is corrupt after {total} bytes: {exc}",
            where,
            "inputs.compressed",
            type(exc).__name__,
        )
        if not out:
            return
    data = b"".join(out)
    if not getattr(dec, "eof", True):
        yield ScanError(
            blob.path, f"{blob.format} stream is truncated after {total} bytes", where, "inputs.compressed", "EOFError"
        )
    name = blob.path.rsplit("/", 1)[-1] if not blob.member else blob.member[-1].rsplit("/", 1)[-1]
    yield MemberData(f"{name}:{blob.format}-payload", data)

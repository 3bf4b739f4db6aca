"""Single compressed streams (gzip, bz2, xz, lzma, zlib, lz4, zstd): one member, bounded expansion.

Output is pulled in bounded steps (`max_length`), so a bomb is caught by its ratio before it
takes memory.
"""

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

_IN_CHUNK = 64 << 10
_OUT_STEP = 1 << 20


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


def _pieces(dec: Any, chunk: bytes) -> Iterator[bytes]:
    """Everything `chunk` decompresses to, at most _OUT_STEP bytes at a time."""
    if hasattr(dec, "unconsumed_tail"):  # zlib
        data = chunk
        while data and not dec.eof:
            piece = dec.decompress(data, _OUT_STEP)
            yield piece
            data = dec.unconsumed_tail
            if not piece and not data:
                break
        return
    yield dec.decompress(chunk, _OUT_STEP)
    while not getattr(dec, "needs_input", True) and not dec.eof:
        yield dec.decompress(b"", _OUT_STEP)


def members(blob: Blob, limits: ScanLimits) -> Iterator[MemberData | Anomaly | ScanError]:
    where = blob.member_name
    try:
        dec = _decompressor(blob.format)
    except (ImportError, NotImplementedError) as exc:
        yield ScanError(blob.path, f"cannot decompress {blob.format}: {exc}", where, "inputs.compressed", type(exc).__name__)
        return
    out: list[bytes] = []
    total = consumed = 0
    try:
        with blob.open() as fh:
            while not dec.eof and (chunk := fh.read(_IN_CHUNK)):
                consumed += len(chunk)
                for piece in _pieces(dec, chunk):
                    total += len(piece)
                    bomb = total > limits.ratio_floor and total > limits.max_ratio * consumed
                    if bomb or total > limits.max_member_in_memory:
                        yield Anomaly(
                            "MLSEC-ARCHIVE-005",
                            blob.path,
                            where,
                            f"{blob.format} stream expanded {consumed} bytes into more than {total}; not unpacked further",
                            {"compressed_read": consumed, "expanded": total, "max_ratio": limits.max_ratio},
                            blob.sha256,
                        )
                        return
                    out.append(piece)
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
    else:
        if not dec.eof:
            yield ScanError(
                blob.path, f"{blob.format} stream is truncated after {total} bytes", where, "inputs.compressed", "EOFError"
            )
    name = blob.member[-1] if blob.member else blob.path
    yield MemberData(f"{name.rsplit('/', 1)[-1]}:{blob.format}-payload", b"".join(out))

"""Zip members, read the tolerant way loaders read them (torch.load ignores CRCs), with anomalies."""

from __future__ import annotations

import bz2
import lzma
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from mlsec.artifacts import Blob
from mlsec.formats import is_torch_storage
from mlsec.inputs.events import Anomaly, MemberData, unsafe_name
from mlsec.limits import ScanLimits
from mlsec.report import ScanError

_LOCAL = struct.Struct("<4s5H3I2H")
# What zipfile raises on hostile bytes besides BadZipFile (found by fuzz/run.py zip): unknown "zip file
# version" (NotImplementedError), short extra fields (IndexError, struct.error), names that do not decode.
UNREADABLE = (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, IndexError, struct.error)


def members(blob: Blob, limits: ScanLimits) -> Iterator[MemberData | Anomaly | ScanError]:
    with blob.open() as fh:
        try:
            zf = zipfile.ZipFile(fh)
        except UNREADABLE as exc:
            yield ScanError(blob.path, f"unreadable zip: {exc}", blob.member_name, "inputs.zip", type(exc).__name__)
            return
        with zf:
            yield from _members(zf, fh, blob, limits)


def _members(zf: zipfile.ZipFile, fh: BinaryIO, blob: Blob, limits: ScanLimits) -> Iterator[MemberData | Anomaly | ScanError]:
    infos = zf.infolist()
    is_torch = blob.format == "pytorch-zip"
    where = blob.member_name
    seen: set[str] = set()

    def anomaly(rule_id: str, summary: str, **facts: str | int) -> Anomaly:
        return Anomaly(rule_id, blob.path, where, summary, facts, blob.sha256)

    if len(infos) > limits.max_members:
        yield anomaly(
            "MLSEC-ARCHIVE-007", f"{len(infos)} members; only the first {limits.max_members} were read", members=len(infos)
        )
        infos = infos[: limits.max_members]
    for info in infos:
        name = info.filename
        if name in seen:
            yield anomaly("MLSEC-ARCHIVE-010", f"member {name!r} appears more than once", member_name=name)
        seen.add(name)
        bad = unsafe_name(name)
        if bad:
            yield anomaly(bad, f"member name {name!r} escapes the archive", member_name=name)
        mode = info.external_attr >> 16
        if info.create_system == 3 and stat.S_ISLNK(mode):
            yield anomaly("MLSEC-ARCHIVE-003", f"member {name!r} is a symbolic link", member_name=name)
            continue
        if name.endswith("/"):  # ZipInfo.is_dir() fails on an empty name (fuzz/run.py zip)
            continue
        if info.flag_bits & 0x1:
            yield anomaly("MLSEC-ARCHIVE-011", f"member {name!r} is encrypted", member_name=name)
            continue
        if is_torch and is_torch_storage(name):
            continue  # raw tensor bytes: covered by the container's hash, never parsed
        if info.file_size > limits.ratio_floor and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            yield anomaly(
                "MLSEC-ARCHIVE-005",
                f"member {name!r} claims {info.file_size} bytes from {info.compress_size}",
                member_name=name,
                declared_size=info.file_size,
                compressed_size=info.compress_size,
            )
            continue
        if info.file_size > limits.max_member_in_memory:
            yield ScanError(
                blob.path,
                f"member {name!r} ({info.file_size} bytes) exceeds the in-memory limit",
                where,
                "inputs.zip",
                "LimitExceeded",
            )
            continue
        try:
            data, local_name = _read(fh, info, limits.max_member_in_memory)
        except _TooBig:
            yield anomaly(
                "MLSEC-ARCHIVE-005", f"member {name!r} expands past {limits.max_member_in_memory} bytes", member_name=name
            )
            continue
        except (*UNREADABLE, zlib.error, lzma.LZMAError) as exc:
            yield ScanError(blob.path, f"member {name!r}: {exc}", where, "inputs.zip", type(exc).__name__)
            continue
        if local_name is not None and local_name != info.orig_filename:
            yield anomaly(
                "MLSEC-ARCHIVE-009",
                f"central directory says {name!r}, local header says {local_name!r}",
                member_name=name,
                local_name=local_name,
            )
        if zlib.crc32(data) != info.CRC:
            yield anomaly("MLSEC-ARCHIVE-008", f"member {name!r} does not match its CRC-32", member_name=name)
        yield MemberData(name, data)


class _TooBig(Exception):
    pass


def _read(fh: BinaryIO, info: zipfile.ZipInfo, limit: int) -> tuple[bytes, str | None]:
    """Member bytes from its local header on, whatever the CRC says; and the local header's name."""
    fh.seek(info.header_offset)
    header = fh.read(_LOCAL.size)
    if len(header) != _LOCAL.size or header[:4] != b"PK\x03\x04":
        raise ValueError("local file header missing or truncated")
    fields = _LOCAL.unpack(header)
    name_len, extra_len = fields[9], fields[10]
    raw_name = fh.read(name_len)
    fh.seek(extra_len, 1)
    local_name = raw_name.decode("utf-8" if fields[2] & 0x800 else "cp437", "replace")
    compressed = fh.read(info.compress_size)
    if len(compressed) != info.compress_size:
        raise ValueError(f"truncated: {len(compressed)} of {info.compress_size} compressed bytes")
    method = info.compress_type
    if method == zipfile.ZIP_STORED:
        data = compressed
    elif method == zipfile.ZIP_DEFLATED:
        dec = zlib.decompressobj(-15)
        data = dec.decompress(compressed, limit + 1)
    elif method == zipfile.ZIP_BZIP2:
        dec2 = bz2.BZ2Decompressor()
        data = dec2.decompress(compressed, limit + 1)
    elif method == zipfile.ZIP_LZMA:
        # zip's LZMA: 2 version bytes, 2-byte properties size, properties, then raw LZMA1 data.
        psize = struct.unpack("<H", compressed[2:4])[0]
        filters = [lzma._decode_filter_properties(lzma.FILTER_LZMA1, compressed[4 : 4 + psize])]  # type: ignore[attr-defined]
        dec3 = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
        data = dec3.decompress(compressed[4 + psize :], limit + 1)
    else:
        raise NotImplementedError(f"compression method {method} is not supported")
    if len(data) > limit:
        raise _TooBig
    return data, local_name

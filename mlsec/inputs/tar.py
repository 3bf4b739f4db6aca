"""Tar members (plain; compressed tars arrive here already decompressed), with link and name checks."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator

from mlsec.artifacts import Blob
from mlsec.inputs.events import Anomaly, MemberData, printable, unsafe_name
from mlsec.limits import ScanLimits
from mlsec.report import ScanError

# What Python's tarfile raises on a malformed archive: its own errors, and (found by fuzzing) IndexError from a
# short sparse header, OverflowError from a pax length past ssize_t, ValueError (UnicodeDecodeError) from names.
TAR_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, IndexError, OverflowError)


def members(blob: Blob, limits: ScanLimits) -> Iterator[MemberData | Anomaly | ScanError]:
    where = blob.member_name

    def anomaly(rule_id: str, summary: str, **facts: str | int) -> Anomaly:
        return Anomaly(rule_id, blob.path, where, summary, facts, blob.sha256)

    with blob.open() as fh:
        try:
            tf = tarfile.open(fileobj=fh, mode="r:", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115 - closed with the stream
        except TAR_ERRORS as exc:
            yield ScanError(blob.path, f"unreadable tar: {exc}", where, "inputs.tar", type(exc).__name__)
            return
        count = 0
        seen: set[str] = set()
        try:
            for info in tf:
                count += 1
                if count > limits.max_members:
                    yield anomaly("MLSEC-ARCHIVE-007", f"more than {limits.max_members} members; the rest were not read")
                    break
                name = printable(info.name)
                if name in seen and not info.isdir():
                    yield anomaly("MLSEC-ARCHIVE-010", f"member {name!r} appears more than once", member_name=name)
                seen.add(name)
                bad = unsafe_name(name)
                if bad:
                    yield anomaly(bad, f"member name {name!r} escapes the archive", member_name=name)
                if info.issym() or info.islnk():
                    kind = "symbolic" if info.issym() else "hard"
                    yield anomaly(
                        "MLSEC-ARCHIVE-003",
                        f"member {name!r} is a {kind} link to {printable(info.linkname)!r}",
                        member_name=name,
                        target=printable(info.linkname),
                    )
                    continue
                if info.ischr() or info.isblk() or info.isfifo():
                    yield anomaly("MLSEC-ARCHIVE-004", f"member {name!r} is a device or FIFO", member_name=name)
                    continue
                if not info.isreg():
                    continue
                if info.size > limits.max_member_in_memory:
                    yield ScanError(
                        blob.path,
                        f"member {name!r} ({info.size} bytes) exceeds the in-memory limit",
                        where,
                        "inputs.tar",
                        "LimitExceeded",
                    )
                    continue
                stream = tf.extractfile(info)
                if stream is None:
                    continue
                data = stream.read(info.size)
                if len(data) != info.size:
                    yield ScanError(
                        blob.path,
                        f"member {name!r} is truncated ({len(data)} of {info.size} bytes)",
                        where,
                        "inputs.tar",
                        "EOFError",
                    )
                yield MemberData(name, data)
        except TAR_ERRORS as exc:
            yield ScanError(
                blob.path, f"tar stops being readable after {count} members: {exc}", where, "inputs.tar", type(exc).__name__
            )

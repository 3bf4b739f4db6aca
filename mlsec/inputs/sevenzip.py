"""7z members through py7zr, each written into a bounded in-memory buffer."""

from __future__ import annotations

from collections.abc import Iterator

from mlsec.artifacts import Blob
from mlsec.inputs.events import Anomaly, MemberData, printable, unsafe_name
from mlsec.limits import ScanLimits
from mlsec.report import ScanError


def members(blob: Blob, limits: ScanLimits) -> Iterator[MemberData | Anomaly | ScanError]:
    import py7zr  # noqa: PLC0415 - optional heavy import, only for 7z inputs
    from py7zr.io import Py7zIO, WriterFactory  # noqa: PLC0415

    where = blob.member_name

    class _Bounded(Py7zIO):
        def __init__(self) -> None:
            self.chunks: list[bytes] = []
            self.total = 0
            self.overflow = False

        def write(self, s: bytes | bytearray) -> int:
            self.total += len(s)
            if self.total > limits.max_member_in_memory:
                self.overflow = True
            else:
                self.chunks.append(bytes(s))
            return len(s)

        def read(self, size: int | None = None) -> bytes:
            return b""

        def seek(self, offset: int, whence: int = 0) -> int:
            return 0

        def flush(self) -> None:
            return None

        def size(self) -> int:
            return self.total

    class _Factory(WriterFactory):
        def __init__(self) -> None:
            self.products: dict[str, _Bounded] = {}

        def create(self, filename: str) -> Py7zIO:
            self.products[filename] = _Bounded()
            return self.products[filename]

    with blob.open() as fh:
        try:
            archive = py7zr.SevenZipFile(fh, mode="r")
            infos = archive.list()
        except Exception as exc:  # py7zr raises many unrelated types on hostile input
            yield ScanError(blob.path, f"unreadable 7z: {exc}", where, "inputs.7z", type(exc).__name__)
            return
        with archive:
            names: list[str] = []
            for info in infos[: limits.max_members]:
                name = info.filename
                bad = unsafe_name(name)
                if bad:
                    yield Anomaly(
                        bad, blob.path, where, f"member name {name!r} escapes the archive", {"member_name": name}, blob.sha256
                    )
                if info.is_directory:
                    continue
                if info.uncompressed > limits.max_member_in_memory:
                    yield ScanError(
                        blob.path,
                        f"member {name!r} ({info.uncompressed} bytes) exceeds the in-memory limit",
                        where,
                        "inputs.7z",
                        "LimitExceeded",
                    )
                    continue
                names.append(name)
            if len(infos) > limits.max_members:
                yield Anomaly(
                    "MLSEC-ARCHIVE-007",
                    blob.path,
                    where,
                    f"{len(infos)} members; only {limits.max_members} were read",
                    {},
                    blob.sha256,
                )
            factory = _Factory()
            try:
                archive.extract(targets=names, factory=factory)
            except Exception as exc:  # noqa: BLE001 - reported as an error with its type
                yield ScanError(blob.path, f"7z extraction failed: {exc}", where, "inputs.7z", type(exc).__name__)
            for name in names:
                product = factory.products.get(name)
                if product is None:
                    continue
                if product.overflow:
                    yield Anomaly(
                        "MLSEC-ARCHIVE-005",
                        blob.path,
                        where,
                        f"member {name!r} expands past the in-memory limit",
                        {"member_name": name},
                        blob.sha256,
                    )
                    continue
                yield MemberData(printable(name), b"".join(product.chunks))

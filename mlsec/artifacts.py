"""What a scan read: Artifact (a report record) and Blob (its bytes, only while scanning)."""

from __future__ import annotations

import enum
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

from mlsec.findings import JSONScalar


class ArtifactKind(enum.Enum):
    MODEL = "model"
    DATASET = "dataset"
    IMAGE = "image"
    DEPENDENCIES = "dependencies"  # a manifest: requirements, lock file, METADATA
    PACKAGE = "package"  # one dependency a manifest names (no bytes were read: sha256 may be None)
    ARCHIVE = "archive"
    SERVING = "serving"  # one resource of a serving manifest (KServe, Seldon, a Deployment): facts, no file of its own
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Artifact:
    """One file or archive member that was read and hashed."""

    path: str
    kind: ArtifactKind
    format: str
    sha256: str | None
    size: int
    member: str | None = None
    parent_sha256: str | None = None
    facts: Mapping[str, JSONScalar] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Blob:
    """The bytes of one artifact during a scan.

    `data` holds them when they were read into memory (archive members); otherwise `opener`
    reopens the file, so a large file is never held in memory whole.
    """

    path: str
    member: tuple[str, ...]
    format: str
    size: int
    sha256: str
    data: bytes | None = None
    opener: Callable[[], BinaryIO] | None = None
    parent_sha256: str | None = None
    depth: int = 0

    @property
    def member_name(self) -> str | None:
        return " → ".join(self.member) if self.member else None

    @property
    def display(self) -> str:
        return f"{self.path} [{self.member_name}]" if self.member else self.path

    def open(self) -> BinaryIO:
        """A fresh binary stream over the blob, positioned at 0."""
        if self.data is not None:
            return io.BytesIO(self.data)
        if self.opener is None:
            raise ValueError(f"{self.display}: blob has neither data nor opener")
        return self.opener()

    def head(self, n: int = 4096) -> bytes:
        if self.data is not None:
            return self.data[:n]
        with self.open() as fh:
            return fh.read(n)

"""Python dependencies: manifests read into Dependency records, an offline OSV database, matching."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NORMALIZE = re.compile(r"[-_.]+")


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: the name an index and OSV's PyPI ecosystem use."""
    return _NORMALIZE.sub("-", name).lower().strip()


@dataclass(frozen=True, slots=True)
class Dependency:
    """One requirement as a manifest states it."""

    name: str  # canonical (PEP 503)
    specifier: str  # "==2.31.0", ">=1.0,<2", "" (anything)
    version: str | None  # the one version it pins (== or ===), else None
    source: str  # the manifest path (and `-r` chain) it came from
    line: int | None = None
    url: str | None = None  # direct reference (name @ url, VCS, local path)
    markers: str = ""
    hashes: tuple[str, ...] = ()  # "sha256:..." from --hash
    extras: tuple[str, ...] = field(default_factory=tuple)

    @property
    def purl(self) -> str:
        return f"pkg:pypi/{self.name}@{self.version}" if self.version else f"pkg:pypi/{self.name}"

    @property
    def kind(self) -> str:
        """pinned, range, unpinned, vcs or url."""
        if self.url:
            return "vcs" if re.match(r"^(git|hg|svn|bzr)\+", self.url) else "url"
        if self.version:
            return "pinned"
        return "range" if self.specifier else "unpinned"


@dataclass(frozen=True, slots=True)
class Manifest:
    """What one manifest file says: its dependencies and the index options it sets."""

    path: str
    format: str
    dependencies: tuple[Dependency, ...]
    extra_index_urls: tuple[str, ...] = ()
    index_url: str | None = None
    problems: tuple[str, ...] = ()  # lines or includes that could not be read

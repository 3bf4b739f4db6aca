"""The result cache: what a file's scan found, kept so an unchanged file is never scanned twice.

Two tables in one SQLite file (`$MLSEC_CACHE_DIR`, else `$XDG_CACHE_HOME/mlsec`, else `~/.cache/mlsec`):

- `files`: a file's absolute path and its stat fingerprint (device, inode, size, mtime and ctime in
  nanoseconds) → the sha256 of its bytes when it had that fingerprint. This is the "one stat per file"
  of a warm re-scan; `paranoid` re-hashes the bytes instead of trusting it.
- `results`: key → the unit's findings, artifacts and skips as JSON (never pickle: the cache is data).
  The key is the sha256 of the file's bytes, its path as reported, its provenance facts, and the context
  that decides a result: the tool's code and library versions, the rules digest, the limits, the
  vulnerability database's identity, the image options and the dataset reference.

A unit is stored only when it is self-contained and complete: no errors, no scanner read a file beside it
(ScanContext.read_beside), not an image directory. Concurrent runs share the file safely (WAL, a busy
timeout, idempotent writes); a damaged cache is set aside with a warning, never a failed scan.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from mlsec import __version__
from mlsec.inputs import Unit, fingerprint, hash_file
from mlsec.inputs.events import printable
from mlsec.scan_unit import Collected, ScanSettings, provenance_key
from mlsec.user_dirs import cache_dir

log = logging.getLogger(__name__)
CACHE_NAME = "results.sqlite"
COMMIT_SECONDS = 0.25  # results are written this often while a scan runs, and when it ends
_LIBRARIES = ("fickling", "modelscan", "onnx", "numpy", "pyarrow", "pandas", "h5py", "jinja2", "packaging", "protobuf")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (path BLOB PRIMARY KEY, fingerprint TEXT NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, report TEXT NOT NULL, stored_at REAL NOT NULL);
"""


@lru_cache(maxsize=1)
def code_digest() -> str:
    """The scanner version: mlsec's own source files and the versions of the libraries that read formats."""
    h = hashlib.sha256(__version__.encode())
    h.update(sources_digest(Path(__file__).resolve().parent).encode())
    versions = installed_versions(_LIBRARIES)
    for name in _LIBRARIES:
        h.update(f"{name}=={versions[name]}".encode() if name in versions else f"{name} absent".encode())
    return h.hexdigest()


def sources_digest(package: Path) -> str:
    """The `.py` files under `package`, each by its path and stat fingerprint (device, inode, size, mtime and
    ctime), as the warm re-scan knows a file unchanged: an edit changes the ctime, which cannot be set back.
    Reading and hashing their bytes instead cost every command 6 ms."""
    found: list[str] = []
    root = len(str(package)) + 1
    folders = [str(package)]
    while folders:
        with os.scandir(folders.pop()) as listing:
            for entry in listing:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        folders.append(entry.path)
                elif entry.name.endswith(".py"):
                    try:
                        print_ = fingerprint(entry.stat())
                    except OSError as exc:  # a dangling link: named by its error, as it stands
                        print_ = f"unreadable {exc.errno}"
                    found.append(f"{entry.path[root:]}\0{print_}")
    return hashlib.sha256("\n".join(sorted(found)).encode()).hexdigest()


def installed_versions(names: tuple[str, ...]) -> dict[str, str]:
    """The installed version of each distribution in `names` (those installed), as importlib.metadata finds
    it: the first `NAME-VERSION.dist-info` on sys.path, names compared normalised. Read from directory
    listings because importlib.metadata's import and METADATA parsing cost every scan 15 ms; a name found
    no such way (an egg, a zip) is asked of importlib.metadata after all."""
    wanted = {_normalised(n): n for n in names}
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            listing = os.listdir(entry or ".")
        except OSError:
            continue
        for item in listing:
            if item.endswith(".dist-info"):
                name, _, version = item[: -len(".dist-info")].partition("-")
                original = wanted.get(_normalised(name))
                if original and original not in found and version:
                    found[original] = version
    for name in (n for n in names if n not in found):
        import importlib.metadata  # noqa: PLC0415 - the rare case

        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def _normalised(name: str) -> str:
    return name.replace("-", "_").replace(".", "_").lower()


def context_key(settings: ScanSettings) -> str:
    """Everything besides a file's bytes, path and provenance that decides its scan result."""
    doc = {
        "code": code_digest(),
        "rules": settings.ruleset.digest,
        "limits": dataclasses.asdict(settings.limits),
        "vulndb": _identity(settings.vulndb_path),
        "images": dataclasses.asdict(settings.image_options),
        "reference": _identity(settings.reference_path),
        "label_column": settings.label_column,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _identity(path: Path | None) -> list[object] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return [str(path), "absent"]
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino]


def _fingerprint_of(path: str) -> str | None:
    try:
        return fingerprint(os.stat(path))
    except OSError:
        return None


class ResultCache:
    """The cache in `directory` (default: mlsec's cache directory, user_dirs.cache_dir())."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory else cache_dir()
        self.path = self.directory / CACHE_NAME

    def connect(self) -> sqlite3.Connection | None:
        """A connection, or None (with a warning) when the cache cannot be used; a damaged file is set aside."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            return self._open()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                log.warning("result cache %s is busy; scanning without it", self.path)
                return None
            aside = self.path.with_name(f"{CACHE_NAME}.damaged-{int(time.time())}")
            log.warning("result cache %s is damaged (%s); moved to %s and started afresh", self.path, exc, aside.name)
            self.path.replace(aside)
            return self._open()
        except OSError as exc:
            log.warning("result cache %s cannot be used (%s); scanning without it", self.path, exc)
            return None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        return db

    def session(self, settings: ScanSettings, *, paranoid: bool = False, jobs: int = 1) -> Session | None:
        db = self.connect()
        return Session(db, context_key(settings), paranoid=paranoid, jobs=jobs) if db else None

    def stats(self) -> dict[str, int]:
        """Entries and bytes on disk (for `mlsec cache info`)."""
        if not self.path.exists():
            return {"files": 0, "results": 0, "bytes": 0}
        db = self.connect()
        if db is None:
            return {"files": 0, "results": 0, "bytes": 0}
        with db:
            files = db.execute("SELECT count(*) FROM files").fetchone()[0]
            results = db.execute("SELECT count(*) FROM results").fetchone()[0]
        db.close()
        size = sum(p.stat().st_size for p in self.directory.glob(f"{CACHE_NAME}*") if p.is_file())
        return {"files": files, "results": results, "bytes": size}

    def clear(self) -> int:
        """Remove the cache files; returns how many were removed."""
        removed = 0
        for leftover in self.directory.glob(f"{CACHE_NAME}*"):
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed


class Session:
    """One scan's use of the cache: look units up before the scan, store them as they finish (written a second
    at a time, and when the scan ends)."""

    def __init__(self, db: sqlite3.Connection, context: str, *, paranoid: bool, jobs: int) -> None:
        self.db, self.context, self.paranoid, self.jobs = db, context, paranoid, jobs
        self._seen: dict[str, tuple[bytes, str]] = {}  # unit path → (absolute path as bytes, fingerprint) before the scan
        self._files: list[tuple[bytes, str, str]] = []  # rows stored since the last commit
        self._results: list[tuple[str, str, float]] = []
        self._since_commit = time.monotonic()

    def lookup(self, units: Mapping[int, Unit]) -> dict[int, Collected]:
        """The units whose result is cached, by index; the rest are remembered for `store`. The fingerprint the
        walk took stands for the file (no other system call), unless `paranoid`. A cache that cannot be read
        (locked past the timeout by another run) answers nothing: every unit is scanned."""
        try:
            return self._lookup(units)
        except sqlite3.Error as exc:
            log.warning("result cache could not be read (%s); scanning every file", exc)
            return {}

    def _lookup(self, units: Mapping[int, Unit]) -> dict[int, Collected]:
        files = {i: u for i, u in units.items() if u.kind == "file"}
        here = os.getcwd()  # os.path.abspath asks for it again for every relative path
        for unit in files.values():
            print_ = unit.fingerprint or _fingerprint_of(unit.path)
            if print_:
                self._seen[unit.path] = (os.fsencode(os.path.normpath(os.path.join(here, unit.path))), print_)
        if self.paranoid:
            from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - only to re-hash (1.5 ms of every scan)

            with ThreadPoolExecutor(self.jobs) as pool:  # hashlib releases the GIL: this reads at disk speed
                digests = dict(zip(files, pool.map(_sha256_or_none, [u.path for u in files.values()]), strict=True))
            known = {i: d for i, d in digests.items() if d}
        else:
            recorded = self._rows("SELECT path, fingerprint, sha256 FROM files WHERE path IN ({})", [
                seen[0] for u in files.values() if (seen := self._seen.get(u.path))
            ])  # fmt: skip
            known = {}
            for i, unit in files.items():
                seen = self._seen.get(unit.path)
                row = recorded.get(seen[0]) if seen else None
                if row and row[0] == seen[1]:
                    known[i] = row[1]
        keys = {i: self._key(files[i], digest) for i, digest in known.items()}
        stored = self._rows("SELECT key, report FROM results WHERE key IN ({})", list(keys.values()))
        hits = {}
        for i, key in keys.items():
            hit = _decode(stored[key][0]) if key in stored else None
            if hit is not None:
                hit.sha256 = known[i]
                hits[i] = hit
        return hits

    def _rows(self, query: str, keys: list) -> dict:
        """`query` (one `IN ({})`) over `keys` in chunks: first column → the rest."""
        found: dict = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            for row in self.db.execute(query.format(",".join("?" * len(chunk))), chunk):
                found[row[0]] = row[1:]
        return found

    def store(self, unit: Unit, collected: Collected) -> None:
        if unit.kind != "file" or not collected.cacheable or collected.sha256 is None or unit.path not in self._seen:
            return
        absolute, print_ = self._seen[unit.path]
        try:
            entry = collected.cache_entry or collected.encode()
            key = self._key(unit, collected.sha256, collected.provenance or provenance_key(unit.path))
        except ValueError as exc:  # UnicodeError, a report that will not serialise
            log.warning("result cache: could not store %s: %s", unit.path, exc)
            return
        self._files.append((absolute, print_, collected.sha256))
        self._results.append((key, entry, time.time()))
        if time.monotonic() - self._since_commit > COMMIT_SECONDS:  # other runs may write too: hold the lock briefly
            self._commit()

    def close(self) -> None:
        self._commit()
        self.db.close()

    def _commit(self) -> None:
        """The rows stored since the last commit, in one transaction (a statement each, not two per file)."""
        files, results = self._files, self._results
        self._files, self._results = [], []
        self._since_commit = time.monotonic()
        if not results:
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?)", files)
            self.db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", results)
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            log.warning("result cache: could not store %d result(s): %s", len(results), exc)
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the cache is only a cache: the scan goes on
                    self.db.execute("ROLLBACK")

    def _key(self, unit: Unit, sha256: str, facts: str | None = None) -> str:
        shown = printable(unit.path)
        facts = facts if facts is not None else provenance_key(unit.path)
        return hashlib.sha256(f"{self.context}\0{shown}\0{sha256}\0{facts}".encode()).hexdigest()


def _decode(text: str) -> Collected | None:
    try:
        return Collected.decode(text)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("result cache: an entry could not be read (%s); scanning again", exc)
        return None


def _sha256_or_none(path: str) -> str | None:
    try:
        return hash_file(path)
    except OSError:
        return None

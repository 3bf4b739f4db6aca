"""The offline vulnerability database: OSV records imported into one SQLite file.

Sources: osv-scanner's layout (`<dir>/PyPI/all.zip`), any zip of OSV JSON records, and directories
of OSV JSON or YAML records (such as the PyPA advisory database). Only PyPI records are kept, one
row per affected package. The database's date is its newest record's `modified`: that is how
fresh the knowledge is, whatever day it was imported.
"""

from __future__ import annotations

import json
import os
import sqlite3
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlsec import user_dirs
from mlsec.dependencies import canonical_name
from mlsec.errors import InputError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (id TEXT NOT NULL, package TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (id, package));
"""


@dataclass(frozen=True, slots=True)
class ImportSummary:
    path: str
    records: int
    packages: int
    withdrawn: int
    skipped_files: tuple[str, ...]
    newest: str


def import_records(source: Path, target: Path | None = None) -> ImportSummary:
    """Replace the database at `target` (default: user_dirs.vulndb_path()) with the PyPI records under `source`."""
    target = target or user_dirs.vulndb_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".importing")
    tmp.unlink(missing_ok=True)
    rows: dict[tuple[str, str], str] = {}
    skipped: list[str] = []
    withdrawn, newest = 0, ""
    for _where, record in _records(source, skipped):
        packages = {
            canonical_name(str(a.get("package", {}).get("name", "")))
            for a in record.get("affected", []) or []
            if isinstance(a, dict) and (a.get("package") or {}).get("ecosystem") == "PyPI"
        }
        if not record.get("id") or not packages:
            continue
        withdrawn += bool(record.get("withdrawn"))
        newest = max(newest, str(record.get("modified", "")))
        text = json.dumps(record, default=str, separators=(",", ":"))
        for package in packages:
            rows[(str(record["id"]), package)] = text
    with sqlite3.connect(tmp) as db:
        db.executescript(_SCHEMA)
        db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", [(i, p, r) for (i, p), r in rows.items()])
        meta = {
            "source": str(source),
            "imported_at": _now(),
            "newest_modified": newest,
            "records": str(len({i for i, _ in rows})),
        }
        db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        db.execute("CREATE INDEX IF NOT EXISTS by_package ON records (package)")
    os.replace(tmp, target)
    return ImportSummary(str(target), len({i for i, _ in rows}), len({p for _, p in rows}), withdrawn, tuple(skipped), newest)


def _records(source: Path, skipped: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    if not source.exists():
        raise InputError("no such file or directory", path=str(source))
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise InputError("not a zip of OSV records nor a directory", path=str(source))
        yield from _zip_records(source, skipped)
        return
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix == ".zip":
            yield from _zip_records(path, skipped)
        elif path.is_file() and path.suffix in (".json", ".yaml", ".yml"):
            record = _parse(path.read_bytes(), path.suffix, str(path), skipped)
            if record is not None:
                yield str(path), record


def _zip_records(path: Path, skipped: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.endswith((".json", ".yaml", ".yml")) or info.file_size > 16 << 20:
                continue
            record = _parse(zf.read(info), Path(info.filename).suffix, f"{path}:{info.filename}", skipped)
            if record is not None:
                yield f"{path}:{info.filename}", record


def _parse(raw: bytes, suffix: str, where: str, skipped: list[str]) -> dict[str, Any] | None:
    import yaml  # noqa: PLC0415 - only an import of YAML records needs it; every scan imports this module

    try:
        # BaseLoader keeps every scalar a string: version 2.10 stays "2.10", never the float 2.1
        doc = json.loads(raw) if suffix == ".json" else yaml.load(raw, Loader=getattr(yaml, "CBaseLoader", yaml.BaseLoader))  # noqa: S506
    except (ValueError, yaml.YAMLError) as exc:
        skipped.append(f"{where}: {type(exc).__name__}")
        return None
    if not isinstance(doc, dict):
        skipped.append(f"{where}: not an OSV record")
        return None
    return doc


def _now() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


class VulnDB:
    """Read-only access to an imported database."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise InputError("no vulnerability database here", path=str(path), hint="import one: mlsec db import DIR_OR_ZIP")
        self.path = path
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        try:
            self.meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise InputError(f"not an mlsec vulnerability database: {exc}", path=str(path)) from None

    def records(self, package: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT record FROM records WHERE package = ?", (package,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    @property
    def date(self) -> str:
        """The newest record's modification date (YYYY-MM-DD): how fresh the knowledge is."""
        return self.meta.get("newest_modified", "")[:10]

    def age_days(self, today: datetime | None = None) -> int | None:
        if not self.date:
            return None
        today = today or datetime.now(UTC)
        return (today.date() - datetime.strptime(self.date, "%Y-%m-%d").date()).days

    @property
    def name(self) -> str:
        return f"OSV offline ({self.meta.get('records', '?')} PyPI records, newest {self.date or '?'}, {self.path})"

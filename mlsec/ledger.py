"""The audit ledger: every scan, signature and gate decision, appended to a hash chain.

Each entry records who (the user or CI identity), what (artifact digests, the tool's version, the
rules and policies digests) and the result. Its `hash` is the sha256 of its canonical JSON, which
includes the previous entry's hash, so editing, deleting or reordering any entry breaks every hash
after it; `verify()` finds the first break. Removing entries from the end leaves a shorter valid
chain: compare with a head you kept (`verify(expect_head=...)`, the head of a signed export, or the
one printed in a CI log).

Storage is one SQLite file (no server), or a PostgreSQL database for a team (`postgresql://...`,
with the `postgres` extra). An append takes the store's write lock first (SQLite's `BEGIN IMMEDIATE`,
a PostgreSQL transaction-scoped advisory lock), reads the head and inserts under it, so concurrent
writers (two CI jobs) queue instead of forking the chain; `seq` is the primary key, so a second entry
at the same position cannot exist.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import socket
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlsec import __version__
from mlsec.errors import MlsecError

GENESIS = "0" * 64
_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    tool TEXT NOT NULL,
    subjects TEXT NOT NULL,
    digests TEXT NOT NULL,
    result TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
)
"""
_COLUMNS = "seq, at, kind, actor, tool, subjects, digests, result, prev_hash, hash"


class LedgerError(MlsecError):
    """The ledger cannot be opened or written, or its chain is broken."""


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    at: str
    kind: str  # scan | gate | sign | verify | evaluate | promote
    actor: str
    tool: str
    subjects: Mapping[str, str]  # what the entry is about: path -> sha256
    digests: Mapping[str, str]  # rules_digest, policies_digest, report_sha256...
    result: Mapping[str, Any]  # verdict, counts, exit code
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class Verification:
    entries: int
    head: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def default_path() -> Path:
    """$MLSEC_LEDGER, else ledger.sqlite3 in the user's data directory."""
    if os.environ.get("MLSEC_LEDGER"):
        return Path(os.environ["MLSEC_LEDGER"])
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "mlsec" / "ledger.sqlite3"


def actor() -> str:
    """Who is acting: $MLSEC_ACTOR, else the CI's identity (GitHub Actions, GitLab CI), else user@host."""
    env = os.environ
    if env.get("MLSEC_ACTOR"):
        return env["MLSEC_ACTOR"]
    if env.get("GITHUB_ACTIONS") == "true":
        run = f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env.get('GITHUB_REPOSITORY', '')}/actions/runs/{env.get('GITHUB_RUN_ID', '')}"
        return f"github:{env.get('GITHUB_ACTOR', '?')} via {env.get('GITHUB_WORKFLOW_REF') or env.get('GITHUB_WORKFLOW', '?')} ({run})"
    if env.get("GITLAB_CI") == "true":
        return f"gitlab:{env.get('GITLAB_USER_LOGIN', '?')} via {env.get('CI_PROJECT_PATH', '?')} ({env.get('CI_JOB_URL', '')})"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "?"
    return f"{user}@{socket.gethostname()}"


class Ledger:
    """One ledger: a SQLite file path, or a `postgresql://` URL. Safe to share between processes, not threads."""

    def __init__(self, location: str | Path) -> None:
        self.location = str(location)
        if self.location.startswith(("postgresql://", "postgres://")):
            self._store: _Store = _Postgres(self.location)
        else:
            self._store = _SQLite(Path(location))

    @property
    def path(self) -> Path:
        return Path(self.location)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def append(
        self,
        kind: str,
        *,
        subjects: Mapping[str, str],
        digests: Mapping[str, str],
        result: Mapping[str, Any],
        who: str | None = None,
    ) -> Entry:
        """Add one entry at the head of the chain, atomically with respect to other writers."""

        def make(head: tuple[int, str] | None) -> Entry:
            seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
            body = {
                "seq": seq, "at": _now(), "kind": kind, "actor": who or actor(), "tool": f"mlsec {__version__}",
                "subjects": dict(subjects), "digests": dict(digests), "result": dict(result), "prev_hash": prev,
            }  # fmt: skip
            return Entry(**body, hash=entry_hash(body))

        return self._store.append(make)

    def entries(self, *, subject_sha256: str | None = None, since: str | None = None) -> Iterator[Entry]:
        """Entries in chain order; `subject_sha256` keeps those about that digest, `since` those at or after a date."""
        for raw in self._store.rows():
            entry = _entry(raw)
            if subject_sha256 and subject_sha256 not in entry.subjects.values():
                continue
            if since and entry.at < since:
                continue
            yield entry

    def verify(self, *, expect_head: str | None = None) -> Verification:
        """Recompute the chain; every edited, deleted or reordered entry is a problem, named by its position."""
        problems: list[str] = []
        prev, count, head = GENESIS, 0, GENESIS
        for raw in self._store.rows():
            count += 1
            try:
                entry = _entry(raw)
            except (ValueError, TypeError) as exc:
                problems.append(f"entry at position {count}: unreadable ({exc})")
                prev = head = str(raw[-1])
                continue
            if entry.seq != count:
                problems.append(f"entry {entry.seq}: found at position {count} (entries were deleted or renumbered)")
            if entry.prev_hash != prev:
                problems.append(f"entry {entry.seq}: does not follow the entry before it (deleted, inserted or reordered)")
            body = {k: v for k, v in entry.to_json().items() if k != "hash"}
            if entry_hash(body) != entry.hash:
                problems.append(f"entry {entry.seq}: its content does not match its hash (edited)")
            prev = head = entry.hash
        if expect_head and expect_head != head:
            problems.append(f"the head is {head[:16]}..., expected {expect_head[:16]}... (entries removed from the end?)")
        return Verification(count, head, tuple(problems))


class _Store:
    def append(self, make: Callable[[tuple[int, str] | None], Entry]) -> Entry: ...
    def rows(self) -> Iterator[tuple[Any, ...]]: ...
    def close(self) -> None: ...


class _SQLite(_Store):
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=60000")
            self._db.execute(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(f"cannot open the ledger: {exc}", path=str(path)) from None

    def append(self, make: Callable[[tuple[int, str] | None], Entry]) -> Entry:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                entry = make(self._db.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone())
                self._db.execute(f"INSERT INTO ledger ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _row(entry))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot append to the ledger: {exc}", path=str(self.path)) from None
        return entry

    def rows(self) -> Iterator[tuple[Any, ...]]:
        yield from self._db.execute(f"SELECT {_COLUMNS} FROM ledger ORDER BY seq")

    def close(self) -> None:
        self._db.close()


class _Postgres(_Store):
    _LOCK = 0x6D6C736563  # "mlsec": the advisory lock every writer of this database takes

    def __init__(self, url: str) -> None:
        try:
            import psycopg  # noqa: PLC0415 - the postgres extra
        except ImportError:
            raise LedgerError("a PostgreSQL ledger needs the postgres extra: pip install 'mlsec[postgres]'") from None
        self._errors = psycopg.Error
        self.where = re.sub(r"//[^/@]*@", "//", url)  # never a password in a message
        try:
            self._db = psycopg.connect(url, connect_timeout=10)
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (self._LOCK,))
                self._db.execute(_SCHEMA.replace("seq INTEGER", "seq BIGINT"))
        except psycopg.Error as exc:
            raise LedgerError(f"cannot open the ledger at {self.where}: {exc}") from None

    def append(self, make: Callable[[tuple[int, str] | None], Entry]) -> Entry:
        try:
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (self._LOCK,))
                entry = make(self._db.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone())
                self._db.execute(f"INSERT INTO ledger ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", _row(entry))
        except self._errors as exc:
            raise LedgerError(f"cannot append to the ledger at {self.where}: {exc}") from None
        return entry

    def rows(self) -> Iterator[tuple[Any, ...]]:
        with self._db.transaction():
            yield from self._db.execute(f"SELECT {_COLUMNS} FROM ledger ORDER BY seq").fetchall()

    def close(self) -> None:
        self._db.close()


def entry_hash(body: Mapping[str, Any]) -> str:
    """sha256 of the entry's canonical JSON (sorted keys, no spaces, UTF-8), `hash` itself excluded."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(canonical).hexdigest()


def _row(entry: Entry) -> tuple[Any, ...]:
    dump = lambda v: json.dumps(dict(v), sort_keys=True)  # noqa: E731
    return (entry.seq, entry.at, entry.kind, entry.actor, entry.tool, dump(entry.subjects), dump(entry.digests),
            dump(entry.result), entry.prev_hash, entry.hash)  # fmt: skip


def _entry(raw: tuple[Any, ...]) -> Entry:
    seq, at, kind, who, tool, subjects, digests, result, prev, digest = raw
    return Entry(int(seq), at, kind, who, tool, json.loads(subjects), json.loads(digests), json.loads(result), prev, digest)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

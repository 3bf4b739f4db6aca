"""`mlsec db import|info`: the offline vulnerability database dependencies are checked against."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from mlsec import user_dirs
from mlsec.dependencies.vulndb import VulnDB, import_records


@click.group("db")
def db_group() -> None:
    """Manage the offline vulnerability database (OSV records for PyPI)."""


_db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Database file (default: the user's data directory, or $MLSEC_VULNDB).",
)


@db_group.command("import")
@click.argument("source", type=click.Path(exists=True))
@_db_option
def import_command(source: str, db_path: str | None) -> None:
    """Import OSV records: an osv-scanner directory (PyPI/all.zip), a zip, or a directory of JSON/YAML records."""
    summary = import_records(Path(source), Path(db_path) if db_path else None)
    click.echo(
        f"imported {summary.records} PyPI records for {summary.packages} packages ({summary.withdrawn} withdrawn) "
        f"into {summary.path}; newest record {summary.newest[:10] or 'unknown'}"
    )
    for skipped in summary.skipped_files:
        click.echo(f"skipped {skipped}", err=True)


@db_group.command("info")
@_db_option
def info_command(db_path: str | None) -> None:
    """Say which database scans use, how many records it holds and how old it is."""
    db = VulnDB(Path(db_path) if db_path else user_dirs.vulndb_path())
    age = db.age_days(datetime.now(UTC))
    click.echo(f"{db.path}: {db.meta.get('records', '?')} records from {db.meta.get('source', '?')}")
    click.echo(f"imported {db.meta.get('imported_at', '?')}; newest record {db.date or '?'} ({age} days old)")

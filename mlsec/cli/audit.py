"""`mlsec audit log|verify|export`: read, check and hand over the audit ledger."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mlsec.cli.exit_codes import ExitCode
from mlsec.cli.writing import write_atomic
from mlsec.ledger import Ledger, default_path

ledger_path_option = click.option(
    "--ledger",
    "ledger_path",
    envvar="MLSEC_LEDGER",
    default=None,
    help="The ledger: a SQLite file or postgresql://... (default: $MLSEC_LEDGER, else ledger.sqlite3 in the user's data directory).",
)


def _open(ledger_path: str | None) -> Ledger:
    if ledger_path and ledger_path.startswith(("postgresql://", "postgres://")):
        return Ledger(ledger_path)
    path = Path(ledger_path) if ledger_path else default_path()
    if not path.is_file():
        raise click.UsageError(f"no ledger at {path} (append with --ledger FILE on scan, gate or sign)")
    return Ledger(path)


@click.group("audit")
def audit_group() -> None:
    """The audit ledger: every scan, gate decision and signature, hash-chained."""


@audit_group.command("log")
@ledger_path_option
@click.option("--artifact", "sha256", metavar="SHA256", help="Only entries about this artifact digest.")
@click.option("--since", metavar="DATE", help="Only entries at or after this date (ISO 8601, e.g. 2026-11-01).")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one entry per line.")
def log_command(ledger_path: str | None, sha256: str | None, since: str | None, as_json: bool) -> None:
    """Show ledger entries, oldest first."""
    with _open(ledger_path) as ledger:
        for entry in ledger.entries(subject_sha256=sha256, since=since):
            if as_json:
                sys.stdout.write(json.dumps(entry.to_json(), sort_keys=True, ensure_ascii=False) + "\n")
                continue
            what = ", ".join(f"{Path(p).name}@{d[:12]}" for p, d in list(entry.subjects.items())[:3])
            more = f" (+{len(entry.subjects) - 3})" if len(entry.subjects) > 3 else ""
            outcome = entry.result.get("verdict") or ("allowed" if entry.result.get("allowed") else "denied")
            if entry.kind == "sign":
                outcome = f"signed ({entry.result.get('method')})"
            click.echo(f"{entry.seq:>6}  {entry.at}  {entry.kind:<5} {outcome:<10} {entry.actor}  {what}{more}")


@audit_group.command("verify")
@ledger_path_option
@click.option("--expect-head", metavar="HASH", help="The head hash you kept (from a signed export or a CI log).")
@click.pass_context
def verify_command(ctx: click.Context, ledger_path: str | None, expect_head: str | None) -> None:
    """Recompute the hash chain; exit 0 when intact, 1 naming every edited, deleted or reordered entry."""
    with _open(ledger_path) as ledger:
        result = ledger.verify(expect_head=expect_head)
    if result.ok:
        click.echo(f"ledger intact: {result.entries} entries, head {result.head}")
        return
    for problem in result.problems:
        click.echo(f"mlsec: ledger BROKEN: {problem}", err=True)
    ctx.exit(int(ExitCode.BLOCKED))


@audit_group.command("export")
@ledger_path_option
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="JSON Lines file to write.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="Sign the export with this private key (PEM).")
@click.option("--keyless", is_flag=True, help="Sign the export through Sigstore with the CI's identity.")
def export_command(ledger_path: str | None, output: str, key: str | None, keyless: bool) -> None:
    """Write every entry as JSON Lines (the last line's hash is the head), optionally signed."""
    with _open(ledger_path) as ledger:
        check = ledger.verify()
        if not check.ok:
            raise click.ClickException(f"the ledger is broken, not exported: {check.problems[0]}")
        lines = [json.dumps(e.to_json(), sort_keys=True, ensure_ascii=False) for e in ledger.entries()]
    write_atomic(output, "".join(line + "\n" for line in lines), [])
    click.echo(f"exported {len(lines)} entries to {output}; head {check.head}")
    if key or keyless:
        from mlsec.signing import sign  # noqa: PLC0415 - sigstore loads only to sign

        bundle = sign(Path(output), key=Path(key) if key else None, keyless=keyless)
        click.echo(f"signed {output} -> {bundle}")

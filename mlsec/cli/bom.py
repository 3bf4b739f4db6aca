"""`mlsec bom`: the CycloneDX ML-BOM of what a scan found (or of a saved report)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlsec.cli.writing import write_atomic
from mlsec.errors import InputError
from mlsec.outputs.mlbom import SPECS, render
from mlsec.report import ScanReport
from mlsec.scan import scan


@click.command("bom")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option(
    "--report", "report_path", type=click.Path(exists=True, dir_okay=False), help="Build from this report instead of scanning."
)
@click.option(
    "-o",
    "--output",
    "output",
    default="mlbom",
    metavar="mlbom[=FILE]",
    help="Where to write the ML-BOM (default: standard output).",
)
@click.option("--spec", type=click.Choice(SPECS), default="1.6", show_default=True, help="CycloneDX specification version.")
@click.option(
    "--vulndb", type=click.Path(exists=True, dir_okay=False), default=None, help="Offline OSV database for dependencies."
)
@click.pass_context
def bom_command(
    ctx: click.Context, paths: tuple[str, ...], report_path: str | None, output: str, spec: str, vulndb: str | None
) -> None:
    """Write a CycloneDX ML-BOM: models, datasets, dependencies with purls, vulnerabilities, findings."""
    fmt, _, target = output.partition("=")
    if fmt != "mlbom":
        raise click.BadParameter(f"unknown format {fmt!r} (expected mlbom[=FILE])", param_hint="-o/--output")
    if bool(paths) == bool(report_path):
        raise click.UsageError("give PATHs to scan, or --report FILE, not both")
    if report_path:
        try:
            report = ScanReport.from_json(Path(report_path).read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"not an mlsec report: {exc}", path=report_path) from None
    else:
        report = scan(list(paths), vulndb=vulndb, debug=ctx.obj.get("debug", False), isolate=True)
    text = render(report, spec=spec)
    if target:
        write_atomic(target, text, [*paths, *([report_path] if report_path else [])])
    else:
        sys.stdout.write(text)

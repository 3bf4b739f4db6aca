"""`mlsec scan`: scan paths, render outputs, exit with the documented code."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import click

from mlsec.cache import ResultCache
from mlsec.cli import own_process, settle_heap
from mlsec.cli.exit_codes import ExitCode
from mlsec.cli.options import (
    fail_on_option,
    gate_options,
    ledger_entries,
    ledger_option,
    record,
    rules_option,
    scale_options,
)
from mlsec.cli.progress import reporter
from mlsec.cli.writing import write_output
from mlsec.datasets import LABEL_NAMES
from mlsec.findings import Severity
from mlsec.inputs.images import ImageOptions
from mlsec.limits import ScanLimits
from mlsec.outputs import FORMATS
from mlsec.report import EXIT_STATUS, ScanReport
from mlsec.rules import load_ruleset
from mlsec.scan import scan


def parse_output(value: str) -> tuple[str, str | None]:
    fmt, sep, target = value.partition("=")
    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise click.BadParameter(f"unknown format {fmt!r} (expected one of: {', '.join(FORMATS)})", param_hint="-o/--output")
    if sep and not target:
        raise click.BadParameter(f"missing file name after {fmt}=", param_hint="-o/--output")
    return fmt, (target or None)


def exit_code(report: ScanReport, fail_on: Severity) -> ExitCode:
    """1 blocked > 3 incomplete > 0 clean (ScanReport.verdict): an incomplete scan never reads as clean."""
    return ExitCode(EXIT_STATUS[report.verdict(fail_on)])


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=str))
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    metavar="FORMAT[=FILE]",
    help="Output format (json, sarif, table, mlbom, html), to FILE or to standard output. Repeatable; default: table.",
)
@fail_on_option
@rules_option
@click.option("--max-bytes", type=click.IntRange(min=1), default=None, help="Largest archive member read into memory, in bytes.")
@click.option(
    "--limit",
    "limit_pairs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Change one scan limit (max_seconds=30, max_members=500000, ...; docs/limits.md). Repeatable.",
)
@click.option(
    "--vulndb",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Offline OSV database for dependencies (default: the one `mlsec db import` stored, or $MLSEC_VULNDB).",
)
@click.option(
    "--online",
    "osv_url",
    flag_value="https://api.osv.dev/v1/query",
    default=None,
    help="With no offline database: look dependencies up in OSV's online API (through pip-audit). Sends package names and versions.",
)
@click.option("--osv-url", "osv_url", default=None, hidden=True, help="The OSV query API --online uses (for mirrors).")
@click.option(
    "--reference", type=click.Path(exists=True, dir_okay=False), help="Datasets: a trusted dataset to measure drift against."
)
@click.option("--label-column", metavar="NAME", help=f"Datasets: the label column (default: {', '.join(LABEL_NAMES)}).")
@click.option("--all-layers", is_flag=True, help="Images: scan files that later layers replaced or deleted, too.")
@click.option(
    "--platform", "image_platform", metavar="OS/ARCH", help="Images: only this platform of a multi-arch index (e.g. linux/amd64)."
)
@click.option(
    "--gate",
    "run_gate",
    is_flag=True,
    help="Decide with the Rego gates too; the exit code is then the gate's (0 allowed, 1 denied).",
)
@scale_options
@gate_options
@ledger_option
@click.option(
    "--gate-output",
    "gate_outputs",
    multiple=True,
    metavar="FORMAT[=FILE]",
    help="With --gate: the decision as json, table or markdown (default: table on standard error).",
)
@click.pass_context
def scan_command(
    ctx: click.Context,
    paths: tuple[str, ...],
    outputs: tuple[str, ...],
    fail_on: Severity,
    rules_dirs: tuple[str, ...],
    max_bytes: int | None,
    limit_pairs: tuple[str, ...],
    vulndb: str | None,
    osv_url: str | None,
    reference: str | None,
    label_column: str | None,
    all_layers: bool,
    image_platform: str | None,
    run_gate: bool,
    gate_outputs: tuple[str, ...],
    ledger_path: str | None,
    jobs: int | None,
    executor: str | None,
    no_cache: bool,
    paranoid: bool,
    progress: str,
    **gate_opts: Any,
) -> None:
    """Statically scan model files, archives and directories. Never executes them."""
    wanted = [parse_output(o) for o in outputs] or [("table", None)]
    if sum(1 for _, target in wanted if target is None) > 1:
        raise click.UsageError("only one output can go to standard output; give the others a file (FORMAT=FILE)")
    # A scan parses, it does not compute. numpy, loaded before a pool forks so that every worker has it, would start
    # OpenBLAS threads, one per core, that spin for a tenth of a second of CPU time the workers need (2.5% of the
    # samples of a cold scan on 2 cores). Where the command is the whole process: one thread, unless the user says.
    if own_process():
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    ruleset = load_ruleset([Path(d) for d in rules_dirs])
    limits = ScanLimits() if max_bytes is None else ScanLimits(max_member_in_memory=max_bytes)
    try:
        limits = limits.with_overrides(limit_pairs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--limit") from None
    # Standard output is the report's: what a scan's libraries print there goes to standard error (Ray's driver
    # prints "a worker died" to standard output, into `-o json`'s document).
    with reporter(progress) as on_progress, contextlib.redirect_stdout(sys.stderr):
        report = scan(
            list(paths),
            ruleset=ruleset,
            limits=limits,
            debug=ctx.obj.get("debug", False),
            vulndb=vulndb,
            osv_url=osv_url,
            image_options=ImageOptions(platform=image_platform, all_layers=all_layers),
            reference=reference,
            label_column=label_column,
            jobs=jobs,
            executor=executor,
            cache=None if no_cache else ResultCache(),
            paranoid=paranoid,
            progress=on_progress,
            isolate=True,  # a file that crashes or hangs native code is an error in the report, not the command's end
        )
    settle_heap()  # what follows only reads the report, then the process ends
    for fmt, target in wanted:
        if fmt != "html":  # the compliance report comes last: it shows the decision and the ledger
            write_output(target, FORMATS[fmt](report, ruleset), paths)
    code = exit_code(report, fail_on)
    recorded = record(ledger_path, lambda ledger: _audit().record_scan(ledger, report, int(code)))
    decision = None
    if run_gate:
        from mlsec.cli.gate import decide, emit, parse_decision_output  # noqa: PLC0415 - only with --gate

        decision = decide(report, gate_opts)
        emit(decision, [parse_decision_output(o) for o in gate_outputs] or [("table", None)], list(paths), stream=sys.stderr)
        recorded = record(ledger_path, lambda ledger: _audit().record_gate(ledger, decision, report)) and recorded
        code = ExitCode.OK if decision.allowed else ExitCode.BLOCKED
    for fmt, target in wanted:
        if fmt == "html":
            from mlsec.outputs.html import render as html_report  # noqa: PLC0415 - only an html output needs it

            text = html_report(
                report, ruleset, decision=decision, ledger=ledger_entries(ledger_path, report), exit_code=int(code)
            )
            write_output(target, text, paths)
    ctx.exit(int(code if recorded or code == ExitCode.BLOCKED else ExitCode.INCOMPLETE))


def _audit() -> Any:
    """mlsec.audit_records, imported when a --ledger run records (the ledger is not every scan's cost)."""
    import mlsec.audit_records  # noqa: PLC0415

    return mlsec.audit_records

"""`mlsec gate`: a policy decision over a scan report; exit 0 allowed, 1 denied, 3 undecidable."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from mlsec.audit_records import record_gate
from mlsec.cli.exit_codes import ExitCode
from mlsec.cli.options import as_paths, gate_options, ledger_entries, ledger_option, record
from mlsec.cli.writing import write_output
from mlsec.decision import Decision
from mlsec.errors import InputError
from mlsec.gate import gate
from mlsec.gate_input import build_gate_input
from mlsec.outputs.decision import DECISION_FORMATS
from mlsec.policy_engines import PolicySet, open_engine
from mlsec.report import SCHEMA_VERSION, ScanReport


def parse_decision_output(value: str, *, html: bool = False) -> tuple[str, str | None]:
    fmt, sep, target = value.partition("=")
    if fmt not in DECISION_FORMATS and not (html and fmt == "html"):
        raise click.BadParameter(f"unknown format {fmt!r} (expected one of: {', '.join(DECISION_FORMATS)})")
    if sep and not target:
        raise click.BadParameter(f"missing file name after {fmt}=")
    return fmt, target or None


def read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what}: {exc}", path=path) from None


def decide(report: Any, options: dict[str, Any]) -> Decision:
    """The decision for a report (ScanReport or its JSON) under the gate options shared by `gate` and `scan --gate`.

    `signatures` (a list) may stand in for `signatures_file`, and `allowed_signers` adds signers to the data
    (mlsec run passes both: the signatures it just made and verified, and the signers mlsec.yaml names)."""
    signatures = options.get("signatures")
    if signatures is None:
        signatures = read_json(options["signatures_file"], "signatures") if options.get("signatures_file") else []
    if not isinstance(signatures, list):
        raise InputError("signatures must be a JSON list", path=options["signatures_file"])
    policies = PolicySet.load(
        as_paths(options["policy_dirs"]), as_paths(options["data_dirs"]), bundled_policies=not options["no_bundled_policies"]
    )
    if options.get("allowed_signers"):
        mlsec_data = dict(policies.data.get("mlsec", {}))
        mlsec_data["allowed_signers"] = [*mlsec_data.get("allowed_signers", []), *options["allowed_signers"]]
        policies = replace(policies, data={**policies.data, "mlsec": mlsec_data})
    engine = open_engine(
        policies,
        engine=options["engine"],
        opa_url=options.get("opa_url"),
        push=options["push_policies"],
        timeout=options["opa_timeout"],
        token=os.environ.get("MLSEC_OPA_TOKEN"),
    )
    gate_input = build_gate_input(report, stage=options["stage"], signatures=signatures)
    return gate(gate_input, engine, waivers=policies.waivers, gate_ids=policies.gate_ids)


def emit(decision: Decision, outputs: list[tuple[str, str | None]], inputs: list[str], stream: Any = None) -> None:
    for fmt, target in outputs:
        write_output(target, DECISION_FORMATS[fmt](decision), inputs, stream)


@click.command("gate")
@click.option(
    "--report",
    "report_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A report from `mlsec scan -o json=FILE`.",
)
@gate_options
@ledger_option
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    metavar="FORMAT[=FILE]",
    help="json, table (default), markdown or html (the compliance report); repeatable.",
)
@click.pass_context
def gate_command(ctx: click.Context, report_path: str, outputs: tuple[str, ...], ledger_path: str | None, **options: Any) -> None:
    """Decide with Rego policies whether what a report describes may go on to the next stage."""
    wanted = [parse_decision_output(o, html=True) for o in outputs] or [("table", None)]
    if sum(1 for _, t in wanted if t is None) > 1:
        raise click.UsageError("only one output can go to standard output; give the others a file (FORMAT=FILE)")
    report = read_json(report_path, "the report")
    if not isinstance(report, dict) or report.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"not an mlsec report (schema_version must be {SCHEMA_VERSION})", path=report_path)
    decision = decide(report, options)
    emit(decision, [w for w in wanted if w[0] != "html"], [report_path])
    recorded = record(ledger_path, lambda ledger: record_gate(ledger, decision, report))
    for _, target in (w for w in wanted if w[0] == "html"):
        from mlsec.outputs.html import render  # noqa: PLC0415
        from mlsec.rules import load_ruleset  # noqa: PLC0415

        text = render(
            ScanReport.from_json(json.dumps(report)),
            load_ruleset(),
            decision=decision,
            ledger=ledger_entries(ledger_path, report),
        )
        write_output(target, text, [report_path])
    if not decision.allowed:
        ctx.exit(int(ExitCode.BLOCKED))
    ctx.exit(int(ExitCode.OK if recorded else ExitCode.INCOMPLETE))

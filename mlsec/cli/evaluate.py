"""`mlsec evaluate`: adversarial robustness of a model that passed its static scan, in a sandboxed child."""

from __future__ import annotations

from pathlib import Path

import click

from mlsec.audit_records import record_evaluation
from mlsec.cli.exit_codes import ExitCode
from mlsec.cli.options import evaluation_options, fail_on_option, ledger_option, parse_shape, record, rules_option
from mlsec.cli.scan import exit_code, parse_output
from mlsec.cli.writing import write_output
from mlsec.evaluations import DEVICES
from mlsec.findings import Severity
from mlsec.outputs import FORMATS
from mlsec.report import ScanReport
from mlsec.rules import load_ruleset


@click.command("evaluate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False), help="Dataset (CSV, TSV, JSONL, Parquet).")
@evaluation_options
@click.option(
    "--report",
    "report_path",
    type=click.Path(exists=True, dir_okay=False),
    help="A scan report that covers the model and dataset (default: scan them now).",
)
@click.option("--norm", "norms", multiple=True, type=click.Choice(["inf", "1", "2"]), default=("inf",), show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--trigger", metavar="R0:R1,C0:C1=V", help="Backdoor suite: a candidate trigger to measure (ASR, STRIP).")
@click.option("--trigger-target", type=int, help="The class the trigger should force (default: the one it forces most).")
@click.option(
    "--device", type=click.Choice(DEVICES), default="auto", show_default=True,
    help="Where a torch model runs: auto takes a GPU when torch sees one.",
)  # fmt: skip
@click.option("--timeout", type=click.FloatRange(min=1), default=900.0, show_default=True, help="Wall-clock seconds.")
@click.option("--memory-mb", type=click.IntRange(min=256), default=8192, show_default=True, help="Address-space limit.")
@click.option("-o", "--output", "outputs", multiple=True, metavar="FORMAT[=FILE]", help="As for scan (default: table).")
@fail_on_option
@rules_option
@ledger_option
def evaluate_command(
    model: str,
    data: str,
    label_column: str | None,
    suites: tuple[str, ...],
    report_path: str | None,
    epsilons: tuple[float, ...],
    norms: tuple[str, ...],
    sample: int,
    seed: int,
    factory: str | None,
    factory_path: str | None,
    input_shape: str | None,
    trigger: str | None,
    trigger_target: int | None,
    device: str,
    timeout: float,
    memory_mb: int,
    outputs: tuple[str, ...],
    fail_on: Severity,
    rules_dirs: tuple[str, ...],
    ledger_path: str | None,
) -> None:
    """Load MODEL in a sandbox and attack it, only if it and its dataset passed a static scan."""
    from mlsec.evaluations import evaluate, suites_named  # noqa: PLC0415 - light; ART and torch load only in the child
    from mlsec.evaluations.sandbox import SandboxLimits  # noqa: PLC0415
    from mlsec.evaluations.trigger import parse as parse_trigger  # noqa: PLC0415

    try:
        suites = suites_named(suites)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--suite") from None
    try:
        if trigger:
            parse_trigger(trigger)
    except ValueError as exc:  # a span that is not numbers says so too, under --trigger
        raise click.BadParameter(str(exc), param_hint="--trigger") from None
    wanted = [parse_output(o) for o in outputs] or [("table", None)]
    if sum(1 for _, target in wanted if target is None) > 1:
        raise click.UsageError("only one output can go to standard output; give the others a file (FORMAT=FILE)")
    ruleset = load_ruleset([Path(d) for d in rules_dirs])
    given = ScanReport.from_json(Path(report_path).read_text()) if report_path else None
    limits = SandboxLimits(memory_bytes=memory_mb * 1024 * 1024, wall_seconds=timeout, cpu_seconds=int(timeout * 2) + 1)
    report = evaluate(
        model, data, label_column=label_column, suites=suites, report=given, ruleset=ruleset,
        epsilons=epsilons, norms=norms, sample=sample, seed=seed, limits=limits, factory=factory,
        factory_path=factory_path, input_shape=parse_shape(input_shape), trigger=trigger, trigger_target=trigger_target,
        device=device,
    )  # fmt: skip
    for fmt, target in wanted:
        write_output(target, FORMATS[fmt](report, ruleset), [model, data])
    code = exit_code(report, fail_on)  # a refused evaluation blocks, one that could not finish is incomplete
    recorded = record(ledger_path, lambda ledger: record_evaluation(ledger, report, int(code)))
    raise SystemExit(int(code if recorded or code == ExitCode.BLOCKED else ExitCode.INCOMPLETE))

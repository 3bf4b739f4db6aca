"""`mlsec registry scan mlflow` and `mlsec registry promote`: the model registry as a gated step."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mlsec.cli.exit_codes import ExitCode
from mlsec.cli.options import (
    EVALUATION_OPTIONS,
    evaluation_options,
    fail_on_option,
    gate_options,
    ledger_option,
    parse_shape,
    rules_option,
)
from mlsec.cli.writing import write_atomic
from mlsec.findings import Severity
from mlsec.limits import ScanLimits
from mlsec.rules import load_ruleset

tracking_uri_option = click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    default=None,
    help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).",
)
registry_uri_option = click.option("--registry-uri", default=None, help="MLflow registry URI, when not the tracking URI.")


evaluate_option = click.option(
    "--evaluate",
    "evaluate_data",
    type=click.Path(exists=True, dir_okay=False),
    help="Also evaluate each model of a version whose scan is clean on this dataset (the eval extra), "
    "with the evaluation options below.",
)


def _plan(evaluate_data: str | None, options: dict[str, Any]) -> Any:
    """The EvaluationPlan the --evaluate options describe, or None (and then no evaluation option may be set)."""
    from mlsec.evaluations import suites_named  # noqa: PLC0415
    from mlsec.registry.workflow import EvaluationPlan  # noqa: PLC0415

    named = {k: options.pop(k) for k in EVALUATION_OPTIONS}
    if evaluate_data is None:
        stray = [k for k in ("label_column", "factory", "factory_path", "input_shape") if named[k]]
        if stray:
            raise click.UsageError(f"--{stray[0].replace('_', '-')} is an evaluation option: it needs --evaluate DATASET")
        return None
    try:
        named["suites"] = suites_named(named["suites"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--suite") from None
    named["epsilons"] = tuple(named["epsilons"])
    named["input_shape"] = parse_shape(named["input_shape"])
    return EvaluationPlan(Path(evaluate_data), {k: v for k, v in named.items() if v is not None})


def _ledger(path: str | None) -> Any:
    from mlsec.ledger import Ledger  # noqa: PLC0415

    return Ledger(path) if path else None


@click.group("registry")
def registry_group() -> None:
    """Scan model registries and promote versions through the serve gate."""


@registry_group.command("scan")
@click.argument("kind", type=click.Choice(["mlflow"]))
@tracking_uri_option
@registry_uri_option
@click.option("--model", "model", help="Only this registered model (default: every model).")
@click.option("--version", "version", help="Only this version (with --model).")
@click.option("--alias", "alias", help="Only the version this alias points at (with --model).")
@click.option("--force", is_flag=True, help="Scan again even when artifacts and rules are unchanged since the last scan.")
@fail_on_option
@rules_option
@ledger_option
@click.option(
    "-o", "--output", "output", type=click.Path(dir_okay=False), help="Write every scanned version's report (JSON Lines)."
)
@evaluate_option
@evaluation_options
@click.pass_context
def scan_command(
    ctx: click.Context, kind: str, tracking_uri: str | None, registry_uri: str | None, model: str | None,
    version: str | None, alias: str | None, force: bool, fail_on: Severity, rules_dirs: tuple[str, ...],
    ledger_path: str | None, output: str | None, evaluate_data: str | None, **evaluation: Any,
) -> None:  # fmt: skip
    """Scan registered model versions and tag each with mlsec.verdict, mlsec.report_sha256, mlsec.rules_digest
    and mlsec.scanned_at (with --evaluate, also mlsec.evaluation). Versions whose artifacts, rules and
    evaluation are unchanged since their last scan are skipped."""
    from mlsec.registry.mlflow import MlflowRegistry  # noqa: PLC0415 - the mlflow extra
    from mlsec.registry.workflow import scan_versions  # noqa: PLC0415

    if (version or alias) and not model:
        raise click.UsageError("--version and --alias need --model")
    if version and alias:
        raise click.UsageError("give --version or --alias, not both")
    plan = _plan(evaluate_data, evaluation)
    registry = MlflowRegistry(tracking_uri, registry_uri)
    ruleset = load_ruleset([Path(d) for d in rules_dirs])
    ledger = _ledger(ledger_path)
    try:
        results = scan_versions(
            registry, registry.versions(model, version, alias), ruleset=ruleset, limits=ScanLimits(), fail_on=fail_on,
            force=force, ledger=ledger, evaluation=plan,
        )  # fmt: skip
    finally:
        if ledger is not None:
            ledger.close()
    for r in results:
        note = " (unchanged since its last scan)" if r.unchanged else ""
        click.echo(f"{r.version.uri}  {r.verdict}{note}")
    if output:
        write_atomic(output, "".join(r.report.to_json().replace("\n", "") + "\n" for r in results if r.report), [])
    verdicts = {r.verdict for r in results}
    ctx.exit(int(ExitCode.BLOCKED if "blocked" in verdicts else ExitCode.INCOMPLETE if "incomplete" in verdicts else ExitCode.OK))


@registry_group.command("promote")
@click.argument("name")
@click.argument("version")
@click.option("--alias", required=True, help="The alias to move to VERSION when the gate allows (e.g. production).")
@tracking_uri_option
@registry_uri_option
@rules_option
@gate_options
@ledger_option
@click.option(
    "--gate-output", "gate_outputs", multiple=True, metavar="FORMAT[=FILE]", help="The decision: json, table or markdown."
)
@evaluate_option
@evaluation_options
@click.pass_context
def promote_command(
    ctx: click.Context, name: str, version: str, alias: str, tracking_uri: str | None, registry_uri: str | None,
    rules_dirs: tuple[str, ...], ledger_path: str | None, gate_outputs: tuple[str, ...], evaluate_data: str | None,
    **gate_opts: Any,
) -> None:  # fmt: skip
    """Scan VERSION of NAME (with --evaluate, also evaluate its models), run the gate (stage serve unless
    --stage says otherwise), and point --alias at it only when the gate allows. Exit 0 promoted, 1 denied
    (the registry untouched), with the decision."""
    from mlsec.cli.gate import decide, emit, parse_decision_output  # noqa: PLC0415
    from mlsec.registry.mlflow import MlflowRegistry  # noqa: PLC0415
    from mlsec.registry.workflow import promote  # noqa: PLC0415

    plan = _plan(evaluate_data, gate_opts)  # takes the evaluation options out of gate_opts
    if ctx.get_parameter_source("stage") == click.core.ParameterSource.DEFAULT:
        gate_opts["stage"] = "serve"
    registry = MlflowRegistry(tracking_uri, registry_uri)
    (target,) = registry.versions(name, version)
    ledger = _ledger(ledger_path)
    try:
        result = promote(
            registry, target, alias, lambda report: decide(report, gate_opts),
            ruleset=load_ruleset([Path(d) for d in rules_dirs]), limits=ScanLimits(), ledger=ledger, evaluation=plan,
        )  # fmt: skip
    finally:
        if ledger is not None:
            ledger.close()
    emit(result.decision, [parse_decision_output(o) for o in gate_outputs] or [("table", None)], [], stream=sys.stderr)
    if not result.allowed:
        click.echo(
            f"{target.uri}: promotion to {alias!r} DENIED; {alias!r} still points at {result.previous or 'nothing'}", err=True
        )
        ctx.exit(int(ExitCode.BLOCKED))
    click.echo(f"{target.uri}: promoted; {alias!r} now points at version {target.version} (was {result.previous or 'unset'})")

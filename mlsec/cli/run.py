"""`mlsec run --stage NAME` and `mlsec init`: the pipeline declared in mlsec.yaml."""

from __future__ import annotations

from pathlib import Path

import click

from mlsec.cli.options import fail_on_option, rules_option
from mlsec.findings import Severity
from mlsec.rules import load_ruleset


@click.command("run")
@click.option("--stage", "stage", required=True, help="The stage of mlsec.yaml to run (e.g. serve).")
@click.option(
    "--config", "config", default="mlsec.yaml", show_default=True, type=click.Path(dir_okay=False), help="The pipeline file."
)
@fail_on_option
@rules_option
@click.pass_context
def run_command(ctx: click.Context, stage: str, config: str, fail_on: Severity, rules_dirs: tuple[str, ...]) -> None:
    """Run one pipeline stage: scan, sign, gate, append to the ledger, write the outputs; exit with the gate's code."""
    from mlsec.cli.gate import decide  # noqa: PLC0415
    from mlsec.pipeline.config import load  # noqa: PLC0415
    from mlsec.pipeline.runner import run_stage  # noqa: PLC0415

    pipeline = load(Path(config))
    result = run_stage(pipeline, stage, ruleset=load_ruleset([Path(d) for d in rules_dirs]), decide=decide, fail_on=fail_on)
    counts = ", ".join(f"{n} {label}" for label, n in reversed(result.report.counts().items()) if n) or "no findings"
    click.echo(f"stage {stage}: {len(result.report.artifacts)} artifacts scanned ({counts}), {len(result.signatures)} signed")
    if result.decision is not None:
        verdict = "ALLOWED" if result.decision.allowed else "DENIED"
        click.echo(f"gate ({result.decision.stage}): {verdict}")
        for reason in result.decision.denies:
            click.echo(f"  deny {reason.gate_id}: {reason.message}")
    for path in result.written:
        click.echo(f"wrote {path}")
    ctx.exit(result.exit_code)


@click.command("init")
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing mlsec.yaml.")
def init_command(directory: str, force: bool) -> None:
    """Write a commented starter mlsec.yaml for the repository at DIRECTORY, from the artifacts found there."""
    from mlsec.pipeline.init import starter  # noqa: PLC0415

    target = Path(directory) / "mlsec.yaml"
    if target.exists() and not force:
        raise click.UsageError(f"{target} exists (--force replaces it)")
    target.write_text(starter(Path(directory)), encoding="utf-8")
    click.echo(f"wrote {target}; review it, then: mlsec run --stage serve")

"""`mlsec policy test|lint`: Rego policies tested and checked like code."""

from __future__ import annotations

from pathlib import Path

import click

from mlsec import bundled
from mlsec.cli.exit_codes import ExitCode
from mlsec.policy_engines.rego_tests import lint, run_tests


@click.group("policy")
def policy_group() -> None:
    """Test and lint Rego policies."""


def _dirs(dirs: tuple[str, ...]) -> list[Path]:
    return [Path(d) for d in dirs] or [bundled.policies_dir()]


@policy_group.command("test")
@click.argument("dirs", nargs=-1, type=click.Path(exists=True))
@click.option("--data", "data_dirs", multiple=True, type=click.Path(exists=True), help="Extra data documents (repeatable).")
@click.option("--coverage", is_flag=True, help="Report the lines of each policy that no test evaluated.")
@click.option("-v", "--verbose", is_flag=True, help="List passing tests too.")
@click.pass_context
def test_command(ctx: click.Context, dirs: tuple[str, ...], data_dirs: tuple[str, ...], coverage: bool, verbose: bool) -> None:
    """Run every test_ rule in the *_test.rego files under DIRS (default: the bundled policies)."""
    run = run_tests(_dirs(dirs), [Path(d) for d in data_dirs], coverage=coverage)
    for result in run.results:
        if not result.passed:
            click.echo(f"FAIL {result.location}: {result.name}" + (f"\n     {result.error}" if result.error else ""))
        elif verbose:
            click.echo(f"PASS {result.location}: {result.name}")
    for cov in run.coverage:
        uncovered = f"; not covered: lines {', '.join(map(str, cov.not_covered))}" if cov.not_covered else ""
        click.echo(f"coverage {cov.path}: {cov.percent:.0f}%{uncovered}")
    click.echo(f"{run.passed} passed, {run.failed} failed")
    ctx.exit(int(ExitCode.OK if run.failed == 0 else ExitCode.BLOCKED))


@policy_group.command("lint")
@click.argument("dirs", nargs=-1, type=click.Path(exists=True))
@click.pass_context
def lint_command(ctx: click.Context, dirs: tuple[str, ...]) -> None:
    """Check gate conventions: METADATA (title, description, custom.id, custom.severity), tests, set rules."""
    problems = lint(_dirs(dirs))
    for problem in problems:
        click.echo(problem)
    click.echo(f"{len(problems)} problem(s)")
    ctx.exit(int(ExitCode.OK if not problems else ExitCode.BLOCKED))

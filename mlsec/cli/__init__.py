"""The `mlsec` command: the one place where errors become messages and exit codes."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from mlsec import __version__
from mlsec.cli.audit import audit_group
from mlsec.cli.bom import bom_command
from mlsec.cli.cache import cache_group
from mlsec.cli.db import db_group
from mlsec.cli.evaluate import evaluate_command
from mlsec.cli.exit_codes import ExitCode
from mlsec.cli.gate import gate_command
from mlsec.cli.policy import policy_group
from mlsec.cli.registry import registry_group
from mlsec.cli.rules import rules_group
from mlsec.cli.run import init_command, run_command
from mlsec.cli.scan import scan_command
from mlsec.cli.serve import serve_command
from mlsec.cli.sign import keygen_command, sign_command, verify_command
from mlsec.errors import MlsecError, OutputError, RuleError, UsageError
from mlsec.pipeline.config import ConfigError


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except MlsecError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"mlsec: error: {exc.diagnostics()}", err=True)
            code = ExitCode.USAGE if isinstance(exc, (RuleError, OutputError, ConfigError, UsageError)) else ExitCode.INCOMPLETE
            ctx.exit(int(code))
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(
                f"mlsec: internal error: {type(exc).__name__}: {exc}\n"
                "This is a bug; please report it with the output of the same command run with --debug.",
                err=True,
            )
            ctx.exit(int(ExitCode.INTERNAL))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlsec")
@click.option("--debug", is_flag=True, help="Log verbosely and show tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """mlsec: scan ML artifacts for supply-chain attacks, statically."""
    ctx.obj = {"debug": debug}
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )


main.add_command(scan_command)
main.add_command(evaluate_command)
main.add_command(rules_group)
main.add_command(gate_command)
main.add_command(policy_group)
main.add_command(serve_command)
main.add_command(db_group)
main.add_command(cache_group)
main.add_command(bom_command)
main.add_command(keygen_command)
main.add_command(sign_command)
main.add_command(verify_command)
main.add_command(audit_group)
main.add_command(registry_group)
main.add_command(run_command)
main.add_command(init_command)

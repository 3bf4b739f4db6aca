"""Options shared by several commands, declared once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from mlsec.findings import Severity

if TYPE_CHECKING:
    from mlsec.ledger import Entry, Ledger

rules_option = click.option(
    "--rules",
    "rules_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, dir_okay=True),
    help="Directory of extra rules/*.toml merged over the bundled rules (repeatable).",
)


class SeverityType(click.ParamType):
    name = "severity"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> Severity:
        if isinstance(value, Severity):
            return value
        try:
            return Severity.parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


fail_on_option = click.option(
    "--fail-on",
    type=SeverityType(),
    default="high",
    show_default=True,
    help="Exit 1 when a finding is at or above this severity (info, low, medium, high, critical).",
)


def as_paths(values: tuple[str, ...]) -> list:
    from pathlib import Path  # noqa: PLC0415

    return [Path(v) for v in values]


def _paths_option(flag: str, dest: str, help_text: str):  # noqa: ANN202 - a click decorator
    return click.option(flag, dest, multiple=True, type=click.Path(exists=True), help=help_text)


def gate_options(func):  # noqa: ANN001, ANN201 - a click decorator stack
    """--stage, --policies, --data, --no-bundled-policies, --engine, --opa-url, --push-policies, --signatures."""
    stages = click.Choice(["pr", "train", "register", "serve"])
    for option in reversed(
        [
            click.option("--stage", type=stages, default="pr", show_default=True, help="Pipeline stage the policies decide for."),
            _paths_option(
                "--policies", "policy_dirs", "Directory (or file) of Rego policies, added to the bundled gates (repeatable)."
            ),
            _paths_option(
                "--data",
                "data_dirs",
                "Directory (or file) of JSON/YAML data (thresholds, waivers), merged over the bundled data.",
            ),
            click.option("--no-bundled-policies", is_flag=True, help="Decide with your --policies only, not the shipped gates."),
            click.option("--engine", type=click.Choice(["embedded", "opa"]), default="embedded", show_default=True),
            click.option("--opa-url", metavar="URL", help="OPA server for --engine opa (e.g. http://opa.internal:8181)."),
            click.option(
                "--opa-timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True, help="Seconds per OPA request."
            ),
            click.option(
                "--push-policies", is_flag=True, help="With --engine opa: upload these policies and data to the server first."
            ),
            click.option(
                "--signatures",
                "signatures_file",
                type=click.Path(exists=True, dir_okay=False),
                help="JSON list of verified signatures ({file, sha256, verified, identity, issuer}) for the gate input.",
            ),
        ]
    ):
        func = option(func)
    return func


def scale_options(func):  # noqa: ANN001, ANN201 - a click decorator stack
    """--jobs, --executor, --no-cache, --paranoid and --progress: how a scan runs, never what it finds."""
    for option in reversed(
        (
            click.option(
                "-j",
                "--jobs",
                type=click.IntRange(min=1),
                default=None,
                help="Worker processes (default: every core, for scans big enough to gain; 1: in this process).",
            ),
            click.option(
                "--executor",
                metavar="process|in-process|ray|ray://HOST:PORT",
                default=None,
                help="Where files are scanned: this machine (default) or Ray tasks (the ray extra; docs/scale.md).",
            ),
            click.option(
                "--no-cache",
                is_flag=True,
                envvar="MLSEC_NO_CACHE",
                help="Scan every file again and store nothing (the result cache is in $MLSEC_CACHE_DIR or ~/.cache/mlsec).",
            ),
            click.option(
                "--paranoid",
                is_flag=True,
                help="Re-hash every file instead of trusting its size, times and inode before reusing a cached result.",
            ),
            click.option(
                "--progress",
                type=click.Choice(["auto", "bar", "lines", "none"]),
                default="auto",
                show_default=True,
                help="Progress on standard error: a bar on a terminal, a line every 10 s elsewhere (CI logs).",
            ),
        )
    ):
        func = option(func)
    return func


ledger_option = click.option(
    "--ledger",
    "ledger_path",
    envvar="MLSEC_LEDGER",
    default=None,
    help="Append this command's result to the audit ledger: a SQLite file or postgresql://... (default $MLSEC_LEDGER, else none).",
)


def record(ledger_path: str | None, write: Callable[[Ledger], object]) -> bool:
    """Append to the ledger at `ledger_path`, if any. False (with the reason on stderr) when it failed:
    the caller's exit code must then say incomplete, unless it already says blocked."""
    if not ledger_path:
        return True
    from mlsec.ledger import Ledger, LedgerError  # noqa: PLC0415

    try:
        with Ledger(ledger_path) as ledger:
            write(ledger)
    except LedgerError as exc:
        click.echo(f"mlsec: error: the audit ledger was not written: {exc.diagnostics()}", err=True)
        return False
    return True


def ledger_entries(ledger_path: str | None, report: object) -> list[Entry]:
    """The ledger's entries about any artifact of `report` (a ScanReport or its JSON), for the HTML report."""
    if not ledger_path:
        return []
    from mlsec.audit_records import entries_about  # noqa: PLC0415
    from mlsec.ledger import Ledger, LedgerError  # noqa: PLC0415

    try:
        with Ledger(ledger_path) as ledger:
            return entries_about(ledger, report)  # type: ignore[arg-type]
    except LedgerError:
        return []


# the keyword arguments evaluation_options gives a command, as evaluate() names them
EVALUATION_OPTIONS = ("label_column", "suites", "epsilons", "sample", "factory", "factory_path", "input_shape")


def evaluation_options(func):  # noqa: ANN001, ANN201 - a click decorator stack
    """What an evaluation needs beyond its model and dataset: --label-column, --suite, --eps, --sample,
    --model-factory, --factory-path, --input-shape (for `evaluate` and the registry's --evaluate)."""
    from mlsec.datasets import LABEL_NAMES  # noqa: PLC0415 - applied as those subcommands load, not with `scan`
    from mlsec.evaluations import DEFAULT_EPSILONS, DEFAULT_SAMPLE, DEFAULT_SUITES, SUITES  # noqa: PLC0415

    for option in reversed(
        [
            click.option("--label-column", metavar="NAME", help=f"The label column (default: {', '.join(LABEL_NAMES)})."),
            click.option(
                "--suite", "suites", multiple=True, default=DEFAULT_SUITES, show_default=True,
                help=f"Suites to run: {', '.join(SUITES)}, or all. Repeatable.",
            ),
            click.option(
                "--eps", "epsilons", multiple=True, type=float, default=DEFAULT_EPSILONS, show_default=True,
                help="Perturbation budgets.",
            ),
            click.option(
                "--sample", type=click.IntRange(min=1), default=DEFAULT_SAMPLE, show_default=True, help="Samples attacked."
            ),
            click.option(
                "--model-factory", "factory", metavar="MODULE:FUNCTION", help="PyTorch state dicts: builds the module to load into."
            ),
            click.option("--factory-path", type=click.Path(exists=True, file_okay=False), help="Where MODULE is (default: here)."),
            click.option("--input-shape", metavar="C,H,W", help="PyTorch: the shape one row takes (e.g. 1,8,8)."),
        ]
    ):  # fmt: skip
        func = option(func)
    return func


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """--input-shape "1,8,8" as (1, 8, 8); None when not given."""
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers", param_hint="--input-shape") from None

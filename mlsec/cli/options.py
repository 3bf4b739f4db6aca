"""Options shared by several commands, declared once."""

from __future__ import annotations

import click

from mlsec.findings import Severity

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

"""Renderers: name -> function(ScanReport, RuleSet) -> text. Only cli/ writes files."""

from __future__ import annotations

from collections.abc import Callable

from mlsec.outputs import sarif, table
from mlsec.report import ScanReport
from mlsec.rules import RuleSet

Renderer = Callable[[ScanReport, RuleSet], str]


def _json(report: ScanReport, ruleset: RuleSet) -> str:
    return report.to_json()


def _mlbom(report: ScanReport, ruleset: RuleSet) -> str:
    from mlsec.outputs import mlbom  # noqa: PLC0415 - cyclonedx is heavy

    return mlbom.render(report, ruleset)


def _html(report: ScanReport, ruleset: RuleSet) -> str:
    from mlsec.outputs import html  # noqa: PLC0415

    return html.render(report, ruleset)


FORMATS: dict[str, Renderer] = {"json": _json, "sarif": sarif.render, "table": table.render, "mlbom": _mlbom, "html": _html}

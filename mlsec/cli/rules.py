"""`mlsec rules list|show`: what the shipped (and your) rules say."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlsec.cli.options import rules_option
from mlsec.rules import load_ruleset


@click.group("rules")
def rules_group() -> None:
    """Inspect detection rules."""


@rules_group.command("list")
@rules_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_command(rules_dirs: tuple[str, ...], as_json: bool) -> None:
    """List every rule: id, severity, name."""
    ruleset = load_ruleset([Path(d) for d in rules_dirs])
    if as_json:
        rows = [{"id": r.id, "severity": r.severity.label, "name": r.name, "title": r.title} for r in ruleset.rules.values()]
        click.echo(json.dumps({"rules_digest": ruleset.digest, "rules": rows}, indent=2))
        return
    for r in ruleset.rules.values():
        click.echo(f"{r.id:<20} {r.severity.label:<9} {r.name}")
    click.echo(f"{len(ruleset.rules)} rules, digest {ruleset.digest}")


@rules_group.command("show")
@click.argument("rule_id")
@rules_option
def show_command(rule_id: str, rules_dirs: tuple[str, ...]) -> None:
    """Show one rule in full."""
    ruleset = load_ruleset([Path(d) for d in rules_dirs])
    r = ruleset.rule(rule_id.upper())
    click.echo(f"{r.id}  {r.name}\nseverity: {r.severity.label}\ntitle:    {r.title}\nhelp:     {r.help}")
    if r.cwe:
        click.echo(f"cwe:      {', '.join(r.cwe)}")
    for fid, controls in r.frameworks.items():
        fw = ruleset.frameworks[fid]
        for c in controls:
            click.echo(f"{fw.title}: {c} {fw.controls[c]}")
    if r.lists:
        click.echo(f"lists:    {', '.join(r.lists)}")
    click.echo(f"source:   {r.source}")

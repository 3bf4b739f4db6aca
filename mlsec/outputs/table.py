"""A plain terminal table of findings, skips, errors and evaluations, with a summary line."""

from __future__ import annotations

from collections import Counter

from mlsec.outputs.text import printable
from mlsec.report import ScanReport
from mlsec.rules import RuleSet


def render(report: ScanReport, ruleset: RuleSet) -> str:
    lines: list[str] = []
    rows = [
        (f.severity.label.upper(), f.rule_id, _where(f.location.path, f.location.member), printable(f.evidence.summary))
        for f in sorted(report.findings, key=lambda f: (-f.severity, f.sort_key()))
    ]
    if rows:
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        header = ("SEVERITY", "RULE", "WHERE", "WHAT")
        widths = [max(w, len(h)) for w, h in zip(widths, header, strict=False)]
        for row in (header, *rows):
            lines.append("  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)).rstrip())
    for e in report.errors:
        lines.append(f"ERROR    {_where(e.path, e.member)}: {printable(e.reason)}" + (f" [{e.scanner}]" if e.scanner else ""))
    for s in report.skipped:
        lines.append(f"SKIPPED  {_where(s.path, s.member)}: {printable(s.reason)}")
    for e in report.evaluations:  # what `mlsec evaluate` measured: its summary says the headline numbers
        lines.append(f"EVALUATION  {e.name}  {e.status}: {printable(e.evidence.summary)}")
    counts = report.counts()
    summary = ", ".join(f"{n} {label}" for label, n in reversed(counts.items()) if n) or "no findings"
    evaluated = ""
    if report.evaluations:
        statuses = Counter(e.status for e in report.evaluations)
        evaluated = (
            f"; {len(report.evaluations)} evaluations (" + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ")"
        )
    lines.append(
        f"{len(report.artifacts)} artifacts scanned: {summary}; {len(report.skipped)} skipped, {len(report.errors)} errors"
        + evaluated
    )
    return "\n".join(lines) + "\n"


def _where(path: str, member: str | None) -> str:
    return printable(f"{path} [{member}]" if member else path)

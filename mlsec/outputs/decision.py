"""A gate Decision as JSON, a terminal table, or Markdown (a pull-request comment, a job summary)."""

from __future__ import annotations

import json
from collections.abc import Callable

from mlsec.decision import Decision, Reason
from mlsec.outputs.text import printable


def to_json(decision: Decision) -> str:
    return json.dumps(decision.to_dict(), indent=2, sort_keys=False) + "\n"


def to_table(decision: Decision) -> str:
    lines = []
    for label, reasons in (("DENY", decision.denies), ("WARN", decision.warnings), ("WAIVED", decision.waived)):
        for r in reasons:
            lines.append(f"{label:<7}{r.gate_id:<16}{printable(r.message)}" + (f"  ({printable(r.waiver)})" if r.waiver else ""))
    verdict = "ALLOWED" if decision.allowed else "DENIED"
    lines.append(
        f"gate {verdict} at stage {decision.stage}: {len(decision.denies)} denied, {len(decision.warnings)} warnings, "
        f"{len(decision.waived)} waived ({decision.engine}, policies {decision.policies_digest[:19]}…)"
    )
    return "\n".join(lines) + "\n"


def to_markdown(decision: Decision) -> str:
    verdict = "✅ allowed" if decision.allowed else "❌ denied"
    out = [f"## mlsec gate: {verdict} at stage `{decision.stage}`", ""]
    for title, reasons in (("Denied", decision.denies), ("Warnings", decision.warnings), ("Waived", decision.waived)):
        if not reasons:
            continue
        out += [f"### {title} ({len(reasons)})", "", "| gate | rule | artifact | message |", "|---|---|---|---|"]
        out += [_row(r) for r in reasons]
        out.append("")
    out.append(f"<sub>{decision.engine}; policies {decision.policies_digest}</sub>")
    return "\n".join(out) + "\n"


def _row(r: Reason) -> str:
    cells = [r.gate_id, r.rule_id or "", (r.artifact or "")[:16], r.message + (f" — {r.waiver}" if r.waiver else "")]
    return "| " + " | ".join(printable(c).replace("|", "\\|") for c in cells) + " |"


DECISION_FORMATS: dict[str, Callable[[Decision], str]] = {"json": to_json, "table": to_table, "markdown": to_markdown}

"""The compliance report: one self-contained HTML file for auditors (no scripts, no network assets, a
Content-Security-Policy that forbids both, print styles). It says what was checked, what was found —
grouped by framework control (MITRE ATLAS, OWASP ML Top 10, NIST AI RMF; mappings are rules/ data) —
what the gate decided under which policies, and the ledger entries behind it.

Every piece of text from an artifact is escaped twice over: control and bidi characters become
visible escapes, then HTML-escaped. Sign the file like any other output (`mlsec sign report.html`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from mlsec.decision import Decision
from mlsec.findings import Finding, Severity
from mlsec.ledger import Entry
from mlsec.outputs.text import printable
from mlsec.report import ScanReport
from mlsec.rules import RuleSet

_COLORS = {"critical": "#8b0000", "high": "#c0392b", "medium": "#d68910", "low": "#2874a6", "info": "#7f8c8d"}
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:75rem;color:#1c1c1c;padding:0 1rem}
h1{margin:0 0 .2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border-bottom:1px solid #e3e3e3;padding:.3rem .45rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.mono,span.mono{font-family:ui-monospace,Menlo,monospace;font-size:12px;word-break:break-all}
.verdict{display:inline-block;padding:.25rem .8rem;border-radius:4px;color:#fff;font-weight:700}
.pass{background:#1e8449}.fail{background:#b03a2e}.partial{background:#b9770e}
.sev{color:#fff;border-radius:3px;padding:0 .35rem;font-size:12px;font-weight:600}
.meta{color:#555}details{margin:.3rem 0}summary{cursor:pointer}
@media print{body{margin:0;max-width:none}details{display:block}a{color:inherit;text-decoration:none}h2{break-after:avoid}tr{break-inside:avoid}}
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def render(
    report: ScanReport,
    ruleset: RuleSet,
    *,
    decision: Decision | None = None,
    ledger: Sequence[Entry] = (),
    exit_code: int | None = None,
) -> str:
    """The report as HTML; `decision` and `ledger` entries are included when given."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>mlsec compliance report: {_t(', '.join(report.targets))}</title>",
        f"<style>{_CSS}</style></head><body>",
        _header(report, decision, exit_code),
        _summary(report),
        _decision(decision) if decision else "",
        _controls(report.findings, ruleset),
        _findings(report.findings, ruleset),
        _evaluations(report),
        _artifacts(report),
        _gaps(report),
        _ledger(ledger) if ledger else "",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _t(text: object) -> str:
    """Untrusted text, safe for an HTML element or attribute."""
    return escape(printable(str(text)), quote=True)


def _sev(label: str) -> str:
    return f'<span class="sev" style="background:{_COLORS.get(label, "#555")}">{_t(label)}</span>'


def _where(path: str, member: str | None) -> str:
    return _t(f"{path} [{member}]" if member else path)


def _header(report: ScanReport, decision: Decision | None, exit_code: int | None) -> str:
    top = report.max_severity()
    if decision is not None:
        verdict, css = ("ALLOWED", "pass") if decision.allowed else ("DENIED", "fail")
        verdict += f" at stage {decision.stage}"
    elif exit_code == 1 or (exit_code is None and top is not None and top >= Severity.HIGH):
        verdict, css = "BLOCKED", "fail"
    elif report.errors:
        verdict, css = "INCOMPLETE", "partial"
    else:
        verdict, css = "PASSED", "pass"
    return (
        f"<h1>mlsec compliance report</h1>"
        f'<p><span class="verdict {css}">{_t(verdict)}</span></p>'
        f'<p class="meta">Targets: <span class="mono">{_t(", ".join(report.targets))}</span><br>'
        f"mlsec {_t(report.tool_version)} &middot; rules {_t(report.rules_digest)}<br>"
        f"Scanned {_t(report.started_at)} to {_t(report.finished_at)}</p>"
    )


def _summary(report: ScanReport) -> str:
    counts = report.counts()
    most = max(counts.values()) or 1
    bars = []
    for i, (label, n) in enumerate(reversed(list(counts.items()))):
        width = 300 * n / most
        bars.append(
            f'<text x="0" y="{i * 24 + 16}" font-size="13">{label}</text>'
            f'<rect x="80" y="{i * 24 + 4}" width="{width:.1f}" height="16" fill="{_COLORS[label]}"/>'
            f'<text x="{86 + width:.1f}" y="{i * 24 + 16}" font-size="13">{n}</text>'
        )
    svg = f'<svg role="img" aria-label="findings by severity" width="460" height="{len(counts) * 24 + 4}">{"".join(bars)}</svg>'
    return (
        f"<h2>Summary</h2><p>{len(report.artifacts)} artifacts scanned, {len(report.findings)} findings, "
        f"{len(report.skipped)} skipped, {len(report.errors)} errors.</p>{svg}"
    )


def _decision(decision: Decision) -> str:
    rows = []
    for kind, reasons in (("deny", decision.denies), ("warning", decision.warnings), ("waived", decision.waived)):
        rows += [
            f"<tr><td>{kind}</td><td>{_t(r.gate_id)}</td><td>{_t(r.message)}</td><td>{_t(r.waiver or '')}</td></tr>"
            for r in reasons
        ]
    table = "<table><tr><th></th><th>gate</th><th>reason</th><th>waiver</th></tr>" + "".join(rows) + "</table>" if rows else ""
    return (
        f"<h2>Gate decision</h2><p>{'Allowed' if decision.allowed else 'Denied'} at stage <b>{_t(decision.stage)}</b> "
        f'by the {_t(decision.engine)} engine; policies <span class="mono">{_t(decision.policies_digest)}</span>.</p>{table}'
    )


def _controls(findings: Iterable[Finding], ruleset: RuleSet) -> str:
    grouped: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for f in findings:
        rule = ruleset.rules.get(f.rule_id)
        for fid, controls in (rule.frameworks if rule else {}).items():
            for control in controls:
                grouped[(fid, control)].append(f)
    sections = []
    for fid, framework in ruleset.frameworks.items():
        rows = []
        for control, title in framework.controls.items():
            hits = grouped.get((fid, control), [])
            if not hits:
                continue
            worst = max(f.severity for f in hits).label
            rules = sorted({f.rule_id for f in hits})
            links = ", ".join(f'<a href="#{_t(r)}">{_t(r)}</a>' for r in rules)
            rows.append(
                f"<tr><td>{_t(control)}</td><td>{_t(title)}</td><td>{len(hits)}</td><td>{_sev(worst)}</td><td>{links}</td></tr>"
            )
        body = (
            "<table><tr><th>control</th><th></th><th>findings</th><th>worst</th><th>rules</th></tr>" + "".join(rows) + "</table>"
            if rows
            else "<p>No findings map to this framework.</p>"
        )
        sections.append(f'<h3>{_t(framework.title)}</h3><p class="meta">{_t(framework.url)}</p>{body}')
    return "<h2>Findings by framework control</h2>" + "".join(sections)


def _findings(findings: Sequence[Finding], ruleset: RuleSet) -> str:
    if not findings:
        return "<h2>Findings</h2><p>None.</p>"
    by_rule: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_rule[f.rule_id].append(f)
    blocks = []
    for rule_id, hits in sorted(by_rule.items(), key=lambda kv: (-max(f.severity for f in kv[1]), kv[0])):
        rule = ruleset.rules.get(rule_id)
        rows = "".join(
            f'<tr><td>{_sev(f.severity.label)}</td><td class="mono">{_where(f.location.path, f.location.member)}</td>'
            f"<td>{_t(f.evidence.summary)}</td></tr>"
            for f in hits
        )
        title = _t(rule.title) if rule else ""
        help_text = f'<p class="meta">{_t(rule.help)}</p>' if rule else ""
        blocks.append(
            f'<details open id="{_t(rule_id)}"><summary><b>{_t(rule_id)}</b> {title} ({len(hits)})</summary>{help_text}'
            f"<table><tr><th>severity</th><th>where</th><th>evidence</th></tr>{rows}</table></details>"
        )
    return "<h2>Findings</h2>" + "".join(blocks)


def _evaluations(report: ScanReport) -> str:
    if not report.evaluations:
        return ""
    rows = []
    for e in report.evaluations:
        bars = "".join(
            f'<div>{_t(k)}: {v:.3f} <svg width="200" height="10"><rect width="{200 * max(0.0, min(1.0, v)):.1f}" height="10" fill="#2874a6"/></svg></div>'
            for k, v in sorted(e.metrics.items())
            if isinstance(v, int | float)
        )
        rows.append(f"<tr><td>{_t(e.name)}</td><td>{_t(e.status)}</td><td>{bars}</td><td>{e.seconds:.1f} s</td></tr>")
    return (
        "<h2>Evaluations</h2><table><tr><th>evaluation</th><th>status</th><th>metrics</th><th>time</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _artifacts(report: ScanReport) -> str:
    rows = "".join(
        f'<tr><td class="mono">{_t(a.path)}</td><td>{_t(a.kind.value)}</td><td>{_t(a.format)}</td>'
        f'<td class="mono">{_t(a.sha256 or "")}</td><td>{a.size}</td><td>{_facts(a.facts)}</td></tr>'
        for a in report.artifacts
        if a.member is None
    )
    inner = sum(1 for a in report.artifacts if a.member is not None)
    note = f'<p class="meta">{inner} archive members and packages are listed in the JSON report.</p>' if inner else ""
    return (
        "<h2>Artifacts</h2><table><tr><th>path</th><th>kind</th><th>format</th><th>sha256</th><th>bytes</th><th>facts</th></tr>"
        f"{rows}</table>{note}"
    )


def _facts(facts: Mapping[str, Any]) -> str:
    keep = {
        k: v for k, v in facts.items() if k in ("hf_repository", "hf_revision", "producer", "opset", "parameters", "rows", "user")
    }
    return "<br>".join(f"{_t(k)}: {_t(v)}" for k, v in sorted(keep.items()))


def _gaps(report: ScanReport) -> str:
    rows = [
        f'<tr><td>error</td><td class="mono">{_where(e.path, e.member)}</td><td>{_t(e.reason)}</td></tr>' for e in report.errors
    ]
    rows += [
        f'<tr><td>skipped</td><td class="mono">{_where(s.path, s.member)}</td><td>{_t(s.reason)}</td></tr>'
        for s in report.skipped
    ]
    if not rows:
        return "<h2>Coverage</h2><p>Every input was read.</p>"
    return "<h2>Coverage</h2><p>These were not fully read; the scan is incomplete.</p><table>" + "".join(rows) + "</table>"


def _ledger(entries: Sequence[Entry]) -> str:
    rows = "".join(
        f"<tr><td>{e.seq}</td><td>{_t(e.at)}</td><td>{_t(e.kind)}</td><td>{_t(e.actor)}</td>"
        f'<td>{_t(e.result.get("verdict", e.result.get("allowed", "")))}</td><td class="mono">{_t(e.hash[:16])}…</td></tr>'
        for e in entries
    )
    return (
        "<h2>Audit ledger</h2><p>The entries about these artifacts, in chain order (verify with "
        "<code>mlsec audit verify</code>).</p><table><tr><th>#</th><th>at</th><th>what</th><th>who</th><th>result</th>"
        f"<th>hash</th></tr>{rows}</table>"
    )

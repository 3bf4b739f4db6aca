"""The GitHub Action's one step: scan, gate, write SARIF, summary, annotations and outputs, sign; exit with the gate's code.

Inputs arrive as MLSEC_INPUT_* environment variables (action.yml passes them through `env:`, so no
input is ever interpolated into a script). Everything is done through the `mlsec` command, as a user
would run it; this script only reads what it wrote and speaks GitHub's files and workflow commands.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

INPUTS = ("paths", "stage", "policies", "fail-on", "formats", "sarif", "sign", "mlbom", "reference-dataset", "extra-args")
SEVERITIES = ("info", "low", "medium", "high", "critical")
SARIF_MAX_RESULTS = 25_000  # GitHub code scanning's limit per run
SARIF_MAX_BYTES = 10 << 20  # and per upload
SUMMARY_MAX_BYTES = 1 << 20  # $GITHUB_STEP_SUMMARY's limit per step
MAX_ERROR_ANNOTATIONS = 10  # GitHub shows at most 10 error annotations per step


def read_inputs(env: dict[str, str]) -> dict[str, str]:
    """Every input of action.yml, from MLSEC_INPUT_<NAME>, stripped."""
    return {name: env.get("MLSEC_INPUT_" + name.upper().replace("-", "_"), "").strip() for name in INPUTS}


def lines(value: str) -> list[str]:
    return [item.strip() for item in value.replace(",", "\n").splitlines() if item.strip()] if value else []


def scan_command(inputs: dict[str, str], workspace: Path, out: dict[str, Path]) -> list[str]:
    cmd = [sys.executable, "-m", "mlsec", "scan", *[str(workspace / p) for p in lines(inputs["paths"]) or ["."]]]
    cmd += ["-o", f"json={out['report']}", "--fail-on", inputs["fail-on"] or "high"]
    if out.get("sarif"):
        cmd += ["-o", f"sarif={out['sarif']}"]
    if "table" in lines(inputs["formats"]):
        cmd += ["-o", "table"]
    stage = inputs["stage"] or "pr"
    if stage != "none":
        cmd += [
            "--gate",
            "--stage",
            stage,
            "--gate-output",
            f"json={out['decision']}",
            "--gate-output",
            f"markdown={out['decision_md']}",
        ]
        for policy in lines(inputs["policies"]):
            cmd += ["--policies", str(workspace / policy)]
    return cmd + shlex.split(inputs["extra-args"])


def truncate_sarif(path: Path, max_results: int = SARIF_MAX_RESULTS, max_bytes: int = SARIF_MAX_BYTES) -> int:
    """Keep the most severe results within GitHub's limits, with a note saying how many were left out."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    run = doc["runs"][0]
    results = run.get("results", [])
    order = {"error": 0, "warning": 1, "note": 2, "none": 3}
    results.sort(key=lambda r: order.get(r.get("level", "warning"), 1))
    keep = min(len(results), max_results)
    while True:
        run["results"] = results[:keep]
        omitted = len(results) - keep
        if omitted:
            note = {
                "level": "warning",
                "message": {
                    "text": f"mlsec: {omitted} of {len(results)} results omitted to fit GitHub's limits; the JSON report has all of them."
                },
            }
            notes = run.setdefault("invocations", [{"executionSuccessful": True}])[0].setdefault("toolExecutionNotifications", [])
            notes[:] = [n for n in notes if not n.get("message", {}).get("text", "").startswith("mlsec: ")] + [note]
        text = json.dumps(doc, indent=2)
        if len(text.encode()) <= max_bytes or keep == 0:
            path.write_text(text, encoding="utf-8")
            return omitted
        keep //= 2


def escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def annotations(report: dict[str, Any], fail_on: str, workspace: Path) -> list[str]:
    """Workflow commands: one ::error per blocking finding (at most 10), then a notice for the rest."""
    floor = SEVERITIES.index(fail_on) if fail_on in SEVERITIES else SEVERITIES.index("high")
    blocking = [f for f in report.get("findings", []) if SEVERITIES.index(f["severity"]) >= floor]
    blocking.sort(key=lambda f: -SEVERITIES.index(f["severity"]))
    out = []
    for f in blocking[:MAX_ERROR_ANNOTATIONS]:
        path = Path(f["location"]["path"])
        rel = path.relative_to(workspace) if path.is_absolute() and path.is_relative_to(workspace) else path
        member = f" [{f['location']['member']}]" if f["location"].get("member") else ""
        title = f"{f['rule_id']} ({f['severity']})"
        out.append(
            f"::error file={escape_property(str(rel))},title={escape_property(title)}::{escape_data(f['message'] + member)}"
        )
    if len(blocking) > MAX_ERROR_ANNOTATIONS:
        out.append(
            f"::notice title=mlsec::{len(blocking) - MAX_ERROR_ANNOTATIONS} more blocking findings: see the job summary and the report"
        )
    return out


def summary(report: dict[str, Any] | None, decision_md: str, notes: Sequence[str]) -> str:
    """Markdown for $GITHUB_STEP_SUMMARY: the decision, the counts, the top findings; under 1 MiB."""
    parts = [decision_md.strip() or "## mlsec"]
    if report is not None:
        counts = report["summary"]["findings"]
        parts.append(
            f"**{report['summary']['artifacts']} artifacts scanned**: "
            + ", ".join(f"{counts[s]} {s}" for s in reversed(SEVERITIES) if counts.get(s))
            + (f"; {report['summary']['errors']} errors" if report["summary"]["errors"] else "")
            + (f"; {report['summary']['skipped']} skipped" if report["summary"]["skipped"] else "")
        )
        findings = sorted(report["findings"], key=lambda f: -SEVERITIES.index(f["severity"]))[:20]
        if findings:
            rows = ["| severity | rule | where | what |", "|---|---|---|---|"]
            for f in findings:
                where = f["location"]["path"] + (f" [{f['location']['member']}]" if f["location"].get("member") else "")
                cells = [f["severity"], f["rule_id"], where, f["evidence"]["summary"][:200]]
                rows.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
            parts.append("### Top findings\n\n" + "\n".join(rows))
    parts += [f"> {note}" for note in notes]
    text = "\n\n".join(parts) + "\n"
    if len(text.encode()) > SUMMARY_MAX_BYTES:
        text = (
            text.encode()[: SUMMARY_MAX_BYTES - 200].decode("utf-8", "ignore")
            + "\n\n> (summary truncated to GitHub's 1 MiB limit)\n"
        )
    return text


def write_outputs(path: str | None, values: dict[str, str]) -> None:
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        for key, value in values.items():
            if "\n" in value:
                delimiter = f"mlsec_{uuid.uuid4().hex}"
                fh.write(f"{key}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                fh.write(f"{key}={value}\n")


def main(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    inputs = read_inputs(env)
    workspace = Path(env.get("GITHUB_WORKSPACE") or os.getcwd()).resolve()
    temp = Path(env.get("RUNNER_TEMP") or workspace)
    out = {
        "report": workspace / "mlsec-report.json",
        "decision": temp / "mlsec-decision.json",
        "decision_md": temp / "mlsec-decision.md",
    }
    if inputs["sarif"]:
        out["sarif"] = workspace / inputs["sarif"]
    if inputs["mlbom"]:
        out["mlbom"] = workspace / inputs["mlbom"]
    notes: list[str] = []
    if inputs["reference-dataset"]:
        notes.append(f"reference-dataset {inputs['reference-dataset']!r} is not used yet: this action runs no evaluations")
        print(f"::warning title=mlsec::{escape_data(notes[-1])}")
    scan = subprocess.run(scan_command(inputs, workspace, out), cwd=workspace, env=env, check=False)
    code = scan.returncode
    report = json.loads(out["report"].read_text()) if out["report"].is_file() else None
    if out.get("sarif") and out["sarif"].is_file():
        omitted = truncate_sarif(out["sarif"])
        if omitted:
            notes.append(f"{omitted} SARIF results were left out to fit GitHub's limits")
    if out.get("mlbom") and report is not None:
        bom = subprocess.run(
            [sys.executable, "-m", "mlsec", "bom", "--report", str(out["report"]), "-o", f"mlbom={out['mlbom']}"], check=False
        )
        if bom.returncode != 0:
            notes.append("the ML-BOM could not be written")
    sign = inputs["sign"] or "none"
    if sign != "none" and report is not None:
        targets = [str(out["report"])] + ([str(out["mlbom"])] if out.get("mlbom") and out["mlbom"].is_file() else [])
        how = ["--keyless"] if sign == "keyless" else ["--key", str(workspace / sign)]
        if subprocess.run([sys.executable, "-m", "mlsec", "sign", *targets, *how], check=False).returncode != 0:
            notes.append("signing failed: the outputs are not signed")
            code = code or 3
    decision = json.loads(out["decision"].read_text()) if out["decision"].is_file() else None
    decision_md = out["decision_md"].read_text() if out["decision_md"].is_file() else ""
    for line in annotations(report or {}, inputs["fail-on"] or "high", workspace):
        print(line)
    if env.get("GITHUB_STEP_SUMMARY"):
        with open(env["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(summary(report, decision_md, notes))
    counts = report["summary"]["findings"] if report else {}
    floor = SEVERITIES.index(inputs["fail-on"]) if inputs["fail-on"] in SEVERITIES else SEVERITIES.index("high")
    verdict = "error" if code not in (0, 1) else "allowed" if code == 0 else "denied"
    if decision is not None:
        verdict = "allowed" if decision["allowed"] else "denied"
    write_outputs(
        env.get("GITHUB_OUTPUT"),
        {
            "decision": verdict,
            "report": str(out["report"]) if report else "",
            "sarif": str(out["sarif"]) if out.get("sarif") and out["sarif"].is_file() else "",
            "mlbom": str(out["mlbom"]) if out.get("mlbom") and out["mlbom"].is_file() else "",
            "findings": json.dumps(counts, sort_keys=True),
            "findings-blocking": str(sum(n for s, n in counts.items() if SEVERITIES.index(s) >= floor)),
        },
    )
    return code


if __name__ == "__main__":
    sys.exit(main())

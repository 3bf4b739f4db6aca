"""Every documented exit code, through the real `mlsec` command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlsec.cli import main
from mlsec.findings import Evidence, Finding, Location, Severity
from mlsec.report import EXIT_STATUS, EvaluationResult, ScanError, ScanReport
from tests.conftest import fixture


def _mlsec(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlsec", *args], capture_output=True, text=True, cwd=cwd, timeout=300, env=os.environ
    )


def test_0_clean() -> None:
    result = _mlsec("scan", fixture("models/benign/state_dict.pt"))
    assert result.returncode == 0, result.stderr
    assert "no findings" in result.stdout


def test_1_blocked_by_default_threshold() -> None:
    result = _mlsec("scan", fixture("models/malicious/os_system_protocol2.pkl"))
    assert result.returncode == 1
    assert "MLSEC-PICKLE-001" in result.stdout


def test_fail_on_raises_and_lowers_the_bar() -> None:
    medium = fixture("models/suspicious/unknown_class_build.pkl")
    assert _mlsec("scan", medium).returncode == 0
    assert _mlsec("scan", "--fail-on", "medium", medium).returncode == 1
    assert _mlsec("scan", "--fail-on", "critical", fixture("archives/hostile/traversal.zip")).returncode == 1


@pytest.mark.parametrize(
    "args",
    [
        ("scan",),
        ("scan", "/no/such/path"),
        ("scan", "--fail-on", "severe", "."),
        ("scan", "-o", "xml", "."),
        ("scan", "-o", "json", "-o", "table", "."),
    ],
)
def test_2_usage(args: tuple[str, ...]) -> None:
    result = _mlsec(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_2_invalid_rules_dir_lists_every_problem(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        '[[rule]]\nid = "X-1"\nname = "x"\nseverity = "severe"\ntitle = "t"\nhelp = "h"\n'
        '[[rule]]\nid = "X-2"\nname = "y"\nseverity = "low"\ntitle = "t"\nhelp = "h"\nframeworks = { nist = ["A"] }\n'
    )
    result = _mlsec("scan", "--rules", str(tmp_path), fixture("models/benign/weights.npy"))
    assert result.returncode == 2
    assert "X-1" in result.stderr
    assert "X-2" in result.stderr
    assert "Traceback" not in result.stderr


def test_3_incomplete_when_nothing_blocks() -> None:
    result = _mlsec("scan", fixture("models/malformed/truncated.pt"), fixture("models/benign/weights.npy"))
    assert result.returncode == 3
    assert "truncated.pt" in result.stdout
    assert "Traceback" not in result.stderr


def test_1_wins_over_3() -> None:
    result = _mlsec("scan", fixture("models/malformed/truncated.pt"), fixture("models/malicious/payload.joblib"))
    assert result.returncode == 1


def _report(findings: tuple[str, ...] = (), errors: int = 0, evaluations: tuple[str, ...] = ()) -> ScanReport:
    def finding(severity: str) -> Finding:
        return Finding("MLSEC-TEST-001", Severity.parse(severity), "m", Location("m.pkl"), Evidence("s", {}, "test"))

    return ScanReport(
        "0", "sha256:x", "t0", "t1", ("m.pkl",), artifacts=(),
        findings=tuple(finding(s) for s in findings),
        errors=tuple(ScanError("m.pkl", "unreadable") for _ in range(errors)),
        evaluations=tuple(EvaluationResult("adversarial", s, "a" * 64, None, {}, {}, Evidence("s", {}, "t"), 0.0) for s in evaluations),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("report", "fail_on", "verdict", "code"),
    [
        (_report(), "high", "clean", 0),
        (_report(("medium",)), "high", "clean", 0),
        (_report(("medium",)), "medium", "blocked", 1),
        (_report(("high",), errors=1), "high", "blocked", 1),
        (_report(("low",), errors=1), "high", "incomplete", 3),
        (_report(evaluations=("ok", "error")), "high", "incomplete", 3),
        (_report(evaluations=("refused",)), "critical", "blocked", 1),  # the model failed its own scan
    ],
)
def test_one_verdict_for_every_reader(report: ScanReport, fail_on: str, verdict: str, code: int) -> None:
    """scan, evaluate, `mlsec run` and the registry read a report by one rule (ScanReport.verdict)."""
    from mlsec.cli.scan import exit_code

    assert report.verdict(Severity.parse(fail_on)) == verdict
    assert exit_code(report, Severity.parse(fail_on)) == EXIT_STATUS[verdict] == code


def test_4_internal_error_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("mlsec.cli.scan.scan", broken)
    result = CliRunner().invoke(main, ["scan", fixture("models/benign/weights.npy")])
    assert result.exit_code == 4
    assert "internal error" in result.output
    assert "Traceback" not in result.output


def test_outputs_to_files_and_never_over_an_input(tmp_path: Path) -> None:
    evil = tmp_path / "m.pkl"
    evil.write_bytes(Path(fixture("models/malicious/os_system_protocol2.pkl")).read_bytes())
    result = _mlsec("scan", str(evil), "-o", f"json={tmp_path / 'r.json'}", "-o", f"sarif={tmp_path / 'r.sarif'}")
    assert result.returncode == 1
    assert json.loads((tmp_path / "r.json").read_text())["findings"][0]["rule_id"] == "MLSEC-PICKLE-001"
    assert json.loads((tmp_path / "r.sarif").read_text())["version"] == "2.1.0"
    before = evil.read_bytes()
    clash = _mlsec("scan", str(evil), "-o", f"json={evil}")
    assert clash.returncode == 2
    assert "over an input" in clash.stderr
    assert evil.read_bytes() == before


def test_rules_list_and_show() -> None:
    listing = _mlsec("rules", "list", "--json")
    assert listing.returncode == 0
    ids = [r["id"] for r in json.loads(listing.stdout)["rules"]]
    assert "MLSEC-PICKLE-001" in ids
    shown = _mlsec("rules", "show", "mlsec-archive-001")
    assert shown.returncode == 0
    assert "CWE-22" in shown.stdout
    missing = _mlsec("rules", "show", "MLSEC-NOPE-001")
    assert missing.returncode == 2
    assert "unknown rule id" in missing.stderr


def test_an_output_to_a_device_or_fifo_is_written_into_never_replaced(tmp_path: Path) -> None:
    """`-o json=/dev/null` once replaced /dev/null with a regular file (run as root, the rename succeeds).
    A FIFO stands in for the device here: the report must arrive through it, and it must stay a FIFO."""
    import stat
    import threading

    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = _mlsec("scan", fixture("models/benign/sklearn_pipeline.pkl"), "-o", f"json={fifo}")
    reader.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(received[0])["summary"]["artifacts"] == 1
    assert stat.S_ISFIFO(fifo.stat().st_mode)

"""The HTML compliance report: self-contained, escaped, grouped by framework control, with the gate's
decision and the ledger entries; rendered by a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlsec import load_ruleset, scan
from mlsec.cli import main
from mlsec.outputs.html import render
from tests.conftest import fixture

HOSTILE_NAMES = fixture("hostile/names_control_chars.zip")
EVIL = fixture("examples/demo/downloaded_model.pkl")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _html(*paths: str) -> str:
    return render(scan(list(paths)), load_ruleset())


def test_hostile_names_are_escaped_and_nothing_can_run_or_load() -> None:
    page = _html(HOSTILE_NAMES)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.pkl" in page
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", page), "a raw control or bidi character reached the page"
    assert "\\x1b[31mred\\x1b[0m.pkl" in page
    assert not re.search(r"<script|<link|<iframe|<img|\ssrc=|@import|url\(", page, re.IGNORECASE)
    assert "default-src 'none'" in page  # and a policy that would block them anyway


def test_findings_are_grouped_by_each_framework_control() -> None:
    page = _html(EVIL)
    for title in ("MITRE ATLAS", "OWASP Machine Learning Security Top 10 (2023)", "NIST AI Risk Management Framework 1.0"):
        assert f"<h3>{title}</h3>" in page
    row = re.search(r"<tr><td>AML\.T0011\.000</td><td>User Execution: Unsafe AI Artifacts</td><td>(\d+)</td>", page)
    assert row
    assert row.group(1) == "1"
    assert '<a href="#MLSEC-PICKLE-001">' in page
    assert 'id="MLSEC-PICKLE-001"' in page
    assert '<span class="verdict fail">BLOCKED</span>' in page


def test_scan_and_gate_write_it_with_the_decision_and_the_ledger(tmp_path: Path) -> None:
    runner, ledger = CliRunner(), str(tmp_path / "audit.db")
    page, report = tmp_path / "report.html", tmp_path / "report.json"
    result = runner.invoke(main, ["scan", EVIL, "--gate", "--ledger", ledger, "-o", f"json={report}", "-o", f"html={page}"])
    assert result.exit_code == 1
    text = page.read_text()
    assert "DENIED at stage pr" in text
    assert "<h2>Audit ledger</h2>" in text
    assert re.findall(r"<tr><td>(\d+)</td><td>", text) == ["1", "2"]  # the scan and its gate, both written before the page
    gated = tmp_path / "gate.html"
    assert runner.invoke(main, ["gate", "--report", str(report), "--ledger", ledger, "-o", f"html={gated}"]).exit_code == 1
    entries = re.findall(r"<tr><td>(\d+)</td><td>", gated.read_text())
    assert entries == ["1", "2", "3"]  # scan, the scan's gate, and this gate


def test_the_report_signs_and_verifies_like_any_output(tmp_path: Path) -> None:
    runner = CliRunner()
    page = tmp_path / "report.html"
    runner.invoke(main, ["scan", EVIL, "-o", f"html={page}"])
    runner.invoke(main, ["keygen", "--private", str(tmp_path / "k"), "--public", str(tmp_path / "k.pub")])
    assert runner.invoke(main, ["sign", str(page), "--key", str(tmp_path / "k")]).exit_code == 0
    assert runner.invoke(main, ["verify", str(page), "--key", str(tmp_path / "k.pub")]).exit_code == 0
    page.write_text(page.read_text().replace("BLOCKED", "PASSED"))
    assert runner.invoke(main, ["verify", str(page), "--key", str(tmp_path / "k.pub")]).exit_code == 1


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's package)")
def test_chromium_renders_it_without_console_errors_and_takes_a_screenshot(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(_html(EVIL, HOSTILE_NAMES, fixture("serving/billion-laughs.yaml")))
    shot = tmp_path / "report.png"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    run = subprocess.run(
        [*base, "--window-size=1280,2000", f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert "mlsec compliance report" in dom.stdout
    assert "Findings by framework control" in dom.stdout
    console = [line for line in run.stderr.splitlines() + dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # the page logs nothing: no scripts, no blocked loads


def test_evaluation_results_are_charted() -> None:
    from dataclasses import replace

    from mlsec.findings import Evidence
    from mlsec.report import EvaluationResult

    result = EvaluationResult(
        name="adversarial/pgd-linf", status="completed", artifact_sha256="ab" * 32, dataset_sha256=None,
        parameters={"eps": 0.1}, metrics={"clean_accuracy": 0.97, "robust_accuracy": 0.41},
        evidence=Evidence(summary="worst case over attacks", facts={}, source="test"), seconds=12.5,
    )  # fmt: skip
    page = render(replace(scan([EVIL]), evaluations=(result,)), load_ruleset())
    assert "<h2>Evaluations</h2>" in page
    assert "robust_accuracy: 0.410" in page
    assert '<rect width="82.0" height="10"' in page  # 0.41 of a 200-pixel bar

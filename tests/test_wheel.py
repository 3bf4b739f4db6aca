"""The built wheel carries rules/ and policies/ as package data, and a scan (and gate) from it uses that copy."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT, fixture


def test_installed_wheel_finds_its_bundled_rules_and_scans(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("mlsec-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import mlsec, mlsec.bundled as b; print(mlsec.__file__); print(b.rules_dir())"
    where = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    module_file, rules_dir = where.stdout.split()
    assert module_file.startswith(str(site))
    assert rules_dir == str(site / "mlsec" / "_bundled" / "rules")

    def mlsec(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlsec", *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
        )

    scan = mlsec("scan", fixture("models/malicious/os_system_protocol2.pkl"))
    assert scan.returncode == 1, scan.stderr
    assert "MLSEC-PICKLE-001" in scan.stdout
    # the shipped gates travel in the wheel too, and decide from there
    gated = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlsec",
            "scan",
            fixture("models/malicious/os_system_protocol2.pkl"),
            "--gate",
            "-o",
            "json=r.json",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert gated.returncode == 1, gated.stderr
    assert "MLSEC-GATE-001" in gated.stderr
    assert (site / "mlsec" / "_bundled" / "policies" / "gates" / "no_blocking_findings.rego").is_file()

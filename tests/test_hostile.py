"""Hostile inputs, one test each: every one ends as findings or errors with the documented exit code,
never a traceback, and in bounded memory (the acceptance bound: 500 MB per `mlsec scan` process).

The command runs as a user runs it (`python -m mlsec scan ...`), and its peak memory comes from the
kernel (VmHWM). Time per file is measured by benchmarks/bench_hostile.py, not asserted here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from mlsec import scan, scan_bytes
from mlsec.deadline import ScanTimeout, deadline
from mlsec.report import ScanError
from tests.conftest import FIXTURES, fixture

ROOT = Path(__file__).resolve().parents[1]
MAX_RSS = 500 * 1024 * 1024
SARIF_SCHEMA = json.loads((ROOT / "tests" / "schemas" / "sarif-2.1.0.json").read_text())


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    max_rss: int


# benchmarks/mlsec_peak.py reads the peak in the child (VmHWM: since exec); the kernel's ru_maxrss would
# also count the memory of the pytest process the child was forked from.
PEAK = ROOT / "benchmarks" / "mlsec_peak.py"


def mlsec(*args: str) -> Run:
    """`python -m mlsec ARGS`, with its peak resident memory in bytes."""
    proc = subprocess.run([sys.executable, str(PEAK), *args], capture_output=True, cwd=ROOT, timeout=300, check=False)
    stderr, _, peak = proc.stderr.decode().rpartition("\nMLSEC_PEAK_KIB=")
    run = Run(proc.returncode, proc.stdout.decode(), stderr, int(peak) * 1024)
    assert "Traceback" not in run.stderr, run.stderr
    assert run.max_rss < MAX_RSS, f"{args}: peak memory {run.max_rss / 2**20:.0f} MiB"
    return run


def rules_of(run: Run) -> set[str]:
    return {f["rule_id"] for f in json.loads(run.stdout)["findings"]}


def test_zip_bomb_flat() -> None:
    run = mlsec("scan", fixture("archives/hostile/bomb.zip"), "-o", "json")
    assert (run.code, rules_of(run)) == (1, {"MLSEC-ARCHIVE-005"})
    assert [e["error_type"] for e in json.loads(run.stdout)["errors"]] == ["LimitExceeded"]


def test_zip_bomb_nested() -> None:
    run = mlsec("scan", fixture("hostile/zip_bomb_nested.zip"), "-o", "json")
    report = json.loads(run.stdout)
    assert (run.code, rules_of(run)) == (1, {"MLSEC-ARCHIVE-005"})
    assert len(report["findings"]) == 8  # one per inner bomb, none unpacked


def test_gzip_bomb() -> None:
    run = mlsec("scan", fixture("archives/hostile/bomb.gz"), "-o", "json")
    assert (run.code, rules_of(run)) == (1, {"MLSEC-ARCHIVE-005"})


def test_tar_with_dotdot_and_absolute_names() -> None:
    run = mlsec("scan", fixture("hostile/tar_traversal.tar"), fixture("archives/hostile/absolute.tar"), "-o", "json")
    assert (run.code, rules_of(run)) == (1, {"MLSEC-ARCHIVE-001", "MLSEC-ARCHIVE-002"})


def test_symlinks_and_hard_links_pointing_outside(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "model.pkl").symlink_to("/etc/passwd")
    run = mlsec(
        "scan", fixture("archives/hostile/links.tar"), fixture("archives/hostile/symlink_member.zip"), str(tmp_path / "tree"),
        "-o", "json",
    )  # fmt: skip
    report = json.loads(run.stdout)
    assert (run.code, rules_of(run)) == (1, {"MLSEC-ARCHIVE-003"})
    assert [s["reason"] for s in report["skipped"]] == ["symbolic link not followed"]  # never read /etc/passwd


def test_device_files_and_fifos(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    os.mkfifo(tmp_path / "tree" / "model.pkl")  # opening it would block forever: it must not be opened
    run = mlsec("scan", fixture("archives/hostile/device.tar"), str(tmp_path / "tree"), "-o", "json")
    report = json.loads(run.stdout)
    assert (run.code, rules_of(run)) == (1, {"MLSEC-ARCHIVE-004"})
    assert [s["reason"] for s in report["skipped"]] == ["not a regular file (device, FIFO or socket)"]


def test_sparse_4gb_member() -> None:
    run = mlsec("scan", fixture("hostile/tar_sparse_4g.tar"), "-o", "json")
    report = json.loads(run.stdout)
    assert (run.code, rules_of(run)) == (3, {"MLSEC-LIMIT-001"})
    assert "4294967296 bytes" in report["errors"][0]["reason"]


def test_pickle_deep_nesting() -> None:
    run = mlsec("scan", fixture("hostile/pickle_deep_nesting.pkl"), "-o", "json")
    assert (run.code, rules_of(run)) == (0, {"MLSEC-PICKLE-009"})  # fickling's expansion warning, medium


def test_pickle_huge_memo() -> None:
    run = mlsec("scan", fixture("hostile/pickle_huge_memo.pkl"), "--limit", "max_pickle_memo=1000", "-o", "json")
    report = json.loads(run.stdout)
    assert (run.code, rules_of(run)) == (3, {"MLSEC-LIMIT-001"})
    assert "pickle memo entries limit exceeded: 1001 > 1000" in report["errors"][0]["reason"]


def test_pickle_long4_giants() -> None:
    run = mlsec("scan", fixture("hostile/pickle_long4_giant.pkl"), "-o", "json")
    assert (run.code, rules_of(run)) == (1, {"MLSEC-PICKLE-010"})


def test_onnx_lying_headers() -> None:
    run = mlsec("scan", fixture("hostile/onnx_lying_dims.onnx"), "-o", "json")
    assert (run.code, rules_of(run)) == (1, {"MLSEC-ONNX-006", "MLSEC-ONNX-007"})
    many = mlsec("scan", fixture("hostile/onnx_many_nodes.onnx"), "--limit", "max_onnx_nodes=100", "-o", "json")
    assert (many.code, rules_of(many)) == (3, {"MLSEC-LIMIT-001"})


def test_safetensors_lying_headers() -> None:
    paths = [
        fixture(f"models/{p}.safetensors")
        for p in (
            "malformed/safetensors_huge_header",
            "malicious/safetensors_out_of_range",
            "malformed/safetensors_dtype_mismatch",
        )
    ]
    run = mlsec("scan", *paths, "-o", "json")
    assert run.code == 1
    assert rules_of(run) <= {f"MLSEC-SAFETENSORS-00{i}" for i in range(1, 10)}
    assert len(json.loads(run.stdout)["findings"]) >= 3


def test_numpy_header_with_impossible_shape() -> None:
    run = mlsec("scan", fixture("hostile/numpy_huge_shape.npy"), "-o", "json")
    assert run.code == 3
    assert "declares shape (4294967296, 4294967296, 4294967296)" in json.loads(run.stdout)["errors"][0]["reason"]


def test_csv_with_a_100_mb_single_line(tmp_path: Path) -> None:
    path = tmp_path / "one_line.csv"
    with path.open("wb") as fh:
        for _ in range(100):
            fh.write(b"a" * 1_000_000)
    run = mlsec("scan", str(path), "-o", "json")
    assert (run.code, rules_of(run)) == (3, {"MLSEC-LIMIT-001"})
    assert "max_line_bytes" in json.loads(run.stdout)["errors"][0]["reason"]


def test_csv_with_millions_of_fields_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_bytes(b"x,y\n" + b"1," * 5_000_000)  # 24 GB of pandas tokens before max_row_fields existed
    run = mlsec("scan", str(path), "-o", "json")
    assert (run.code, rules_of(run)) == (3, {"MLSEC-LIMIT-001"})
    assert "max_row_fields" in json.loads(run.stdout)["errors"][0]["reason"]


def test_seconds_limit_stops_a_slow_artifact() -> None:
    run = mlsec("scan", fixture("hostile/pickle_deep_nesting.pkl"), "--limit", "max_seconds=0.05", "-o", "json")
    report = json.loads(run.stdout)
    assert (run.code, rules_of(run)) == (3, {"MLSEC-LIMIT-001"})
    assert "max_seconds" in report["errors"][0]["reason"]


def test_deadline_interrupts_and_puts_back_the_handler_and_timer_it_found() -> None:
    def mine(signum: int, frame: object) -> None:
        raise AssertionError("the caller's handler ran during a deadline")

    previous = signal.signal(signal.SIGALRM, mine)
    try:
        with pytest.raises(ScanTimeout):
            _spin_under(deadline(0.02))
        with deadline(30):
            assert signal.getitimer(signal.ITIMER_REAL)[0] > 29
        assert signal.getsignal(signal.SIGALRM) is mine
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    with deadline(30):
        pass
    assert signal.getsignal(signal.SIGALRM) == previous


def _spin_under(limit: deadline) -> None:
    with limit:
        while True:
            pass


def test_control_characters_and_non_utf8_names(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    odd = tmp_path / "tree" / os.fsdecode(b"file-\xff\x1b.pkl")  # a file name that is not UTF-8, with an escape
    shutil.copyfile(fixture("hostile/names_not_utf8.tar"), odd)
    paths = [fixture("hostile/names_control_chars.zip"), fixture("hostile/names_not_utf8.tar"), str(tmp_path / "tree")]
    table = mlsec("scan", *paths)
    assert table.code == 1
    for raw in ("\x1b", "\r", "\x07", "\t", "\u202e"):
        assert raw not in table.stdout, f"{raw!r} reached the terminal"
    assert table.stdout.count("\n") == len(table.stdout.splitlines())  # no row was split by a name
    assert "\\x1b[31mred\\x1b[0m.pkl" in table.stdout
    assert "\\u202etxt.pkl" in table.stdout

    sarif, report = tmp_path / "r.sarif", tmp_path / "r.json"
    mlsec("scan", *paths, "-o", f"sarif={sarif}", "-o", f"json={report}")
    for out in (sarif, report):
        text = out.read_bytes().decode("utf-8")  # strict: names that were not UTF-8 are still valid UTF-8 here
        assert not any(ord(c) < 0x20 and c not in "\n" for c in text), f"raw control character in {out.name}"
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(json.loads(sarif.read_text()))
    members = {f["location"]["member"] for f in json.loads(report.read_text())["findings"]}
    assert "\x1b[31mred\x1b[0m.pkl" in members  # JSON keeps the real name, escaped by the encoder
    assert "bad-\\xff\\xfe.pkl" in members  # bytes that were not UTF-8, shown as \\xNN
    paths_seen = {f["location"]["path"] for f in json.loads(report.read_text())["findings"]}
    assert str(tmp_path / "tree" / "file-\\xff\x1b.pkl") in paths_seen


def _fixture_files() -> list[Path]:
    skip = (FIXTURES / "advisories", FIXTURES / "signatures")
    return sorted(
        p for p in FIXTURES.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".toml", ".md") and not any(p.is_relative_to(s) for s in skip)
    )  # fmt: skip


def test_truncated_everything(tmp_path: Path) -> None:
    """Every fixture cut at a third, two thirds and one byte short: errors and findings, never a bug."""
    bugs = []
    for path in _fixture_files():
        data = path.read_bytes()
        for cut in sorted({len(data) // 3, 2 * len(data) // 3, max(len(data) - 1, 0)}):
            target = tmp_path / path.name
            target.write_bytes(data[:cut])
            for report in (scan([str(target)]), scan_bytes(path.name, data[:cut])):  # from disk, and as fuzz/ reads
                bugs += [(str(path.relative_to(FIXTURES)), cut, e.scanner, e.reason) for e in report.errors if e.is_bug]
            target.unlink()
    assert bugs == []


def test_hostile_set_scans_in_one_run_within_the_memory_bound() -> None:
    run = mlsec("scan", str(FIXTURES / "hostile"), str(FIXTURES / "archives" / "hostile"), "-o", "json")
    report = json.loads(run.stdout)
    assert run.code == 1
    assert len(report["artifacts"]) > 20
    assert report["errors"]


def test_errors_that_only_a_bug_causes_are_told_apart() -> None:
    assert ScanError("m.pkl", "TypeError: 'NoneType' object is not iterable", None, "pickle", "TypeError").is_bug
    assert ScanError("a.zip", "reading stopped: struct.error", None, "inputs", "error").is_bug
    assert not ScanError("m.pkl", "truncated", None, "pickle", "InputError").is_bug
    assert not ScanError("m.onnx", "ONNX nodes limit exceeded", None, "onnx", "LimitExceeded").is_bug
    assert not ScanError("a.zip", "unreadable zip: Bad magic number", None, "inputs.zip", "BadZipFile").is_bug


def test_fuzz_targets_cover_the_parsers_and_their_seeds_scan_cleanly() -> None:
    sys.path.insert(0, str(ROOT))
    from fuzz.run import NAMES
    from fuzz.targets import TARGETS

    assert tuple(sorted(TARGETS)) == NAMES
    for name, target in TARGETS.items():
        seeds = target.seed_files()
        assert seeds, f"fuzz target {name} has no seed fixtures"
        target.run(seeds[0].read_bytes())  # raises ScanBug if the harness's notion of a bug fires on a seed


def test_fuzz_regressions() -> None:
    """Inputs the fuzzers found that once failed (fixtures/fuzz/TARGET/*) scan without a bug."""
    sys.path.insert(0, str(ROOT))
    from fuzz.targets import TARGETS

    found = sorted(p for p in (FIXTURES / "fuzz").glob("*/*") if p.is_file())
    assert len(found) >= 30
    for path in found:
        TARGETS[path.parent.name].run(path.read_bytes())  # raises ScanBug on a regression

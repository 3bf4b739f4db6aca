"""Scans in forked children (mlsec/isolated.py). A command's scan too small for a pool still runs in a worker
process: a file that crashes native code, or keeps it running, is an error in the report, and the command goes on
and says so. And a pool's idle cores scan a head start while its parent imports the libraries workers share."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlsec.executors import InProcess
from mlsec.report import ScanReport
from mlsec.scan import Progress, _executor

from .conftest import FIXTURES
from .hostile import hostile_scan, npy_files


def test_a_file_that_crashes_native_code_is_an_error_and_the_others_are_scanned(tmp_path: Path) -> None:
    files = npy_files(tmp_path / "models", 3)
    child = hostile_scan("crash", "weights1.npy", *files)
    assert child.returncode == 3, child.stderr[-3000:]  # incomplete: an input could not be scanned
    report = ScanReport.from_json(child.stdout)
    assert [(Path(e.path).name, e.error_type) for e in report.errors] == [("weights1.npy", "WorkerDied")]
    assert "SIGSEGV (a crash in native code)" in report.errors[0].reason
    assert [Path(a.path).name for a in report.artifacts] == ["weights0.npy", "weights2.npy"]


def test_a_file_cut_short_while_a_worker_hashes_it_mapped_is_an_error_and_the_others_are_scanned(tmp_path: Path) -> None:
    """A worker hashes a file over 1 MiB from a mapping (inputs.hash_file): cut short meanwhile, touching what is
    gone ends the worker (SIGBUS), and that file is the error. The command's own process (-j 1) never maps a file:
    it reads it, and nothing is cut."""
    import numpy as np

    files = npy_files(tmp_path / "models", 3)
    np.save(files[1], np.zeros((512, 1024), np.float32))  # 2 MiB
    alone = hostile_scan("cut", "weights1.npy", *files, "-j", "1")
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert len(ScanReport.from_json(alone.stdout).artifacts) == 3
    assert Path(files[1]).stat().st_size > 2 << 20
    child = hostile_scan("cut", "weights1.npy", *files)
    assert child.returncode == 3, child.stderr[-3000:]
    assert Path(files[1]).stat().st_size == 0  # cut, once mapped
    report = ScanReport.from_json(child.stdout)
    assert [(Path(e.path).name, e.error_type) for e in report.errors] == [("weights1.npy", "WorkerDied")]
    assert "SIGBUS (a crash in native code, or a file cut short while it was read)" in report.errors[0].reason
    assert [Path(a.path).name for a in report.artifacts] == ["weights0.npy", "weights2.npy"]


def test_mlsec_failing_in_a_worker_is_an_error_for_that_file_without_a_traceback(tmp_path: Path) -> None:
    files = npy_files(tmp_path / "models", 3)
    child = hostile_scan("bug", "weights1.npy", *files)
    assert child.returncode == 3, child.stderr[-3000:]
    assert "Traceback" not in child.stderr
    assert "RuntimeError: a bug in mlsec" in child.stderr
    report = ScanReport.from_json(child.stdout)
    assert [(Path(e.path).name, e.error_type) for e in report.errors] == [("weights1.npy", "WorkerDied")]
    assert "run with --debug" in report.errors[0].reason
    assert [Path(a.path).name for a in report.artifacts] == ["weights0.npy", "weights2.npy"]


def test_one_file_alone_is_isolated_too(tmp_path: Path) -> None:
    (only,) = npy_files(tmp_path / "models", 1)
    child = hostile_scan("crash", "weights0.npy", only)
    assert child.returncode == 3, child.stderr[-3000:]
    report = ScanReport.from_json(child.stdout)
    assert [e.error_type for e in report.errors] == ["WorkerDied"]
    assert not report.artifacts


def test_in_the_commands_own_process_the_same_crash_ends_the_command(tmp_path: Path) -> None:
    """-j 1 asks for no worker (and --debug needs the scan in process): the crash is then the command's end, the
    behaviour every small scan had before it was isolated."""
    files = npy_files(tmp_path / "models", 3)
    child = hostile_scan("crash", "weights1.npy", *files, "-j", "1")
    assert child.returncode == -11
    assert child.stdout == ""


@pytest.mark.parametrize(
    ("does", "reason"),
    [
        ("hang", "native code still running at twice max_seconds"),  # of CPU (SIGPROF), or of wall-clock time on a busy CPU
        ("block", "stopped while scanning it: native code blocked past twice max_seconds of wall-clock time"),
    ],
)
def test_a_file_stuck_in_native_code_costs_its_worker_at_twice_max_seconds(tmp_path: Path, does: str, reason: str) -> None:
    """Running in C, the worker ends itself at twice max_seconds of CPU; blocked there without the CPU (its own timer
    never fires), it is stopped by its parent at twice max_seconds of wall-clock time (culprits.py)."""
    files = npy_files(tmp_path / "models", 3)
    started = time.monotonic()
    child = hostile_scan(does, "weights1.npy", *files, "--limit", "max_seconds=0.5")
    assert time.monotonic() - started < 25  # PBKDF2 alone would run for half a minute, and so would the wait
    assert child.returncode == 3, child.stderr[-3000:]
    report = ScanReport.from_json(child.stdout)
    assert [(Path(e.path).name, e.error_type) for e in report.errors] == [("weights1.npy", "WorkerDied")]
    assert reason in report.errors[0].reason
    assert [Path(a.path).name for a in report.artifacts] == ["weights0.npy", "weights2.npy"]


def _in_a_fresh_process(code: str, *args: str, **env: str) -> dict:
    """What `code` prints as JSON, run by a new interpreter: a process with no thread but its own, as a command's
    is (this test process may hold threads of earlier tests', and would then scan in process)."""
    run = [sys.executable, "-c", code, *args]
    child = subprocess.run(run, capture_output=True, text=True, timeout=300, check=False, env={**os.environ, **env})
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout)


_COMPARE = """
import json, sys
from mlsec.scan import scan
from mlsec.executors import forks_cheaply

def body(report):
    doc = report.to_dict()
    del doc["started_at"], doc["finished_at"]
    return doc

assert forks_cheaply()
seen = []
isolated = scan(sys.argv[1:], isolate=True, progress=seen.append)
print(json.dumps({
    "executors": sorted({p.executor for p in seen}),
    "calls": len(seen), "done": seen[-1].done, "total": seen[-1].total,
    "same": body(isolated) == body(scan(sys.argv[1:], jobs=1)),
    "findings": len(isolated.findings),
}))
"""


def test_an_isolated_scan_reports_what_a_scan_in_process_does() -> None:
    few = sorted(str(p) for p in (FIXTURES / "models").rglob("*") if p.is_file())[::4][:20]  # too few for a pool
    assert len({Path(p).suffix for p in few}) > 5
    seen = _in_a_fresh_process(_COMPARE, *few)
    assert seen["executors"] == ["worker process"]
    assert seen["calls"] == seen["done"] == seen["total"] == len(few)  # a call a file, as each ends
    assert seen["same"]
    assert seen["findings"] > 5


def test_what_the_caller_had_buffered_is_written_once(tmp_path: Path) -> None:
    """A forked child inherits this process's unwritten output buffers: flushed before the fork, not twice."""
    code = "import sys; from mlsec.scan import scan; print('said before the scan'); scan(sys.argv[1:], isolate=True)"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}  # standard output buffered
    files = npy_files(tmp_path / "models", 2)
    child = subprocess.run([sys.executable, "-c", code, *files], capture_output=True, text=True, timeout=120, env=env, check=True)
    assert child.stdout == "said before the scan\n"


def test_isolation_is_only_where_a_fork_is_cheap_and_safe() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:  # another thread could hold a lock the child would inherit held: this process scans, as before
        assert isinstance(_executor(None, None, 3, 1000, False, whole=True, isolate=True), InProcess)
    finally:
        stop.set()
        other.join()
    assert isinstance(_executor(None, None, 3, 1000, False, whole=True, isolate=False), InProcess)  # the library's default
    assert isinstance(_executor(None, 1, 3, 1000, False, whole=True, isolate=True), InProcess)  # -j 1
    assert isinstance(_executor(None, None, 3, 1000, True, whole=True, isolate=True), InProcess)  # --debug


def test_the_terminal_progress_bar_starts_no_thread() -> None:
    """rich's bar would redraw from a thread of its own, and a pool's parent with another thread alive needs a
    fork server; drawn as units finish, the bar leaves the process single-threaded, and still draws."""
    from mlsec.cli.progress import reporter

    leader, follower = pty.openpty()
    before = threading.active_count()
    with open(follower, "w", encoding="utf-8") as terminal, reporter("bar", stream=terminal) as update:
        assert update is not None
        assert threading.active_count() == before
        update(Progress(1, 2, 10, 20, 0, "worker process"))
        update(Progress(2, 2, 20, 20, 0, "worker process"))
        terminal.flush()
        drawn = b""
        while select.select([leader], [], [], 1)[0]:
            drawn += os.read(leader, 65536)
            if b"20/20 bytes" in drawn:
                break
    os.close(leader)
    assert b"scanning" in drawn
    assert b"20/20 bytes" in drawn  # the last update, drawn at once


_ONE_CORE = """
import json, os, sys
from mlsec.scan import scan

scanning = sys.modules["mlsec.scan"]  # (the package's attribute `scan` is the function)

def body(report):
    doc = report.to_dict()
    del doc["started_at"], doc["finished_at"]
    return doc

scanning.cpu_count = lambda: 1
scanning.CHUNK_UNITS = 8
children = []
real_fork = os.fork

def counted_fork():
    pid = real_fork()
    if pid:
        children.append(pid)
    return pid

os.fork = counted_fork
seen = []
isolated = scan(sys.argv[1:], isolate=True, progress=seen.append)
os.fork = real_fork
print(json.dumps({
    "executors": sorted({p.executor for p in seen}), "children": len(children), "total": seen[-1].total,
    "same": body(isolated) == body(scan(sys.argv[1:], jobs=1)),
}))
"""


def test_a_large_scan_on_one_core_runs_chunk_by_chunk_in_workers() -> None:
    """One core: no pool, but a worker a chunk of the walk (here 8 units), the same report as a serial scan."""
    seen = _in_a_fresh_process(_ONE_CORE, str(FIXTURES / "models"))
    assert seen["executors"] == ["worker process"]
    assert seen["total"] > 100
    assert seen["children"] >= seen["total"] // 8
    assert seen["same"]


_HEAD_STARTS = """
import errno, json, os, sys, tempfile
from mlsec import isolated

if os.environ.get("MLSEC_TEST_NO_SPACE"):  # a temporary directory that is full

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    tempfile.TemporaryFile = full
from mlsec.scan import scan

def body(report):
    doc = report.to_dict()
    del doc["started_at"], doc["finished_at"]
    return doc

given = []
_start = isolated.HeadStart.__init__

def recorded(self, settings, units):
    _start(self, settings, units)
    given.append([unit.path for _, unit in units])

isolated.HeadStart.__init__ = recorded
pooled = scan(sys.argv[1:], jobs=2)
print(json.dumps({"given": given, "same": body(pooled) == body(scan(sys.argv[1:], jobs=1))}))
"""


def test_a_pool_scans_a_head_start_while_its_parent_imports_what_workers_share(tmp_path: Path) -> None:
    """Twelve ONNX models make the parent import onnx before it forks the pool's 2 workers; meanwhile a child forked
    at once scans files that need no onnx, on the core that would wait. The report is the serial one."""
    seen = _in_a_fresh_process(_HEAD_STARTS, str(FIXTURES / "models"))
    assert len(seen["given"]) == 1  # 2 workers: the parent's core imports, the other one starts
    (started,) = seen["given"]
    assert started
    assert not any(path.endswith((".onnx", ".pt", ".pkl", ".bin")) for path in started)  # none needs onnx or fickling
    assert seen["same"]


def test_without_room_for_a_temporary_file_the_pool_scans_everything() -> None:
    seen = _in_a_fresh_process(_HEAD_STARTS, str(FIXTURES / "models"), MLSEC_TEST_NO_SPACE="1")
    assert seen["given"] == []
    assert seen["same"]


@pytest.mark.parametrize(
    ("does", "reason"), [("crash", "SIGSEGV (a crash in native code)"), ("block", "blocked past twice max_seconds")]
)
def test_a_head_start_that_dies_costs_only_its_file(tmp_path: Path, does: str, reason: str) -> None:
    """The head start's child crashes on its first file, or blocks there and is stopped: that file is the one error,
    at once (culprits.py), and what the child had not scanned goes to the pool with the rest."""
    models = tmp_path / "models"
    models.mkdir()
    for i in range(30):
        shutil.copyfile(FIXTURES / "models" / "benign" / "mlp.onnx", models / f"model{i:02d}.onnx")
    npy_files(models / "arrays", 3)  # walked after the ONNX models: the head start's files
    limit = ("--limit", "max_seconds=0.5")
    child = hostile_scan(does, "weights0.npy", str(models), "-j", "2", *limit, MLSEC_TEST_SHOW_HEAD_STARTS="1")
    assert "head start: weights0.npy" in child.stderr
    assert child.returncode == 3, child.stderr[-3000:]
    report = ScanReport.from_json(child.stdout)
    assert [(Path(e.path).name, e.error_type) for e in report.errors] == [("weights0.npy", "WorkerDied")]
    assert reason in report.errors[0].reason
    assert len(report.artifacts) == 32


def test_every_heavy_library_has_an_import_cost() -> None:
    from mlsec.scanners import HEAVY_BY_SUFFIX, IMPORT_SECONDS

    assert {module for modules in HEAVY_BY_SUFFIX.values() for module in modules} == set(IMPORT_SECONDS)

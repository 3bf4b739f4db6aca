"""The `mlsec` command as a whole process (the console entry point, run()): how it ends, and what it sets up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES

# The entry point, with a witness of the interpreter's finalisation (threading's exit callbacks, which only it runs:
# an object's finaliser would not do, the command freezes its heap) and an exit handler that writes a file too.
# argv: the witness's file, the handler's file, whether to keep another thread alive, then the command's arguments.
_ENTRY = """
import atexit, os, sys, threading, time
def witness(path, pid=os.getpid()):  # this process's, not a forked worker's
    return lambda: os.getpid() == pid and open(path, "w").write("seen")
threading._register_atexit(witness(sys.argv[1]))
atexit.register(witness(sys.argv[2]))
if sys.argv[3] == "thread":
    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
from mlsec.cli import run
sys.argv = ["mlsec", *sys.argv[4:]]
run()
"""


def _entry(tmp_path: Path, *args: str, thread: bool = False) -> tuple[subprocess.CompletedProcess[str], bool, bool]:
    """The command through the entry point: its process, whether the interpreter was torn down, whether the exit
    handlers ran."""
    teardown, handler = tmp_path / "teardown", tmp_path / "handler"
    teardown.unlink(missing_ok=True)
    handler.unlink(missing_ok=True)
    argv = [sys.executable, "-c", _ENTRY, str(teardown), str(handler), "thread" if thread else "-", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    return done, teardown.exists(), handler.exists()


def test_the_command_ends_without_tearing_the_interpreter_down(tmp_path: Path) -> None:
    """Once the outputs are written, the process exits with the command's code without the interpreter's
    teardown (13 ms of a 2,000-file scan); the exit handlers still run and standard output is whole."""
    target = FIXTURES / "models" / "malicious"
    done, torn_down, handled = _entry(tmp_path, "scan", str(target), "-o", "json")
    assert done.returncode == 1, done.stderr  # the command's own code: findings at the default --fail-on
    assert json.loads(done.stdout)["findings"]  # the whole report, flushed before the exit
    assert (torn_down, handled) == (False, True)
    assert _entry(tmp_path, "--version")[0].returncode == 0
    usage, torn_down, handled = _entry(tmp_path, "scan", str(tmp_path / "absent"))
    assert (usage.returncode, torn_down, handled) == (2, False, True)


def test_another_thread_alive_gets_the_normal_exit(tmp_path: Path) -> None:
    """With another thread alive its work could be cut short, so the interpreter ends as usual (which is also
    what shows that the witness above sees a teardown when there is one)."""
    done, torn_down, handled = _entry(tmp_path, "scan", str(FIXTURES / "models" / "benign"), "-o", "json", thread=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["artifacts"]
    assert (torn_down, handled) == (True, True)


def test_a_profiled_command_still_ends_the_normal_way(tmp_path: Path) -> None:
    """Under a profiler the command returns to it, which then writes its profile: no quick exit."""
    profile = tmp_path / "mlsec.prof"
    argv = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "mlsec", "--version"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "mlsec, version" in done.stdout
    assert profile.stat().st_size > 0


_BLAS_THREADS = """
import atexit, sys
def report(path=sys.argv[1]):
    from threadpoolctl import threadpool_info
    with open(path, "w") as f:
        f.write(str([pool["num_threads"] for pool in threadpool_info() if pool["internal_api"] == "openblas"]))
atexit.register(report)
from mlsec.cli import run
sys.argv = ["mlsec", "scan", sys.argv[2], "-j", "2", "-o", "json=" + sys.argv[3]]
run()
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="OpenBLAS starts one thread on a machine of one core")
@pytest.mark.parametrize(("setting", "threads"), [(None, "[1]"), ("2", "[2]")])
def test_a_scan_loads_numpy_with_one_blas_thread_unless_told(tmp_path: Path, setting: str | None, threads: str) -> None:
    """numpy, which the pool's parent loads for its ONNX-scanning workers, starts OpenBLAS with one thread, not
    one per core spinning on the CPU the workers need; a user's OPENBLAS_NUM_THREADS is kept."""
    pytest.importorskip("threadpoolctl")
    models = tmp_path / "models"
    models.mkdir()
    for i in range(4):
        shutil.copy(FIXTURES / "models" / "benign" / "mlp.onnx", models / f"mlp{i}.onnx")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    if setting:
        env["OPENBLAS_NUM_THREADS"] = setting
    seen = tmp_path / "threads"
    argv = [sys.executable, "-c", _BLAS_THREADS, str(seen), str(models), str(tmp_path / "report.json")]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "report.json").read_text())["artifacts"]
    assert seen.read_text() == threads  # "[]" would mean numpy was never loaded: the test would show nothing

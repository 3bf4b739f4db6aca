"""One file made hostile to the scanner that reads it (in the `mlsec` command, or in Ray's workers), for tests of worker
processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import FIXTURES

# The NumPy scanner made hostile for one file (MLSEC_TEST_BAD_FILE) by setup(): a segmentation fault (as a broken C
# extension has), half a minute inside C that never checks for signals (as a native parser stuck in a loop), or half
# a minute of waiting without the CPU where the deadline's signal is not acted on (as native code in a deadlock).
# Source for a process of its own: the command below, or each Ray worker (Ray's worker_process_setup_hook).
HOSTILE_SCANNER = """
import ctypes, hashlib, os, signal, time
from mlsec.scanners.numpy import NumpyScanner

_real = NumpyScanner.scan


def _hostile(self, blob, ctx):
    if os.path.basename(str(blob.path)) == os.environ["MLSEC_TEST_BAD_FILE"]:
        if os.environ.get("MLSEC_TEST_TRIES"):  # how many times the file was tried, in any process
            with open(os.environ["MLSEC_TEST_TRIES"], "a") as tries:
                tries.write("tried\\n")
        if os.environ["MLSEC_TEST_BAD_DOES"] == "crash":
            ctypes.string_at(0)
        if os.environ["MLSEC_TEST_BAD_DOES"] == "block":  # a wait in C that never ends, and no handler of Python's runs
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(30)
        if os.environ["MLSEC_TEST_BAD_DOES"] == "hang":
            hashlib.pbkdf2_hmac("sha256", b"stuck", b"in C", 2 * 10**8)
    return _real(self, blob, ctx)


def setup():
    NumpyScanner.scan = _hostile
"""

# The command, with the hostile scanner; or mlsec failing on the file itself (bug), or showing its head starts.
_CLI = """
from mlsec.cli import run

setup()
if os.environ["MLSEC_TEST_BAD_DOES"] == "bug":  # mlsec itself fails on the file, not a scanner
    from mlsec import isolated

    _scan_unit = isolated.scan_unit

    def _failing(settings, unit):
        if os.path.basename(unit.path) == os.environ["MLSEC_TEST_BAD_FILE"]:
            raise RuntimeError("a bug in mlsec")
        return _scan_unit(settings, unit)

    isolated.scan_unit = _failing
if os.environ["MLSEC_TEST_BAD_DOES"] == "cut":  # the file is cut short as soon as a worker has mapped it to hash it
    import mmap

    _map = mmap.mmap

    def _cut(fd, *args, **kwargs):
        mapped = _map(fd, *args, **kwargs)
        path = os.readlink(f"/proc/self/fd/{fd}") if fd >= 0 else ""  # -1: memory, not a file
        if os.path.basename(path) == os.environ["MLSEC_TEST_BAD_FILE"]:
            os.truncate(path, 0)
        return mapped

    mmap.mmap = _cut
if os.environ.get("MLSEC_TEST_SHOW_HEAD_STARTS"):
    import sys
    from mlsec import isolated

    _start = isolated.HeadStart.__init__

    def _shown(self, settings, units):
        sys.stderr.write("head start: " + " ".join(os.path.basename(u.path) for _, u in units) + "\\n")
        _start(self, settings, units)

    isolated.HeadStart.__init__ = _shown
run()
"""
HOSTILE_CLI = HOSTILE_SCANNER + _CLI


def npy_files(folder: Path, count: int) -> list[str]:
    folder.mkdir()
    for i in range(count):
        shutil.copyfile(FIXTURES / "models" / "benign" / "weights.npy", folder / f"weights{i}.npy")
    return [str(folder / f"weights{i}.npy") for i in range(count)]


def hostile_scan(does: str, bad: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", HOSTILE_CLI, "scan", *args, "--no-cache", "--progress", "none", "-o", "json"]
    env = {**os.environ, "MLSEC_TEST_BAD_FILE": bad, "MLSEC_TEST_BAD_DOES": does, **env}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=env)

"""Run the evaluation child: a fresh process with a minimal environment, its own empty working directory,
resource limits, no network where the kernel allows it, and a wall-clock timeout. Only JSON crosses."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsec.errors import MlsecError

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class SandboxError(MlsecError):
    """The child failed, ran out of time or memory, or answered with something other than its JSON."""


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    memory_bytes: int = 8 * 1024**3  # address space (torch and ART map a lot of it without touching it)
    cpu_seconds: int = 1800
    wall_seconds: float = 900.0
    file_bytes: int = 64 * 1024**2  # anything the child writes (ART's ~/.art, caches) goes to its own folder
    open_files: int = 512
    threads: int = 1  # torch/BLAS threads: two made a small-machine run 25x slower (DECISIONS.md)


def network_isolation() -> list[str]:
    """`unshare -rn`: a new user and network namespace with no interface up, where the kernel allows it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False)
    return [unshare, "-rn"] if probe.returncode == 0 else []


def run_child(request: dict[str, Any], limits: SandboxLimits) -> dict[str, Any]:
    """Send `request` to `python -m mlsec.evaluations.child` and return its JSON answer."""
    isolate = network_isolation()
    with tempfile.TemporaryDirectory(prefix="mlsec-eval-") as work:
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": work,
            "TMPDIR": work,
            "PYTHONPATH": _PACKAGE_ROOT,
            "PYTHONNOUSERSITE": "1",
            "PYTHONHASHSEED": "0",
            **{name: str(limits.threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        }
        if "MLSEC_SENTINEL" in os.environ:  # tests: a payload that ever ran in the child would leave it
            env["MLSEC_SENTINEL"] = os.environ["MLSEC_SENTINEL"]
        cmd = [*isolate, sys.executable, "-m", "mlsec.evaluations.child"]
        request = {**request, "threads": limits.threads, "network_isolated": bool(isolate)}
        gpu = request.get("device", "auto") != "cpu" and Path("/dev/nvidiactl").exists()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=work,
            env=env,
            preexec_fn=lambda: _limit(limits, gpu),  # noqa: PLW1509 - no threads are started before exec
            start_new_session=True,  # its own process group: a timeout kills everything it started
        )
        try:
            stdout, stderr = proc.communicate(json.dumps(request), timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise SandboxError(f"the evaluation ran past its {limits.wall_seconds:g} s limit and was killed") from None
    if proc.returncode != 0:
        code = proc.returncode
        how = f"signal {-code}" if code < 0 else f"exit {code}"
        raise SandboxError(f"the evaluation child failed ({how}): {_tail(stderr)}")
    try:
        answer = json.loads(stdout)
    except json.JSONDecodeError:
        raise SandboxError(f"the evaluation child answered with something other than JSON: {_tail(stdout)}") from None
    if not isinstance(answer, dict) or "results" not in answer:
        raise SandboxError("the evaluation child's answer has no results")
    return answer


def _limit(limits: SandboxLimits, gpu: bool = False) -> None:
    # CUDA reserves far more address space than it uses (inaccessible mappings): with a GPU the memory bound
    # is on the data segment and writable mappings (RLIMIT_DATA, Linux 4.7+) instead of the address space
    memory = resource.RLIMIT_DATA if gpu else resource.RLIMIT_AS
    resource.setrlimit(memory, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _tail(text: str | None, n: int = 1500) -> str:
    text = (text or "").strip()
    return text[-n:] if text else "(nothing on its output)"

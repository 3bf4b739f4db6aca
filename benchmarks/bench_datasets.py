"""Dataset scanning memory and time on a large CSV. One run.

    python benchmarks/bench_datasets.py [--size-mib 1024]

Writes a CSV of about --size-mib MiB (digits-like integer features, a label, a text column), then
runs `mlsec scan` on it in a child process and prints wall time and peak RSS, with `sha256sum`
and `openssl dgst -sha256` over the same file for scale. The issue's bar: peak memory under 1 GB
for a 1 GB CSV.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

WORK = Path(__file__).resolve().parent / "_work"


def build(size_mib: int) -> Path:
    path = WORK / f"dataset_{size_mib}MiB.csv"
    if path.is_file():
        return path
    WORK.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    with open(path, "w") as fh:
        header = True
        while fh.tell() < size_mib << 20:
            frame = pd.DataFrame(rng.integers(0, 17, size=(100_000, 32)), columns=[f"pixel_{i}" for i in range(32)])
            frame["label"] = rng.integers(0, 10, 100_000)
            frame["note"] = rng.choice(["ok", "checked", "re-labelled by annotator 3"], 100_000)
            frame.to_csv(fh, index=False, header=header)
            header = False
    return path


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and this child's own peak RSS in MiB (wait4 reports it per process)."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(child.pid, 0)
    child.returncode = 0
    return time.perf_counter() - start, usage.ru_maxrss // 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    path = build(args.size_mib)
    size = path.stat().st_size / (1 << 20)
    rows = []
    for name, cmd in (
        ("sha256sum", ["sha256sum", str(path)]),
        ("openssl dgst -sha256", ["openssl", "dgst", "-sha256", str(path)]),
        (
            "mlsec scan",
            [sys.executable, "-m", "mlsec", "scan", str(path), "-o", "json=" + str(WORK / "dataset_report.json"), "--no-cache"],
        ),
    ):
        seconds, peak = timed(cmd)
        rows.append((name, seconds, peak))
    print(f"== {path.name}: {size:.0f} MiB CSV ==")
    print(f"{'tool':<24}{'seconds':>9}{'peak MiB':>10}")
    for name, seconds, peak in rows:
        print(f"{name:<24}{seconds:>9.1f}{peak:>10}")
    print("bar: mlsec's peak memory under 1024 MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

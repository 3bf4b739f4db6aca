"""The hostile-input set: time and peak memory of `mlsec scan` on each file, one process per file,
with `openssl dgst -sha256` over the same bytes as the reference. One run.

    python benchmarks/bench_hostile.py

Files: everything in fixtures/hostile/, fixtures/archives/hostile/ and fixtures/fuzz/, plus inputs too
big to commit, built into benchmarks/_work/: a CSV with one 100 MB line, a CSV line of 25 million
fields, and a 2 GiB sparse file named like a model. The issue's bars: under 500 MB and under 10 s per
file, no traceback. Prints one row per file and the worst case; exit 1 if a bar is missed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(__file__).resolve().parent / "_work"
PEAK_MB, SECONDS = 500, 10.0
PEAK = Path(__file__).resolve().parent / "mlsec_peak.py"  # runs mlsec and reports its peak memory


def big_inputs() -> list[Path]:
    WORK.mkdir(exist_ok=True)
    line, wide, sparse = WORK / "one_line_100mb.csv", WORK / "fields_25m.csv", WORK / "sparse_2g.pkl"
    if not line.is_file():
        with line.open("wb") as fh:
            for _ in range(100):
                fh.write(b"a" * 1_000_000)
    if not wide.is_file():
        wide.write_bytes(b"x,y\n" + b"1," * 25_000_000)
    if not sparse.is_file():
        with sparse.open("wb") as fh:
            fh.write(b"\x80\x04K\x01.")
            fh.truncate(2 << 30)  # a hole: 2 GiB a scan must hash, with no disk behind it
    return [line, wide, sparse]


def scan(path: Path) -> tuple[int, float, float, bool]:
    started = time.perf_counter()
    cmd = [sys.executable, str(PEAK), "scan", str(path), "-o", "json", "--no-cache"]  # scanning, not the cache
    proc = subprocess.run(cmd, capture_output=True, check=False)
    seconds = time.perf_counter() - started
    stderr, _, peak = proc.stderr.decode(errors="replace").rpartition("\nMLSEC_PEAK_KIB=")
    return proc.returncode, seconds, int(peak) / 1024, "Traceback" in stderr


def openssl(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["openssl", "dgst", "-sha256", str(path)], capture_output=True, check=True)
    return time.perf_counter() - started


def main() -> int:
    files = sorted(
        p for folder in ("hostile", "archives/hostile", "fuzz") for p in (ROOT / "fixtures" / folder).rglob("*")
        if p.is_file() and p.suffix != ".md"
    ) + big_inputs()  # fmt: skip
    print(f"{'file':58} {'MiB':>8} {'exit':>4} {'s':>6} {'peak MB':>8} {'openssl s':>9} {'ratio':>7}")
    worst_s = worst_mb = 0.0
    failed = []
    for path in files:
        reference = openssl(path)  # first: both then read from the page cache
        code, seconds, peak, traceback = scan(path)
        name = str(path.relative_to(ROOT))[-58:]
        size = path.stat().st_size / 2**20
        print(f"{name:58} {size:8.2f} {code:4} {seconds:6.2f} {peak:8.0f} {reference:9.3f} {seconds / max(reference, 1e-3):7.1f}")
        worst_s, worst_mb = max(worst_s, seconds), max(worst_mb, peak)
        if traceback or code not in (0, 1, 3) or peak >= PEAK_MB or seconds >= SECONDS:
            failed.append(name)
    print(
        f"\n{len(files)} files; worst time {worst_s:.2f} s (bar {SECONDS:g} s), worst peak {worst_mb:.0f} MB (bar {PEAK_MB} MB)"
    )
    if failed:
        print("missed a bar or crashed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run `mlsec ARGS...` and, as it exits, write its peak resident memory to standard error as
`MLSEC_PEAK_KIB=N` (VmHWM from /proc/self/status: since exec, unlike ru_maxrss, which would also count
the process this one was forked from). benchmarks/bench_hostile.py and tests/test_hostile.py run it.

    python benchmarks/mlsec_peak.py scan FILE -o json
"""

import atexit
import os
import runpy
import sys

MARK = "MLSEC_PEAK_KIB="


def _peak() -> None:
    with open("/proc/self/status") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    os.write(2, f"\n{MARK}{kib}\n".encode())


if __name__ == "__main__":
    atexit.register(_peak)
    sys.argv = ["mlsec", *sys.argv[1:]]
    runpy.run_module("mlsec", run_name="__main__", alter_sys=True)

"""Run the fuzz targets with atheris (libFuzzer for Python), or replay the saved crashes.

    pip install -e ".[fuzz]"
    python fuzz/run.py --all --seconds 600          # every target, 10 minutes each, in parallel
    python fuzz/run.py pickle --seconds 60          # one target
    python fuzz/run.py --replay                     # every saved crash, through the scanner (no atheris)

Seeds are the committed fixtures for each format (fuzz/targets.py). A crash is written to
fuzz/crashes/TARGET/; once fixed, it moves to fixtures/fuzz/TARGET/ where tests/test_hostile.py
keeps it as a regression fixture. Each run prints its executions, coverage and crashes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
_MAX_LEN = 65536
NAMES = ("gguf", "numpy", "oci", "onnx", "pickle", "safetensors", "tar", "tflite", "zip")  # fuzz/targets.py TARGETS


def _fuzz_one(name: str, seconds: int, corpus: Path | None) -> int:
    import atheris  # noqa: PLC0415 - only for fuzzing

    with atheris.instrument_imports(include=["mlsec"]):
        from fuzz.targets import TARGETS  # noqa: PLC0415

    target = TARGETS[name]
    crashes = HERE / "crashes" / name
    crashes.mkdir(parents=True, exist_ok=True)
    corpus = corpus or _seeded_corpus(name, target.seed_files())

    def one_input(data: bytes) -> None:
        target.run(data)

    args = [
        sys.argv[0], str(corpus), f"-max_total_time={seconds}", f"-artifact_prefix={crashes}/",
        f"-max_len={_MAX_LEN}", "-rss_limit_mb=2048", "-timeout=30", "-print_final_stats=1",
    ]  # fmt: skip
    atheris.Setup(args, one_input)
    atheris.Fuzz()
    return 0


def _seeded_corpus(name: str, seeds: list[Path]) -> Path:
    corpus = Path(tempfile.mkdtemp(prefix=f"mlsec-fuzz-{name}-"))
    for seed in seeds:
        (corpus / seed.name).write_bytes(seed.read_bytes()[:_MAX_LEN])
    return corpus


def _campaign(name: str, seconds: int, log: Path) -> int:
    """Fuzz `name` for `seconds` in all: libFuzzer stops at a crash (saved under crashes/), so the run is
    started again on the same growing corpus until the time is spent. Returns the number of crashes."""
    from fuzz.targets import TARGETS  # noqa: PLC0415 - not instrumented here: this process only supervises

    corpus, crashes, deadline = _seeded_corpus(name, TARGETS[name].seed_files()), 0, time.monotonic() + seconds
    with log.open("w") as out:
        while (left := int(deadline - time.monotonic())) > 0:
            cmd = [sys.executable, __file__, name, "--seconds", str(left), "--corpus", str(corpus)]
            crashes += subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode != 0
    shutil.rmtree(corpus, ignore_errors=True)
    return crashes


def _replay() -> int:
    from fuzz.targets import TARGETS, ScanBug  # noqa: PLC0415

    failed = 0
    for folder in (HERE / "crashes", HERE.parent / "fixtures" / "fuzz"):
        for path in sorted(folder.glob("*/*")) if folder.is_dir() else []:
            try:
                TARGETS[path.parent.name].run(path.read_bytes())
            except (ScanBug, Exception) as exc:  # noqa: BLE001 - every failure is reported
                failed += 1
                print(f"FAIL {path}: {type(exc).__name__}: {exc}")
            else:
                print(f"ok   {path}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", help="one of: " + ", ".join(NAMES))
    parser.add_argument("--all", action="store_true", help="every target, one process each, in parallel")
    parser.add_argument("--seconds", type=int, default=600, help="how long each target runs (default 600)")
    parser.add_argument("--jobs", type=int, default=2, help="with --all: targets run at once (default 2)")
    parser.add_argument("--corpus", type=Path, help="the working corpus directory (default: a fresh one, seeded)")
    parser.add_argument("--replay", action="store_true", help="scan every saved crash again; exit 1 if one still fails")
    args = parser.parse_args()
    if args.replay:
        return _replay()
    if args.target:  # mlsec must not be imported before atheris instruments it
        if args.target not in NAMES:
            parser.error(f"unknown target {args.target!r}")
        return _fuzz_one(args.target, args.seconds, args.corpus)
    if not args.all:
        parser.error("name a target, or --all, or --replay")
    logs = HERE / "logs"
    logs.mkdir(exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        results = pool.map(lambda name: (name, _campaign(name, args.seconds, logs / f"{name}.log")), NAMES)
        for name, crashes in results:
            print(f"{name}: {crashes} crash(es); {_summary(logs / f'{name}.log')}", flush=True)
    return 0


def _summary(log: Path) -> str:
    """Inputs run over all restarts, and the last libFuzzer status line (`#RUNS cov: N ft: N corp: N/… exec/s: N`)."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("#") and "exec/s" in line]
    if not lines:
        return "no status line (see the log)"
    runs = sum(int(line.split()[0].lstrip("#")) for line in _final_lines(log))
    return f"{runs} inputs in all; last: {lines[-1].strip()}"


def _final_lines(log: Path) -> list[str]:
    """Each restart's last status line (its input count), to add them up."""
    finals, last = [], None
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("#") and "exec/s" in line:
            last = line
        elif last and (line.startswith("Done ") or "ERROR: libFuzzer" in line or line.startswith("==")):
            finals.append(last)
            last = None
    return [*finals, *([last] if last else [])]


if __name__ == "__main__":
    sys.exit(main())

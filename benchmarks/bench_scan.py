"""Scan cost against hashing the same bytes, and against peers; recall on the labelled corpus. One run.

    python benchmarks/bench_scan.py [--size-mib 1024] [--repeat 3]

Prints, for a generated PyTorch checkpoint of about --size-mib MiB and for ../shared/corpus:
wall time and peak memory of `mlsec scan` (which hashes every artifact), `openssl dgst -sha256`,
`sha256sum`, picklescan and modelscan, each as a ratio to openssl; then mlsec's recall and
benign-flag rate on the corpus. Timings are the best of --repeat runs on a warm page cache.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = ROOT.parent / "shared" / "corpus"
WORK = HERE / "_work"


def make_checkpoint(size_mib: int) -> Path:
    """Build the checkpoint in a child, so this process stays small (children inherit its peak RSS)."""
    path = WORK / f"checkpoint_{size_mib}MiB.pt"
    if path.is_file():
        return path
    WORK.mkdir(exist_ok=True)
    code = (
        "import sys, torch\n"
        "gen = torch.Generator().manual_seed(0)\n"
        "n = max(1, int(sys.argv[1]) // 64)\n"
        "torch.save({f'layer{i}.weight': torch.randn(16384, 1024, generator=gen) for i in range(n)}, sys.argv[2])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(size_mib), str(path)], check=True)
    return path


def run(cmd: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MiB, exit code of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def best(cmd: list[str], repeat: int) -> tuple[float, float, int]:
    runs = [run(cmd) for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs), runs[-1][2]


def tool(name: str) -> str | None:
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return found


def table(title: str, files: list[Path], repeat: int, out: Path) -> None:
    size = sum(f.stat().st_size for f in files)
    names = [str(f) for f in files]
    mlsec = [sys.executable, "-m", "mlsec", "scan", *names, "-o", f"json={out}", "--no-cache"]  # scanning, not the cache
    commands: dict[str, list[str] | None] = {
        "openssl dgst -sha256": ["openssl", "dgst", "-sha256", *names] if tool("openssl") else None,
        "sha256sum": ["sha256sum", *names] if tool("sha256sum") else None,
        "mlsec scan (json, hashes all)": mlsec,
        "picklescan": [tool("picklescan"), *sum((["-p", n] for n in names), [])] if tool("picklescan") else None,  # type: ignore[list-item]
        "modelscan": [tool("modelscan"), "-p", str(files[0].parent) if len(files) > 1 else names[0]]
        if tool("modelscan")
        else None,  # type: ignore[list-item]
    }
    for cmd in commands.values():  # warm the page cache once
        if cmd:
            run(cmd)
            break
    results = {label: best(cmd, repeat) for label, cmd in commands.items() if cmd}
    base = results.get("openssl dgst -sha256", (None,))[0]
    print(f"\n== {title}: {len(files)} file(s), {size / 2**20:.1f} MiB ==")
    print(f"{'tool':<32}{'seconds':>10}{'x openssl':>11}{'peak MiB':>10}{'exit':>6}")
    for label, (secs, rss, code) in results.items():
        ratio = f"{secs / base:.2f}" if base else "-"
        print(f"{label:<32}{secs:>10.3f}{ratio:>11}{rss:>10.0f}{code:>6}")
    for label in ("picklescan", "modelscan"):
        if label not in results:
            print(f"{label:<32}{'not installed':>10}")


def corpus_quality(report_path: Path) -> None:
    rows = list(csv.DictReader((CORPUS / "labels.csv").open()))
    report = json.loads(report_path.read_text())
    blocking = {f["location"]["path"] for f in report["findings"] if f["severity"] in ("high", "critical")}
    malicious = [r for r in rows if r["label"] == "malicious"]
    benign = [r for r in rows if r["label"] == "benign"]
    caught = [r for r in malicious if str(CORPUS / r["file"]) in blocking]
    flagged = [r for r in benign if str(CORPUS / r["file"]) in blocking]
    print(f"\ncorpus recall (finding >= high on the file): {len(caught)}/{len(malicious)} = {len(caught) / len(malicious):.0%}")
    print(f"corpus benign files flagged (>= high):       {len(flagged)}/{len(benign)} = {len(flagged) / len(benign):.0%}")
    for r in malicious:
        if r not in caught:
            print(f"  missed: {r['file']} ({r['technique']})")
    for r in flagged:
        print(f"  false positive: {r['file']} ({r['technique']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_checkpoint(args.size_mib)
        table("PyTorch checkpoint", [ckpt], args.repeat, Path(tmp) / "ckpt.json")
        if (CORPUS / "labels.csv").is_file():
            files = sorted((CORPUS / "public").iterdir())
            out = Path(tmp) / "corpus.json"
            table("labelled corpus", files, args.repeat, out)
            corpus_quality(out)
        else:
            print(f"\n(corpus not found at {CORPUS}: recall not measured)")


if __name__ == "__main__":
    main()

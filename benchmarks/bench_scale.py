"""Scanning a model registry at scale: cold, warm-cache and Ray runs against `openssl dgst -sha256`. One run.

    python benchmarks/bench_scale.py [--small 2000] [--large 20] [--large-mib 128] [--jobs N] [--repeat 3] [--no-ray]

Builds (once, into benchmarks/_work/registry/) a synthetic registry of real model files written by their
own libraries: --small small models (scikit-learn joblib pickles, NumPy .npy, safetensors, ONNX) and
--large big checkpoints (PyTorch zips, or safetensors when torch is absent). Then, on a warm page cache:

- openssl: `openssl dgst -sha256` over every file, split into --jobs processes balanced by bytes;
- cold: `mlsec scan` with an empty result cache and --jobs workers (it hashes and scans every byte);
- warm: the same command again (a stat per file; results from the cache);
- paranoid: warm with --paranoid (every file re-hashed, nothing re-scanned);
- start-up: `mlsec --version`, the interpreter's start and mlsec's imports, which every command pays;
- scan() cold and warm in this process, without the interpreter's start-up (a service's view);
- ray: the same scan as Ray tasks on a local instance (`ray.init(num_cpus=jobs)`, start-up timed apart),
  with its report compared to the cold run's.

Each row is the best of --repeat runs (3), openssl's too, which takes turns with the cold runs (the machine's
speed drifts; both sides then meet it alike; each turn's own ratios are printed as well). mlsec's bytecode is
compiled first, as an install does (where PYTHONDONTWRITEBYTECODE is set, a source tree would otherwise compile
what changed on every run).
Prints seconds, files/s, MB/s and the ratio to openssl for each, and the issue's bars: cold at most
1.3x openssl on the same cores, warm under 5% of cold, and Ray's report identical to the local one.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
sys.path.insert(0, str(HERE.parent))


def build(root: Path, small: int, large: int, large_mib: int) -> list[Path]:
    marker = root.with_name(f"{root.name}.built-{small}-{large}-{large_mib}")
    if not marker.is_file():
        shutil.rmtree(root, ignore_errors=True)
        for old in root.parent.glob(f"{root.name}.built-*"):
            old.unlink()
        root.mkdir(parents=True)
        _small_models(root / "small", small)
        _large_models(root / "large", large, large_mib)
        marker.touch()
    return sorted(p for p in root.rglob("*") if p.is_file())


def _small_models(folder: Path, count: int) -> None:
    import joblib
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    from safetensors.numpy import save_file
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x, y = load_digits(return_X_y=True)
    base = LogisticRegression(max_iter=200).fit(x[:300], y[:300])
    for i in range(count):
        team = folder / f"team{i % 40:02d}" / f"model{i:05d}"
        team.mkdir(parents=True)
        kind = i % 4
        if kind == 0:
            base.coef_ = rng.standard_normal(base.coef_.shape)
            joblib.dump(base, team / "model.joblib")
        elif kind == 1:
            np.save(team / "weights.npy", rng.standard_normal((64, 64)).astype(np.float32))
        elif kind == 2:
            save_file(
                {"w": rng.standard_normal((64, 64)).astype(np.float32), "b": np.zeros(64, np.float32)}, team / "model.safetensors"
            )
        else:
            w = numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "w")
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
                [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 10])], [w],
            )  # fmt: skip
            onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), team / "model.onnx")


def _large_models(folder: Path, count: int, mib: int) -> None:
    folder.mkdir(parents=True)
    code = (
        "import sys\nfrom pathlib import Path\nimport numpy as np\n"
        "folder, count, mib = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])\n"
        "rng = np.random.default_rng(1)\n"
        "try:\n    import torch\nexcept ImportError:\n    torch = None\n"
        "from safetensors.numpy import save_file\n"
        "for i in range(count):\n"
        "    layers = {f'layer{j}.weight': rng.standard_normal((4096, 1024), dtype=np.float32) for j in range(max(1, mib // 16))}\n"
        "    if torch is not None and i % 2 == 0:\n"
        "        torch.save({k: torch.from_numpy(v) for k, v in layers.items()}, folder / f'checkpoint{i:02d}.pt')\n"
        "    else:\n"
        "        save_file(layers, folder / f'checkpoint{i:02d}.safetensors')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(folder), str(count), str(mib)], check=True)


def openssl(files: list[Path], jobs: int) -> float:
    """Wall seconds of `openssl dgst -sha256` over `files` in `jobs` processes, each given an equal share of bytes."""
    shares: list[list[str]] = [[] for _ in range(jobs)]
    loads = [0] * jobs
    for f in sorted(files, key=lambda p: -p.stat().st_size):
        k = loads.index(min(loads))
        shares[k].append(str(f))
        loads[k] += f.stat().st_size
    start = time.perf_counter()
    procs = []
    for share in filter(None, shares):
        with tempfile.NamedTemporaryFile("w", delete=False, suffix=".txt") as listing:
            listing.write("\0".join(share))
        procs.append(
            subprocess.Popen(f"xargs -0 -n 500 openssl dgst -sha256 < {listing.name}", shell=True, stdout=subprocess.DEVNULL)
        )
    for p in procs:
        p.wait()
    return time.perf_counter() - start


def mlsec(root: Path, cache: Path, jobs: int, *extra: str) -> tuple[float, Path]:
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"report-{time.monotonic_ns()}.json"
    cmd = [sys.executable, "-m", "mlsec", "scan", str(root), "-o", f"json={out}", "--progress", "none", "-j", str(jobs), *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "MLSEC_CACHE_DIR": str(cache)}, capture_output=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"mlsec exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return seconds, out


def startup(repeat: int) -> float:
    """Seconds of `mlsec --version`: the interpreter's start and mlsec's imports, which every command pays."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mlsec", "--version"], capture_output=True, check=True)
        runs.append(time.perf_counter() - start)
    return min(runs)


def library(root: Path, cache: Path, jobs: int) -> float:
    """Seconds of mlsec.scan() in this process into the result cache in `cache` (empty: cold; filled: warm): the
    scan's own cost, without the interpreter's start-up and imports (a service that scans repeatedly pays those
    once; the first call here pays them, and is not counted)."""
    from mlsec.cache import ResultCache
    from mlsec.scan import scan

    start = time.perf_counter()
    scan([str(root)], jobs=jobs, cache=ResultCache(cache))
    return time.perf_counter() - start


def ray_run(root: Path, jobs: int) -> tuple[float, float, dict]:
    import ray

    from mlsec.scan import scan

    start = time.perf_counter()
    ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter() - start
    try:
        start = time.perf_counter()
        report = scan([str(root)], executor="ray")
        return started, time.perf_counter() - start, _body(report.to_dict())
    finally:
        ray.shutdown()


def _body(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("started_at", "finished_at")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=20)
    parser.add_argument("--large-mib", type=int, default=128)
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeat", type=int, default=3, help="each row is the best of this many runs (default 3)")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    compileall.compile_dir(HERE.parent / "mlsec", quiet=1)
    root = WORK / "registry"
    files = build(root, args.small, args.large, args.large_mib)
    total = sum(f.stat().st_size for f in files)
    print(f"registry: {len(files)} files, {total / 1e9:.2f} GB ({args.small} small, {args.large} large); {args.jobs} cores")
    # The reference and the cold runs take turns, so that both meet the machine in the same state (a VM's speed
    # drifts by a fifth over minutes here), and each cold run starts right after openssl read every byte into the
    # page cache. Each row is the best of its runs.
    openssl(files, args.jobs)
    references, colds, library_colds = [], [], []
    with tempfile.TemporaryDirectory(prefix="mlsec-bench-cache-") as tmp:
        cache = Path(tmp)
        library(root, cache / "library-first", args.jobs)  # this process's imports, paid once and not counted
        for i in range(args.repeat):
            references.append(openssl(files, args.jobs))
            colds.append(mlsec(root, cache / f"cold-{i}", args.jobs))  # each into an empty cache
            library_colds.append(library(root, cache / f"library-{i}", args.jobs))
        reference = min(references)
        rows = [("openssl dgst -sha256", reference)]
        cold, cold_out = min(colds)
        rows.append(("mlsec cold (empty cache)", cold))
        warm_cache = cache / f"cold-{args.repeat - 1}"
        warm, warm_out = min(mlsec(root, warm_cache, args.jobs) for _ in range(args.repeat))
        rows.append(("mlsec warm (cache)", warm))
        paranoid = min(mlsec(root, warm_cache, args.jobs, "--paranoid")[0] for _ in range(args.repeat))
        rows.append(("mlsec warm --paranoid", paranoid))
        rows.append(("mlsec --version (start-up only)", startup(args.repeat)))
        library_cold = min(library_colds)
        library_warm = min(library(root, cache / f"library-{args.repeat - 1}", args.jobs) for _ in range(args.repeat))
        rows.append(("scan() cold, in process (no start-up)", library_cold))
        rows.append(("scan() warm, in process (no start-up)", library_warm))
        cold_doc = _body(json.loads(cold_out.read_text()))
        same_warm = cold_doc == _body(json.loads(warm_out.read_text()))
        same_ray = None
        if not args.no_ray:
            try:
                started, seconds, ray_doc = ray_run(root, args.jobs)
            except ImportError:
                print("ray: not installed (pip install 'mlsec[ray]'); skipped")
            else:
                rows.append((f"mlsec on Ray (+{started:.1f} s start-up)", seconds))
                same_ray = ray_doc == cold_doc
    print(f"{'run':36} {'seconds':>8} {'files/s':>9} {'MB/s':>8} {'x openssl':>9}")
    for name, seconds in rows:
        print(f"{name:36} {seconds:8.2f} {len(files) / seconds:9.0f} {total / 1e6 / seconds:8.0f} {seconds / reference:9.2f}")
    turns = zip(references, colds, library_colds, strict=True)  # each turn: openssl, then the cold runs
    print(
        "each turn, cold / its openssl run:",
        ", ".join(f"{command / ref:.2f} ({lib / ref:.2f} in process)" for ref, (command, _), lib in turns),
    )
    bars = [
        (f"cold <= 1.3x openssl on {args.jobs} cores (command line, start-up included)", cold <= 1.3 * reference),
        (f"cold <= 1.3x openssl on {args.jobs} cores (in process)", library_cold <= 1.3 * reference),
        ("warm < 5% of cold (command line, start-up included)", warm < 0.05 * cold),
        ("warm < 5% of cold (in process)", library_warm < 0.05 * library_cold),
        ("warm report == cold report", same_warm),
    ]
    if same_ray is not None:
        bars.append(("ray report == local report", same_ray))
    for name, ok in bars:
        print(f"{'PASS' if ok else 'MISS'}  {name}")
    return 0 if all(ok for _, ok in bars) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Signing and verifying a model directory against hashing its bytes once with openssl. One run.

    python benchmarks/bench_sign.py [--size-mib 1024] [--files 4] [--repeat 3]

Builds --files files of random bytes totalling --size-mib MiB, then times, on a warm page cache
(best of --repeat): `openssl dgst -sha256` over the files, `mlsec sign --key` and `mlsec verify
--key` (in process, model-signing underneath), and prints sign + verify as a ratio to openssl.
The issue's bar: at most 1.5x.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path(__file__).resolve().parent / "_work"

from mlsec.signing import keygen, sign, verify  # noqa: E402


def model_dir(size_mib: int, files: int) -> Path:
    directory = WORK / f"model_{size_mib}MiB_{files}"
    if directory.is_dir():
        return directory
    directory.mkdir(parents=True)
    chunk = size_mib // files
    for i in range(files):
        with open(directory / f"shard-{i:05d}.safetensors", "wb") as fh:
            for _ in range(chunk):
                fh.write(os.urandom(1 << 20))
    return directory


def best(repeat: int, fn) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    model = model_dir(args.size_mib, args.files)
    keys = WORK / "keys"
    shutil.rmtree(keys, ignore_errors=True)
    keys.mkdir()
    keygen(keys / "k.pem", keys / "k.pub")
    files = sorted(str(p) for p in model.iterdir())
    subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
    openssl = best(
        args.repeat, lambda: subprocess.run(["openssl", "dgst", "-sha256", *files], stdout=subprocess.DEVNULL, check=True)
    )
    bundle = WORK / "model.sigstore.json"
    signing = best(args.repeat, lambda: sign(model, key=keys / "k.pem", bundle=bundle))
    verifying = best(args.repeat, lambda: verify(model, bundle, key=keys / "k.pub"))
    print(f"== model directory: {args.files} files, {args.size_mib} MiB (best of {args.repeat}) ==")
    print(f"{'openssl dgst -sha256':<30}{openssl:>8.3f} s   1.00")
    print(f"{'mlsec sign --key':<30}{signing:>8.3f} s   {signing / openssl:.2f}")
    print(f"{'mlsec verify --key':<30}{verifying:>8.3f} s   {verifying / openssl:.2f}")
    print(f"{'sign + verify':<30}{signing + verifying:>8.3f} s   {(signing + verifying) / openssl:.2f}  (bar: 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

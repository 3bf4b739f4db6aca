"""Image scanning cost against `sha256sum` over the same archive. One run.

    python benchmarks/bench_image.py [--size-mib 500] [--repeat 3]

Builds a docker-save archive (uncompressed layers) and an OCI archive (gzip layers) of about
--size-mib MiB: four layers of model-like data (float32 tensors, so gzip has something to do) plus
the fixture image's small layers, then times `mlsec scan` (digests and diff_ids verified, whiteouts
applied, models scanned) against `sha256sum` and `openssl dgst -sha256` over each archive, best of
--repeat on a warm page cache. The issue's bar: at most 2x sha256sum.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(__file__).resolve().parent / "_work"
sys.path.insert(0, str(ROOT / "fixtures"))

import build_images  # noqa: E402


def _layer(i: int, mib: int) -> bytes:
    rng = np.random.default_rng(i)
    data = rng.standard_normal(mib * (1 << 18)).astype(np.float32).round(2).tobytes()  # rounded: compressible like weights
    return build_images._tar([(f"opt/model/shard-{i}.bin", data, 0o644)])


def build(size_mib: int) -> tuple[Path, Path]:
    docker, oci = WORK / f"image_{size_mib}.docker.tar", WORK / f"image_{size_mib}.oci.tar"
    if docker.is_file() and oci.is_file():
        return docker, oci
    WORK.mkdir(exist_ok=True)
    tars = build_images.layers() + [_layer(i, size_mib // 4) for i in range(4)]
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]
    cfg = build_images.config(diff_ids)
    entries = [("config.json", cfg, 0o644)] + [(f"l{i}/layer.tar", t, 0o644) for i, t in enumerate(tars)]
    entries.append(
        (
            "manifest.json",
            json.dumps(
                [{"Config": "config.json", "RepoTags": ["bench:1"], "Layers": [f"l{i}/layer.tar" for i in range(len(tars))]}]
            ).encode(),
            0o644,
        )
    )
    docker.write_bytes(build_images._tar(entries))
    gz = [gzip.compress(t, compresslevel=1, mtime=0) for t in tars]
    blobs = {"blobs/sha256/" + hashlib.sha256(b).hexdigest(): b for b in gz}
    blobs["blobs/sha256/" + hashlib.sha256(cfg).hexdigest()] = cfg
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": "sha256:" + hashlib.sha256(cfg).hexdigest(), "size": len(cfg)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + hashlib.sha256(b).hexdigest(), "size": len(b)} for b in gz]}).encode()  # fmt: skip
    blobs["blobs/sha256/" + hashlib.sha256(manifest).hexdigest()] = manifest
    index = json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(), "size": len(manifest), "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()  # fmt: skip
    oci.write_bytes(
        build_images._tar(
            [
                ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}', 0o644),
                ("index.json", index, 0o644),
                *[(n, b, 0o644) for n, b in blobs.items()],
            ]
        )
    )
    return docker, oci


def best(repeat: int, cmd: list[str]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for archive in build(args.size_mib):
        subprocess.run(["cat", str(archive)], stdout=subprocess.DEVNULL, check=True)
        size = archive.stat().st_size / (1 << 20)
        sha = best(args.repeat, ["sha256sum", str(archive)])
        ossl = best(args.repeat, ["openssl", "dgst", "-sha256", str(archive)])
        mlsec = best(
            args.repeat,
            [sys.executable, "-m", "mlsec", "scan", str(archive), "-o", "json=/dev/null", "--no-cache"],
        )
        print(f"== {archive.name}: {size:.0f} MiB (best of {args.repeat}) ==")
        print(f"{'sha256sum':<28}{sha:>8.3f} s   1.00")
        print(f"{'openssl dgst -sha256':<28}{ossl:>8.3f} s   {ossl / sha:.2f}")
        print(f"{'mlsec scan':<28}{mlsec:>8.3f} s   {mlsec / sha:.2f}  (bar: 2.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

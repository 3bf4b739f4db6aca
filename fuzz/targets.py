"""Fuzz targets: one per parser, each fed through the same path a scan takes (mlsec.scan_bytes).

A target fails when a scan raises, or when its report holds an error that only a bug causes
(`ScanError.is_bug`: a scanner failing with an exception it did not raise on purpose). Bad input
must end as a finding, a skipped artifact or an InputError, never as either of those.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlsec import ScanLimits, load_ruleset, scan, scan_bytes
from mlsec.report import ScanReport

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RULES = load_ruleset()
# Small limits keep each run fast: the fuzzer looks for crashes, not for what big inputs cost.
LIMITS = ScanLimits(max_member_in_memory=4 << 20, max_total_unpacked=16 << 20, max_pickle_opcodes=200_000, max_seconds=10)


class ScanBug(Exception):
    """A scan of fuzzed bytes failed in a way no input should cause."""


@dataclass(frozen=True)
class Target:
    name: str  # the file name the bytes are scanned as (a suffix steers format detection)
    seeds: tuple[str, ...]  # globs under fixtures/
    on_disk: bool = False  # container images are read from a file

    def run(self, data: bytes) -> ScanReport:
        if not self.on_disk:
            report = scan_bytes(self.name, data, ruleset=RULES, limits=LIMITS)
        else:
            with tempfile.TemporaryDirectory(dir=_SCRATCH) as tmp:
                path = Path(tmp) / self.name
                path.write_bytes(data)
                report = scan([str(path)], ruleset=RULES, limits=LIMITS)
        bugs = [e for e in report.errors if e.is_bug]
        if bugs:
            raise ScanBug("; ".join(f"{e.scanner}: {e.reason}" for e in bugs))
        return report

    def seed_files(self) -> list[Path]:
        return sorted({p for pattern in self.seeds for p in FIXTURES.glob(pattern) if p.is_file()})


_SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None

TARGETS: dict[str, Target] = {
    t.name.split(".")[0]: t
    for t in (
        Target("pickle.pkl", ("models/**/*.pkl", "models/**/*.joblib", "hostile/*.pkl")),
        Target("zip.zip", ("archives/**/*.zip", "hostile/*.zip", "models/**/*.npz")),
        Target("tar.tar", ("archives/**/*.tar", "hostile/*.tar")),
        Target("safetensors.safetensors", ("models/**/*.safetensors", "huggingface/**/*.safetensors")),
        Target("onnx.onnx", ("models/**/*.onnx", "hostile/*.onnx")),
        Target("gguf.gguf", ("models/**/*.gguf",)),
        Target("numpy.npy", ("models/**/*.npy", "hostile/*.npy")),
        Target("tflite.tflite", ("models/**/*.tflite",)),
        Target("oci.tar", ("images/*.tar",), on_disk=True),
    )
}

"""The scanner registry: every scanner, and which formats each claims."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable

from mlsec.scanners.base import ScanContext, Scanner
from mlsec.scanners.dataset import DatasetScanner
from mlsec.scanners.dependencies import DependencyScanner, OsPackageScanner
from mlsec.scanners.gguf import GgufScanner
from mlsec.scanners.huggingface import HuggingFaceScanner
from mlsec.scanners.image_config import ImageConfigScanner
from mlsec.scanners.keras import KerasScanner
from mlsec.scanners.modelscan_bridge import ModelscanScanner
from mlsec.scanners.numpy import NumpyScanner
from mlsec.scanners.onnx import OnnxScanner
from mlsec.scanners.pickle import PickleScanner
from mlsec.scanners.pmml import PmmlScanner
from mlsec.scanners.pytorch import PyTorchScanner
from mlsec.scanners.safetensors import SafetensorsScanner
from mlsec.scanners.serving import ServingManifestScanner
from mlsec.scanners.tensorflow import TensorFlowScanner
from mlsec.scanners.tflite import TfliteScanner
from mlsec.scanners.trees import TreeModelScanner

SCANNERS: tuple[Scanner, ...] = (
    PickleScanner(),
    PyTorchScanner(),
    NumpyScanner(),
    OnnxScanner(),
    KerasScanner(),
    SafetensorsScanner(),
    GgufScanner(),
    TensorFlowScanner(),
    TfliteScanner(),
    TreeModelScanner(),
    PmmlScanner(),
    ModelscanScanner(),
    DependencyScanner(),
    OsPackageScanner(),
    ImageConfigScanner(),
    DatasetScanner(),
    HuggingFaceScanner(),
    ServingManifestScanner(),
)

_BY_FORMAT: dict[str, tuple[Scanner, ...]] = {}
for _scanner in SCANNERS:
    for _fmt in _scanner.formats:
        _BY_FORMAT[_fmt] = (*_BY_FORMAT.get(_fmt, ()), _scanner)


def scanners_for(fmt: str) -> tuple[Scanner, ...]:
    """The scanners that claim `fmt` (a format name from mlsec.formats)."""
    return _BY_FORMAT.get(fmt, ())


# The heavy libraries scanners import on first use, by the file name suffixes that usually need them. A process
# pool imports those its units will want once, before it forks, instead of in every worker.
HEAVY_BY_SUFFIX: dict[str, tuple[str, ...]] = {
    ".onnx": ("onnx",),
    **dict.fromkeys((".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"), ("fickling.fickle", "fickling.analysis")),
    **dict.fromkeys((".h5", ".hdf5", ".keras"), ("h5py",)),
    **dict.fromkeys((".csv", ".tsv", ".jsonl", ".ndjson"), ("pandas",)),
    ".parquet": ("pandas", "pyarrow.parquet"),
}
# What importing each costs (measured on the 2-core benchmark machine): how long a pool's cores would wait for it.
IMPORT_SECONDS = {
    "pandas": 0.36,
    "h5py": 0.10,
    "onnx": 0.07,  # with numpy
    "pyarrow.parquet": 0.09,
    "fickling.fickle": 0.006,
    "fickling.analysis": 0.0,  # with fickling.fickle
}
log = logging.getLogger(__name__)


def suffix_needs(path: str) -> tuple[str, ...]:
    """The heavy libraries a file named `path` will probably need."""
    return HEAVY_BY_SUFFIX.get(os.path.splitext(path)[1].lower(), ())


def heavy_modules(paths: Iterable[str], at_least: int = 1) -> list[str]:
    """The heavy libraries that at least `at_least` of the files named like `paths` will probably need, in a
    stable order. (A pool asks for as many files as it has workers: one CSV among ten thousand models is
    better served by the one worker that meets it importing pandas than by every scan waiting for it.)"""
    wanted: dict[str, int] = {}
    for path in paths:
        for module in suffix_needs(path):
            wanted[module] = wanted.get(module, 0) + 1
    return [module for module, count in wanted.items() if count >= at_least]


def preload(modules: Iterable[str]) -> None:
    """Import `modules` now (a pool's parent, before forking). One that fails is left for the scanner that needs it
    to report, with the file's name."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - only a head start: the scanner imports it again and says why
            log.debug("preloading %s failed: %s", module, exc)


__all__ = ["SCANNERS", "ScanContext", "Scanner", "heavy_modules", "preload", "scanners_for", "suffix_needs"]

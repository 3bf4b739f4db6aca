"""The scanner registry: every scanner, and which formats each claims."""

from __future__ import annotations

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


__all__ = ["SCANNERS", "ScanContext", "Scanner", "scanners_for"]

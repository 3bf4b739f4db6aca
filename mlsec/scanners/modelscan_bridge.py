"""modelscan as a second engine for the Keras and SavedModel checks it has, mapped to mlsec rule ids.

modelscan (Protect AI) looks for Lambda layers in Keras files and for ReadFile/WriteFile in
SavedModels; modelscan 0.8 runs its Keras v3 and SavedModel checks only where TensorFlow is
installed, so without it the HDF5 Lambda check is the one that runs. Its issues become findings under the
rule that `modelscan_operators` (rules/models.toml) names for the operator; scan() then folds a
modelscan finding into mlsec's own finding of the same rule on the same file, as corroboration,
and keeps it on its own where mlsec saw nothing: a disagreement a reviewer should see.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, ClassVar

from mlsec.artifacts import Blob
from mlsec.findings import SECOND_ENGINE, Finding
from mlsec.scanners.base import ScanContext

log = logging.getLogger(__name__)


def _engines(fmt: str) -> tuple[Any, list[Any]] | None:
    try:
        from modelscan.scanners.h5.scan import H5LambdaDetectScan  # noqa: PLC0415 - optional, heavy
        from modelscan.scanners.keras.scan import KerasLambdaDetectScan  # noqa: PLC0415
        from modelscan.scanners.saved_model.scan import (  # noqa: PLC0415
            SavedModelLambdaDetectScan,
            SavedModelTensorflowOpScan,
        )
        from modelscan.settings import SupportedModelFormats  # noqa: PLC0415
    except ImportError:
        return None
    return {
        "keras-v3": (SupportedModelFormats.KERAS, [KerasLambdaDetectScan]),
        "hdf5": (SupportedModelFormats.KERAS_H5, [H5LambdaDetectScan]),
        "tf-savedmodel": (SupportedModelFormats.TENSORFLOW, [SavedModelTensorflowOpScan, SavedModelLambdaDetectScan]),
    }.get(fmt)


@contextlib.contextmanager
def _quiet_modelscan() -> Iterator[None]:
    """modelscan logs at ERROR what is normal here (an HDF5 file holding only weights): keep it at debug."""
    logger = logging.getLogger("modelscan")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


class ModelscanScanner:
    name: ClassVar[str] = "modelscan"
    formats: ClassVar[frozenset[str]] = frozenset({"keras-v3", "hdf5", "tf-savedmodel"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        engines = _engines(blob.format)
        if engines is None:
            return
        from modelscan import __version__  # noqa: PLC0415
        from modelscan.model import Model  # noqa: PLC0415
        from modelscan.settings import DEFAULT_SETTINGS  # noqa: PLC0415

        fmt, classes = engines
        operators: dict[str, str] = ctx.ruleset.list("modelscan_operators")
        for engine in classes:
            with blob.open() as fh:
                model = Model(blob.display, fh)
                model.set_context("formats", [fmt])
                try:
                    with _quiet_modelscan():
                        results = engine(DEFAULT_SETTINGS).scan(model)
                except Exception as exc:  # noqa: BLE001 - a second engine's failure is logged, never fatal
                    log.debug("modelscan %s failed on %s: %s", engine.__name__, blob.display, exc)
                    continue
            if results is None:
                continue
            for error in results.errors:  # e.g. "install tensorflow": modelscan could not look
                log.debug("modelscan %s on %s: %s", engine.__name__, blob.display, getattr(error, "message", error))
            for issue in results.issues:
                operator = str(getattr(issue.details, "operator", "?"))
                module = str(getattr(issue.details, "module", ""))
                yield ctx.finding(
                    operators.get(operator, "MLSEC-MODELSCAN-001"),
                    blob,
                    f"modelscan {engine.name()} reports {module} operator {operator} ({issue.severity.name})",
                    facts={"operator": operator, "modelscan_module": module, "modelscan_severity": issue.severity.name},
                    source=f"{SECOND_ENGINE} {__version__}",
                )

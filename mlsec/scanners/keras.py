"""Keras model configurations (Keras 3 config.json, legacy HDF5 model_config): Lambda layers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

from mlsec.artifacts import Blob
from mlsec.findings import Finding
from mlsec.scanners.base import ScanContext

_MAX_CONFIG = 64 << 20


class KerasScanner:
    name: ClassVar[str] = "keras"
    formats: ClassVar[frozenset[str]] = frozenset({"json", "hdf5"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        config = self._config(blob)
        if not _looks_like_keras(config):
            return
        for layer in _layers(config):
            cfg = layer.get("config") if isinstance(layer.get("config"), dict) else {}
            name = str(cfg.get("name", "?"))
            yield ctx.finding(
                "MLSEC-KERAS-001",
                blob,
                f"Lambda layer {name!r}",
                facts={"layer": name, "has_bytecode": _has_bytecode(cfg)},
                source="mlsec keras",
            )

    def _config(self, blob: Blob) -> Any:
        if blob.format == "json":
            if blob.size > _MAX_CONFIG:
                return None
            with blob.open() as fh:
                try:
                    return json.loads(fh.read())
                except (ValueError, UnicodeDecodeError):
                    return None
        import h5py  # noqa: PLC0415 - heavy, lazy

        with blob.open() as fh, h5py.File(fh, "r") as h5:
            raw = h5.attrs.get("model_config")
        if raw is None:
            return None
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        try:
            return json.loads(str(raw))
        except ValueError:
            return None


def _looks_like_keras(config: Any) -> bool:
    return isinstance(config, dict) and "class_name" in config and "config" in config


def _layers(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "Lambda":
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _has_bytecode(cfg: dict[str, Any]) -> bool:
    function = cfg.get("function")
    if isinstance(function, dict):
        return function.get("class_name") == "__lambda__" or "code" in function.get("config", {})
    return isinstance(function, (list, str))

"""Keras model configurations (Keras 3 config.json, legacy HDF5 model_config), read as data.

Keras rebuilds a model by importing the `module` each config object names and calling what it
finds there; Lambda layers carry marshalled bytecode. So every object in the config is judged:
Lambda code, callables on the pickle deny lists (the same names run code here), modules outside
the Keras allowlist (imported on load), and custom objects that need code the loader registers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

from mlsec.artifacts import Blob
from mlsec.errors import InputError
from mlsec.findings import Finding
from mlsec.scanners.base import ScanContext
from mlsec.scanners.pickle import denied_global

_MAX_CONFIG = 64 << 20
_SOURCE = "mlsec keras"


class KerasScanner:
    name: ClassVar[str] = "keras"
    formats: ClassVar[frozenset[str]] = frozenset({"json", "hdf5"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        config, version = self._config(blob)
        if not _looks_like_keras(config):
            return
        safe_modules = tuple(ctx.ruleset.list("keras_safe_modules")["modules"])
        dangerous = frozenset(ctx.ruleset.list("keras_dangerous_callables")["names"])
        layers = 0
        for obj, in_lambda in _objects(config):
            layers += 1
            yield from _judge(obj, in_lambda, safe_modules, dangerous, blob, ctx)
        ctx.describe(blob, keras_objects=layers, keras_version=version, model_class=str(config.get("class_name", "")))

    def _config(self, blob: Blob) -> tuple[Any, str]:
        if blob.format == "json":
            if blob.size > _MAX_CONFIG:
                return None, ""
            with blob.open() as fh:
                try:
                    return json.loads(fh.read()), ""
                except (ValueError, UnicodeDecodeError):
                    return None, ""
        import h5py  # noqa: PLC0415 - heavy, lazy

        try:
            with blob.open() as fh, h5py.File(fh, "r") as h5:
                raw = h5.attrs.get("model_config")
                version = h5.attrs.get("keras_version", "")
        except OSError as exc:  # h5py's word for a file HDF5 cannot read (truncated, corrupt)
            raise InputError(f"not a readable HDF5 file: {exc}", path=blob.path, member=blob.member_name) from None
        if raw is None:
            return None, ""
        try:
            return json.loads(_text(raw)), _text(version)
        except ValueError:
            return None, ""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _judge(
    obj: dict[str, Any], in_lambda: bool, safe_modules: tuple[str, ...], dangerous: frozenset[str], blob: Blob, ctx: ScanContext
) -> Iterator[Finding]:
    class_name = str(obj.get("class_name"))
    cfg = obj.get("config") if isinstance(obj.get("config"), dict) else {}
    if class_name == "Lambda" or (class_name == "__lambda__" and not in_lambda):
        name = str(cfg.get("name", "?"))
        yield ctx.finding(
            "MLSEC-KERAS-001", blob, f"Lambda {name!r}", facts={"layer": name, "has_bytecode": _has_bytecode(cfg)}, source=_SOURCE
        )
        return
    module = obj.get("module")
    if isinstance(module, str) and module:
        # Functions are {"class_name": "function", "config": "<name>"}; classes are named by class_name.
        target = obj["config"] if class_name == "function" and isinstance(obj.get("config"), str) else class_name
        qualified = f"{module}.{target}"
        why = "listed in keras_dangerous_callables" if qualified in dangerous else denied_global(ctx.ruleset, module, target)
        if why:
            yield ctx.finding(
                "MLSEC-KERAS-002", blob, f"config calls {qualified} ({why})", facts={"callable": qualified}, source=_SOURCE
            )
        elif not _allowed(module, safe_modules):
            yield ctx.finding(
                "MLSEC-KERAS-003",
                blob,
                f"config imports module {module!r} for {target!r}",
                facts={"module": module, "name": target},
                source=_SOURCE,
            )
        return
    registered = obj.get("registered_name") if isinstance(obj.get("registered_name"), str) else class_name
    if ">" in registered:
        yield ctx.finding(
            "MLSEC-KERAS-004",
            blob,
            f"custom object {registered!r} must be registered by the loading code",
            facts={"object": registered},
            source=_SOURCE,
        )


def _allowed(module: str, safe_modules: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in safe_modules)


def _looks_like_keras(config: Any) -> bool:
    return isinstance(config, dict) and "class_name" in config and "config" in config


def _objects(root: Any) -> Iterator[tuple[dict[str, Any], bool]]:
    """Every serialized object (a dict with class_name), and whether it sits inside a Lambda layer."""
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        item, in_lambda = stack.pop()
        if isinstance(item, dict):
            if "class_name" in item:
                yield item, in_lambda
                in_lambda = in_lambda or item.get("class_name") == "Lambda"
            stack.extend((v, in_lambda) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, in_lambda) for v in item)


def _has_bytecode(cfg: dict[str, Any]) -> bool:
    function = cfg.get("function")
    if isinstance(function, dict):
        return function.get("class_name") == "__lambda__" or "code" in function.get("config", {})
    return isinstance(function, (list, str))

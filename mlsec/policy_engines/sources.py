"""Rego files, their `# METADATA`, and data documents, read from policy and data directories."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlsec.policy_engines.base import PolicyError

_PACKAGE = re.compile(r"^\s*package\s+([\w.\"\[\]]+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class RegoFile:
    path: str
    text: str
    package: str
    metadata: dict[str, Any] = field(default_factory=dict)  # the package-scope METADATA block

    @property
    def is_test(self) -> bool:
        return self.path.endswith("_test.rego")


def rego_files(dirs: Sequence[Path], *, tests: bool) -> list[RegoFile]:
    """Every .rego file under `dirs` (sorted), with or without the *_test.rego files."""
    files = []
    for directory in dirs:
        if not Path(directory).exists():
            raise PolicyError(f"policy directory not found: {directory}", path=str(directory))
        paths = [Path(directory)] if Path(directory).is_file() else sorted(Path(directory).rglob("*.rego"))
        for path in paths:
            if path.name.endswith("_test.rego") and not tests:
                continue
            files.append(rego_file(str(path), path.read_text(encoding="utf-8")))
    return files


def rego_file(name: str, text: str) -> RegoFile:
    """A RegoFile from its text; `name` is its path (or its id on the policy server)."""
    match = _PACKAGE.search(text)
    if match is None:
        raise PolicyError(f"{name}: no package declaration", path=name)
    return RegoFile(name, text, match.group(1), package_metadata(text, name))


def package_metadata(text: str, where: str = "") -> dict[str, Any]:
    """The YAML of the `# METADATA` block just above the package line (OPA's package scope), or {}."""
    lines = text.splitlines()
    package_at = next((i for i, line in enumerate(lines) if _PACKAGE.match(line)), None)
    if package_at is None:
        return {}
    block: list[str] = []
    i = package_at - 1
    while i >= 0 and lines[i].lstrip().startswith("#"):
        block.insert(0, lines[i].lstrip()[1:])
        i -= 1
    starts = [j for j, line in enumerate(block) if line.strip() == "METADATA"]
    if not starts:
        return {}
    body = "\n".join(line[1:] if line.startswith(" ") else line for line in block[starts[-1] + 1 :])
    try:
        doc = yaml.safe_load(body) or {}
    except yaml.YAMLError as exc:
        raise PolicyError(f"{where}: METADATA is not valid YAML: {exc}", path=where) from None
    if not isinstance(doc, dict):
        raise PolicyError(f"{where}: METADATA must be a mapping", path=where)
    return doc


def data_documents(dirs: Sequence[Path]) -> dict[str, Any]:
    """Every *.json / *.yaml / *.yml under `dirs`, merged at the root of `data` (later files win, key by key)."""
    merged: dict[str, Any] = {}
    for directory in dirs:
        if not Path(directory).exists():
            raise PolicyError(f"data directory not found: {directory}", path=str(directory))
        paths = [Path(directory)] if Path(directory).is_file() else sorted(Path(directory).rglob("*"))
        for path in paths:
            if path.suffix not in (".json", ".yaml", ".yml") or not path.is_file():
                continue
            try:
                text = path.read_text(encoding="utf-8")
                doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            except (ValueError, yaml.YAMLError, UnicodeDecodeError) as exc:
                raise PolicyError(f"{path}: not a valid data document: {exc}", path=str(path)) from None
            if not isinstance(doc, dict):
                raise PolicyError(f"{path}: a data document must be an object at the top", path=str(path))
            merged = deep_merge(merged, doc)
    return merged


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


def digest(files: Iterable[RegoFile], data: Any) -> str:
    """sha256 over the policies (path-independent: package and text) and the data they decide with."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: (f.package, f.text)):
        h.update(f.package.encode() + b"\0" + f.text.encode() + b"\0")
    h.update(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    return "sha256:" + h.hexdigest()

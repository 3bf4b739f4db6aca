"""`mlsec init`: a commented starter mlsec.yaml, from what a repository holds."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from mlsec import formats

_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "mlsec-out", ".mlsec", ".tox", "site-packages"}
_MAX_FILES = 20_000


def discover(root: Path) -> dict[str, list[str]]:
    """Artifact group -> globs (`dir/*.suffix`) for the models, datasets, images, dependency files and
    serving manifests under `root`, recognised the way a scan recognises them."""
    groups: dict[str, set[str]] = defaultdict(set)
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            seen += 1
            if seen > _MAX_FILES:
                break
            path = Path(dirpath) / name
            group = _group(path)
            if group:
                rel = path.parent.relative_to(root).as_posix()
                pattern = f"*{path.suffix}" if path.suffix else name
                groups[group].add(f"{rel}/{pattern}" if rel != "." else pattern)
    return {g: sorted(v) for g, v in sorted(groups.items())}


def _group(path: Path) -> str | None:
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    fmt = formats.sniff(head, name=str(path))
    if fmt in formats.MODEL_FORMATS or (fmt in ("zip", "tar") and path.name.lower().endswith(formats.MODEL_SUFFIXES)):
        return "models"
    if fmt in formats.DATASET_FORMATS:
        return "datasets"
    if fmt in formats.MANIFEST_FORMATS:
        return "dependencies"
    if fmt == "k8s-manifest":
        return "manifests"
    if fmt == "tar" and path.name.endswith((".oci.tar", ".docker.tar", "image.tar")):
        return "images"
    return None


def starter(root: Path) -> str:
    """The text of a starter mlsec.yaml for `root`."""
    found = discover(root)
    lines = [
        "# mlsec.yaml: this repository's ML artifacts and the pipeline stages that check them.",
        "# `mlsec run --stage NAME` runs one stage: scan, sign, gate, ledger, outputs. Docs: README, 'Pipelines'.",
        "version: 1",
        "",
        "# Artifact groups: globs relative to this file (found by `mlsec init`; edit freely).",
        "artifacts:",
    ]
    for group, globs in found.items():
        lines.append(f"  {group}:")
        lines += [f'    - "{g}"' for g in globs]
    if not found:
        lines += ["  models:", '    - "models/*.onnx"   # nothing recognised yet: name your files here']
    have = set(found) or {"models"}
    scan_all = [g for g in ("models", "datasets", "dependencies", "images", "manifests") if g in have]
    serve = [g for g in ("models", "images", "manifests") if g in have] or scan_all
    data = [g for g in ("datasets",) if g in have]
    lines += ["", "stages:"]
    if data:
        lines += [
            "  data:                      # new training data",
            f"    scan: [{', '.join(data)}]",
            "    gate: {stage: train}",
        ]
    lines += [
        "  register:                  # a trained model enters the registry",
        f"    scan: [{', '.join(scan_all)}]",
        "    gate: {stage: register}",
        "  serve:                     # what is deployed: signed, scanned, gated at serve",
        f"    scan: [{', '.join(serve)}]",
        "    sign: [models]" if "models" in have else "    # sign: [models]",
        "    gate: {stage: serve}",
        "",
        "# Signing with a local key (`mlsec keygen --private keys/mlsec.key --public keys/mlsec.pub`);",
        "# keep the private key out of the repository. Gates accept the signers listed here.",
        "signing: {key: keys/mlsec.key, public_key: keys/mlsec.pub}",
        "allowed_signers:",
        "  - key: keys/mlsec.pub",
        "",
        "ledger: .mlsec/ledger.sqlite3      # every scan, signature and decision, hash-chained",
        "outputs: {dir: mlsec-out, formats: [json, sarif, html]}",
    ]
    return "\n".join(lines) + "\n"

"""Hugging Face repository files: remote code a `trust_remote_code=True` loader would run, and chat
templates (tokenizer_config.json) read as Jinja syntax trees, never rendered.

The repository and revision of files in a Hugging Face cache or clone are facts from mlsec.provenance.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from mlsec.artifacts import Blob
from mlsec.findings import Finding
from mlsec.scanners.base import ScanContext

_SOURCE = "mlsec huggingface"
_MAX_JSON = 16 << 20


class HuggingFaceScanner:
    name: ClassVar[str] = "huggingface"
    formats: ClassVar[frozenset[str]] = frozenset({"hf-config", "hf-tokenizer-config", "hf-chat-template"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        if blob.size > _MAX_JSON:
            return
        with blob.open() as fh:
            data = fh.read()
        if blob.format == "hf-chat-template":  # chat_template.jinja: the template alone
            yield from _check_templates([("chat_template.jinja", data.decode("utf-8", "replace"))], blob, ctx)
            return
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(doc, dict):
            return
        if blob.format == "hf-config":
            yield from _auto_map(doc, blob, ctx)
        else:
            yield from _templates(doc, blob, ctx)


def _auto_map(doc: dict[str, Any], blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
    auto_map = doc.get("auto_map")
    if not isinstance(auto_map, dict) or not auto_map:
        return
    targets = sorted({str(t) for v in auto_map.values() for t in (v if isinstance(v, list) else [v]) if t})
    modules = sorted({t.split("--")[-1].rsplit(".", 1)[0] + ".py" for t in targets})
    remote = sorted({t.split("--")[0] for t in targets if "--" in t})
    summary = f"auto_map loads {', '.join(targets[:4])}" + (f" from other repositories ({', '.join(remote)})" if remote else "")
    present, absent = _code_files(blob, modules)
    if not blob.member:
        ctx.read_beside(blob, ", ".join(modules))
    if absent:
        summary += f"; not in this folder, fetched at load time: {', '.join(absent)}"
    yield ctx.finding(
        "MLSEC-HF-001", blob, summary,
        facts={"classes": ", ".join(targets), "python_files": ", ".join(present), "missing_python_files": ", ".join(absent),
               "other_repositories": ", ".join(remote)}, source=_SOURCE,
    )  # fmt: skip


def _code_files(blob: Blob, modules: list[str]) -> tuple[list[str], list[str]]:
    """The modules found next to config.json, each with its sha256 (the exact code to review), and the rest."""
    if blob.member:  # inside an archive: siblings are other members, which the scan reports on their own
        return modules, []
    folder = Path(blob.path).parent
    present, absent = [], []
    for module in modules:
        path = folder / module
        if "/" in module or "\\" in module or not path.is_file() or path.is_symlink():
            absent.append(module)
            continue
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        present.append(f"{module} (sha256 {digest.hexdigest()})")
    return present, absent


def _templates(doc: dict[str, Any], blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
    raw = doc.get("chat_template")
    named = [("chat_template", raw)] if isinstance(raw, str) else []
    if isinstance(raw, list):  # [{"name": "default", "template": "..."}, ...]
        named = [(f"chat_template[{t.get('name', i)}]", t.get("template")) for i, t in enumerate(raw) if isinstance(t, dict)]
    yield from _check_templates(named, blob, ctx)


def _check_templates(named: list[tuple[str, Any]], blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
    for key, template in named:
        from mlsec.scanners._jinja import template_findings  # noqa: PLC0415 - jinja2 only for a template

        yield from template_findings(key, template, blob, ctx, rules=("MLSEC-HF-002", "MLSEC-HF-003"), source=_SOURCE)

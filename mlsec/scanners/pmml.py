"""PMML (XML) models: document type declarations are refused before any XML parser sees them.

A DOCTYPE lets a PMML consumer's XML parser fetch files or URLs (XXE) or expand entities without
bound; PMML needs neither. Without one, the standard library's expat parser cannot expand
entities, so the document is then parsed for well-formedness and its facts.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import ClassVar

from mlsec.artifacts import Blob
from mlsec.errors import LimitExceeded
from mlsec.findings import Finding
from mlsec.scanners.base import ScanContext

_SOURCE = "mlsec pmml"
_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)\b")
_SYSTEM = re.compile(rb"\b(SYSTEM|PUBLIC)\s+[\"']([^\"']*)")


class PmmlScanner:
    name: ClassVar[str] = "pmml"
    formats: ClassVar[frozenset[str]] = frozenset({"pmml"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        if blob.size > ctx.limits.max_member_in_memory:
            raise LimitExceeded(f"{blob.size:,}-byte PMML document is over the in-memory limit", path=blob.path)
        with blob.open() as fh:
            data = fh.read()
        dtd = _DTD.search(data)
        if dtd:
            external = _SYSTEM.search(data)
            target = external.group(2).decode("utf-8", "replace") if external else ""
            summary = f"declares {dtd.group(1).decode()} at offset {dtd.start():,}" + (
                f" referencing {target!r}" if target else ""
            )
            yield ctx.finding(
                "MLSEC-PMML-001",
                blob,
                summary,
                facts={"declaration": dtd.group(1).decode(), "external": target},
                source=_SOURCE,
                offset=dtd.start(),
            )
            return
        try:
            root = ET.fromstring(data)
        except ET.ParseError as exc:
            yield ctx.finding("MLSEC-PMML-002", blob, f"not well-formed XML: {exc}", source=_SOURCE)
            return
        models = [child.tag.rsplit("}", 1)[-1] for child in root if child.tag.endswith("Model") or child.tag.endswith("Ensemble")]
        ctx.describe(blob, pmml_version=root.get("version", ""), models=", ".join(models))

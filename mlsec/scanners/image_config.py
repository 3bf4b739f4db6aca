"""A container image's configuration: user, secrets in Env and build history, ports, base tag, healthcheck.

Secrets are found with a cheap substring prefilter, then regexes (rules/images.toml); the report
names the variable or history step and the pattern, never the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, ClassVar

from mlsec.artifacts import Blob
from mlsec.findings import Finding
from mlsec.scanners.base import ScanContext

_SOURCE = "mlsec image config"


class ImageConfigScanner:
    name: ClassVar[str] = "image-config"
    formats: ClassVar[frozenset[str]] = frozenset({"image-config"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        with blob.open() as fh:
            doc = json.loads(fh.read())
        config = doc.get("config") or doc.get("container_config") or {}
        user = str(config.get("User") or "")
        ctx.describe(
            blob,
            user=user or "root",
            os=str(doc.get("os", "")),
            architecture=str(doc.get("architecture", "")),
            layers=len((doc.get("rootfs") or {}).get("diff_ids", [])),
        )
        if user.split(":")[0] in ("", "root", "0"):
            yield ctx.finding(
                "MLSEC-IMAGE-003", blob, f"User is {user or 'unset (root)'!r}", facts={"user": user}, source=_SOURCE
            )
        yield from _secrets(config, doc.get("history") or [], blob, ctx)
        ports = sorted(config.get("ExposedPorts") or {})
        if any(p.split("/")[0] == "22" for p in ports):
            yield ctx.finding(
                "MLSEC-IMAGE-005", blob, f"exposes {', '.join(ports)}", facts={"ports": ", ".join(ports)}, source=_SOURCE
            )
        base = _base_image(config, doc.get("history") or [])
        if base and (base.endswith(":latest") or ":" not in base.rsplit("/", 1)[-1]) and "@sha256:" not in base:
            yield ctx.finding("MLSEC-IMAGE-006", blob, f"base image {base}", facts={"base": base}, source=_SOURCE)
        if not config.get("Healthcheck"):
            yield ctx.finding("MLSEC-IMAGE-007", blob, "no HEALTHCHECK in the configuration", source=_SOURCE)


def _secrets(config: dict[str, Any], history: list[dict[str, Any]], blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
    patterns = ctx.ruleset.list("image_secret_patterns")
    prefilter = [p.lower() for p in patterns["prefilter"]]
    regexes = [re.compile(r) for r in patterns["regexes"]]
    places = [(f"Env {str(e).split('=', 1)[0]}", str(e)) for e in config.get("Env") or []]
    places += [(f"history step {i + 1}", str(h.get("created_by", ""))) for i, h in enumerate(history)]
    for where, text in places:
        lowered = text.lower()
        if not any(p in lowered for p in prefilter):
            continue
        hit = next((r for r in regexes if r.search(text)), None)
        if hit is not None:
            yield ctx.finding(
                "MLSEC-IMAGE-004",
                blob,
                f"{where} matches a secret pattern (value not shown)",
                facts={"where": where, "pattern": hit.pattern[:60]},
                source=_SOURCE,
            )


def _base_image(config: dict[str, Any], history: list[dict[str, Any]]) -> str:
    labels = config.get("Labels") or {}
    base = labels.get("org.opencontainers.image.base.name") or ""
    if base:
        return str(base)
    for step in history:
        match = re.search(r"\bFROM\s+(\S+)", str(step.get("created_by", "")))
        if match:
            return match.group(1)
    return ""

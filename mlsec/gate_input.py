"""The versioned document policies read (mlsec.gate-input/1): stage, report, signatures, evaluations, environment."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mlsec import __version__
from mlsec.report import ScanReport

SCHEMA = "mlsec.gate-input/1"
STAGES = ("pr", "train", "register", "serve")
_GITHUB = {
    "repository": "GITHUB_REPOSITORY",
    "ref": "GITHUB_REF",
    "sha": "GITHUB_SHA",
    "event": "GITHUB_EVENT_NAME",
    "actor": "GITHUB_ACTOR",
}

JSON = Any


def environment(now: datetime | None = None, env: Mapping[str, str] | None = None) -> dict[str, JSON]:
    """Facts about where the gate runs; `date` decides waiver expiry (SOURCE_DATE_EPOCH pins it)."""
    env = os.environ if env is None else env
    if now is None:
        epoch = env.get("SOURCE_DATE_EPOCH")
        now = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    facts: dict[str, JSON] = {
        "date": now.strftime("%Y-%m-%d"),
        "time": now.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "ci": env.get("CI", "").lower() in ("1", "true", "yes"),
        "mlsec_version": __version__,
    }
    if env.get("GITHUB_ACTIONS"):
        facts["github"] = {key: env.get(var, "") for key, var in _GITHUB.items()}
    return facts


def build_gate_input(
    report: ScanReport | Mapping[str, JSON],
    *,
    stage: str,
    signatures: Sequence[Mapping[str, JSON]] = (),
    env: Mapping[str, JSON] | None = None,
) -> dict[str, JSON]:
    """The input document for `data.mlsec.gates`. `report` is a ScanReport or its JSON form."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} (expected one of: {', '.join(STAGES)})")
    doc = report.to_dict() if isinstance(report, ScanReport) else dict(report)
    return {
        "schema": SCHEMA,
        "stage": stage,
        "report": doc,
        "signatures": [dict(s) for s in signatures],
        "evaluations": list(doc.get("evaluations", [])),
        "environment": dict(env) if env is not None else environment(),
        "serving": serving_endpoints(doc),
    }


def serving_endpoints(doc: Mapping[str, JSON]) -> list[dict[str, JSON]]:
    """The report's serving resources, each model URI and image marked scanned or not.

    A model URI counts as scanned when a top-level artifact of the report is (or contains) a model and
    its path is the URI's path, lies under it, or ends with it, the scheme and bucket or claim removed
    (`s3://models/fraud/v3` and `exports/fraud/v3/model.onnx`); or when the resource's annotation
    `mlsec.io/model-sha256` names a scanned artifact's sha256. `hf://ORG/NAME` matches files whose
    facts name that Hugging Face repository. An image counts as scanned when a scanned image archive
    carries that reference as its tag.
    """
    artifacts = list(doc.get("artifacts", []))
    model_paths = {a["path"] for a in artifacts if a.get("kind") == "model"}
    models = [a for a in artifacts if a.get("member") is None and a.get("path") in model_paths]
    image_tags = {
        str(a.get("member") or "").split(" → ")[0]
        for a in artifacts if a.get("member") and any(i.get("path") == a.get("path") and i.get("kind") == "image" for i in artifacts)
    }  # fmt: skip
    endpoints = []
    for a in artifacts:
        if a.get("kind") != "serving":
            continue
        facts = a.get("facts", {})
        pinned = str(facts.get("model_sha256") or "")
        uris = [u for u in str(facts.get("model_uris", "")).split("\n") if u]
        images = [i for i in str(facts.get("images", "")).split("\n") if i]
        endpoints.append(
            {
                "resource": a.get("member"), "manifest": a.get("path"),
                **{k: facts.get(k) for k in ("kind", "name", "namespace", "public", "authentication", "rate_limited",
                                             "resource_limits", "replicas", "outputs")},
                "model_uris": [_uri_match(u, models, artifacts, pinned) for u in uris],
                "images": [{"image": i, "scanned": _image_scanned(i, image_tags)} for i in images],
            }
        )  # fmt: skip
    return endpoints


def _uri_match(uri: str, models: list[Mapping[str, JSON]], artifacts: list[Mapping[str, JSON]], pinned: str) -> dict[str, JSON]:
    if pinned:
        hits = [str(a["sha256"]) for a in models if a.get("sha256") == pinned]
        return {"uri": uri, "scanned": bool(hits), "sha256": hits}
    scheme, _, rest = uri.partition("://")
    if scheme == "hf":
        repo = rest.split("@")[0].strip("/")
        hits = sorted({str(m["sha256"]) for m in models for a in artifacts
                       if a.get("path") == m.get("path") and (a.get("facts") or {}).get("hf_repository") == repo})  # fmt: skip
        return {"uri": uri, "scanned": bool(hits), "sha256": hits}
    key = rest.split("/", 1)[1] if scheme in ("s3", "gs", "gcs", "pvc", "azure", "wasbs") and "/" in rest else rest
    key = key.strip("/")
    hits = sorted({str(m["sha256"]) for m in models if key and _path_matches(str(m.get("path", "")).replace("\\", "/"), key)})
    return {"uri": uri, "scanned": bool(hits), "sha256": hits}


def _path_matches(path: str, key: str) -> bool:
    return path == key or path.endswith("/" + key) or f"/{key}/" in f"/{path}" or path.startswith(key + "/")


def _image_scanned(image: str, tags: set[str]) -> bool:
    short = image.removeprefix("docker.io/").removeprefix("library/")
    return image in tags or short in tags or any(t.removeprefix("docker.io/").removeprefix("library/") == short for t in tags)

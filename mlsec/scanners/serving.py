"""Serving manifests (Kubernetes Deployments, KServe InferenceServices, Seldon resources) as facts for
the `serve` gate: where the model comes from, which images run it, and how the endpoint is exposed.

Each serving resource in a (multi-document) YAML file becomes an artifact of kind `serving`, named
`KIND/NAMESPACE/NAME`, with scalar facts: `model_uris` and `images` (newline-separated), `public`,
`authentication`, `rate_limited`, `resource_limits`, `replicas`, `outputs` (labels, probabilities or
unknown). The Rego gate `serving_endpoints` judges them (model extraction and inversion threats);
which URIs and images were scanned or signed is worked out in mlsec/gate_input.py.

YAML is read with the safe loader, and each document's node graph is measured with its aliases
expanded before it is built: a "billion laughs" of nested aliases is refused before anything walks it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, ClassVar

from mlsec.artifacts import Artifact, ArtifactKind, Blob
from mlsec.errors import InputError, LimitExceeded
from mlsec.findings import Finding, JSONScalar
from mlsec.scanners.base import ScanContext

_MAX_BYTES = 16 << 20
_MAX_NODES = 1_000_000
_WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Pod", "Job", "CronJob"})
_SERVING = frozenset({"InferenceService", "SeldonDeployment", "Model", "ServingRuntime"} | _WORKLOADS)
_MODEL_SCHEMES = (
    "s3://",
    "gs://",
    "gcs://",
    "hf://",
    "pvc://",
    "oci://",
    "azure://",
    "wasbs://",
    "file://",
    "models:/",
    "runs:/",
)
_AUTH_ANNOTATIONS = ("serving.kserve.io/enable-auth", "security.opendatahub.io/enable-auth", "mlsec.io/authentication")
_RATE_HINTS = ("limit-rps", "limit-rpm", "rate-limit", "ratelimit", "limit-connections")


class ServingManifestScanner:
    name: ClassVar[str] = "serving"
    formats: ClassVar[frozenset[str]] = frozenset({"k8s-manifest"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        import yaml  # noqa: PLC0415 - only for manifests

        if blob.size > _MAX_BYTES:
            raise InputError(f"{blob.size:,}-byte manifest is over the {_MAX_BYTES:,}-byte limit", path=blob.path)
        with blob.open() as fh:
            text = fh.read().decode("utf-8", "replace")
        try:
            documents = [d for d in _load(text, blob) if isinstance(d, dict)]
        except yaml.YAMLError as exc:
            raise InputError(f"not valid YAML: {exc}", path=blob.path, member=blob.member_name) from None
        except RecursionError:
            raise InputError("YAML nested too deeply to read", path=blob.path, member=blob.member_name) from None
        services = [d for d in documents if d.get("kind") == "Service"]
        count = 0
        for doc in documents:
            if doc.get("kind") in _SERVING and isinstance(doc.get("spec"), dict):
                facts = describe(doc, services)
                if facts["model_uris"] or doc.get("kind") not in _WORKLOADS or facts["images"]:
                    ctx.add_artifact(_artifact(doc, facts, blob))
                    count += 1
        ctx.describe(blob, serving_resources=count, documents=len(documents))
        return iter(())  # findings come from the serve gate, which sees these facts


def _load(text: str, blob: Blob) -> Iterator[Any]:
    """Documents, each built only after its node graph, aliases expanded, is known to stay under
    _MAX_NODES (nested aliases, the "billion laughs", multiply without growing the file)."""
    import yaml  # noqa: PLC0415

    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            size = _expanded_size(node, {})
            if size > _MAX_NODES:
                raise LimitExceeded("YAML nodes with aliases expanded", _MAX_NODES, size, path=blob.path, member=blob.member_name)
            yield loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: Any, memo: dict[int, int]) -> int:
    """Nodes in `node` with every alias expanded, counted once per distinct node (linear time)."""
    import yaml  # noqa: PLC0415

    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a cycle (a recursive alias) counts once instead of forever
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[id(node)] = min(size, _MAX_NODES + 1)
    return memo[id(node)]


def describe(doc: dict[str, Any], services: list[dict[str, Any]] = ()) -> dict[str, JSONScalar]:  # type: ignore[assignment]
    """The facts of one serving resource."""
    kind = str(doc.get("kind"))
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    annotations = (
        {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()} if isinstance(meta.get("annotations"), dict) else {}
    )
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    strings = list(_strings(doc.get("spec")))
    containers = [c for c in _find(doc.get("spec"), ("containers", "initContainers")) if isinstance(c, dict)]
    uris = sorted({s for s in strings if s.startswith(_MODEL_SCHEMES) or _model_url(s)})
    images = sorted({str(c["image"]) for c in containers if isinstance(c.get("image"), str)})
    limited = bool(containers) and all(
        isinstance(c.get("resources"), dict) and isinstance(c["resources"].get("limits"), dict)
        and {"cpu", "memory"} <= set(c["resources"]["limits"]) for c in containers
    )  # fmt: skip
    spec = doc["spec"]
    if kind == "InferenceService":  # KServe: the predictor's own resources count when it names no containers
        predictor = spec.get("predictor") if isinstance(spec.get("predictor"), dict) else {}
        resources = [r for r in _find(predictor, ("resources",)) if isinstance(r, dict)]
        limited = limited or (bool(resources) and all({"cpu", "memory"} <= set(r.get("limits") or {}) for r in resources))
    return {
        "kind": kind,
        "name": str(meta.get("name", "")),
        "namespace": str(meta.get("namespace", "default")),
        "model_uris": "\n".join(uris),
        "images": "\n".join(images),
        "public": _public(kind, annotations, labels, services, meta),
        "authentication": any(annotations.get(a, "").lower() == "true" for a in _AUTH_ANNOTATIONS),
        "rate_limited": any(hint in key.lower() for key in annotations for hint in _RATE_HINTS),
        "resource_limits": limited,
        "replicas": _replicas(spec),
        "outputs": _outputs(strings, kind, spec),
        "model_sha256": annotations.get("mlsec.io/model-sha256", ""),
    }


def _artifact(doc: dict[str, Any], facts: dict[str, JSONScalar], blob: Blob) -> Artifact:
    canonical = json.dumps(doc, sort_keys=True, default=str).encode()
    return Artifact(
        path=blob.path,
        member=f"{facts['kind']}/{facts['namespace']}/{facts['name']}",
        kind=ArtifactKind.SERVING,
        format="k8s-resource",
        sha256=hashlib.sha256(canonical).hexdigest(),
        size=len(canonical),
        parent_sha256=blob.sha256,
        facts=facts,
    )


def _strings(node: Any, depth: int = 0) -> Iterator[str]:
    if depth > 64:
        return
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value, depth + 1)


def _find(node: Any, keys: tuple[str, ...], depth: int = 0) -> Iterator[Any]:
    """Every value under one of `keys`, anywhere in `node` (lists are flattened)."""
    if depth > 64:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys:
                yield from value if isinstance(value, list) else [value]
            yield from _find(value, keys, depth + 1)
    elif isinstance(node, list):
        for value in node:
            yield from _find(value, keys, depth + 1)


def _model_url(value: str) -> bool:
    """An http(s) URL that points at a model file (not every URL in a manifest is a model)."""
    lower = value.lower().split("?", 1)[0]
    return lower.startswith(("http://", "https://")) and lower.endswith(
        (".onnx", ".pt", ".pth", ".pkl", ".joblib", ".safetensors", ".gguf", ".h5", ".keras", ".bin", ".tar.gz", ".zip")
    )


def _public(kind: str, annotations: dict[str, str], labels: dict[str, Any], services: list[dict[str, Any]], meta: dict) -> bool:
    if kind == "InferenceService":  # KServe exposes through the ingress unless told cluster-local
        local = labels.get("networking.kserve.io/visibility") == "cluster-local"
        return not (local or annotations.get("networking.kserve.io/visibility") == "cluster-local")
    if kind == "SeldonDeployment" or kind == "Model":
        return annotations.get("mlsec.io/public", "true").lower() == "true"
    name = meta.get("name")
    for service in services:  # a workload is public when a LoadBalancer or NodePort Service selects it
        spec = service.get("spec") if isinstance(service.get("spec"), dict) else {}
        if spec.get("type") in ("LoadBalancer", "NodePort") and (spec.get("selector") or {}).get("app") in (name, None):
            return True
    return False


def _replicas(spec: dict[str, Any]) -> int:
    values = [v for v in _find(spec, ("replicas", "minReplicas")) if isinstance(v, int) and not isinstance(v, bool)]
    return min(values) if values else 1


def _outputs(strings: list[str], kind: str, spec: dict[str, Any]) -> str:
    text = "\n".join(strings).lower()
    if "predict_proba" in text or "probabilit" in text or "return_probabilities" in text:
        return "probabilities"
    if any(s.lower() in ("predict", "--method=predict") for s in strings) or "return_labels" in text:
        return "labels"
    if kind == "SeldonDeployment" and "sklearn_server" in text:
        return "probabilities"  # Seldon's SKLearn server calls predict_proba unless told `method: predict`
    return "unknown"

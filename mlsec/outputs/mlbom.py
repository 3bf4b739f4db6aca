"""The CycloneDX ML-BOM of a scan, built with cyclonedx-python-lib and validated by its JSON validator.

Models are `machine-learning-model` components, datasets `data` components, dependencies `library`
components with purls, all hanging off one root component in the dependency graph; advisories the
scan matched are `vulnerabilities`; each component carries its findings summarized as properties.
The library has no `modelCard` nor `data` fields: they are added to its JSON in `_ml_fields`, and
the final document is validated. Reproducible byte for byte: the timestamp is the report's, the
serial number a UUID derived from the content, the order sorted.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any

from mlsec import __version__
from mlsec.artifacts import Artifact, ArtifactKind
from mlsec.errors import OutputError
from mlsec.findings import Finding
from mlsec.report import ScanReport
from mlsec.rules import RuleSet

SPECS = ("1.6", "1.7")
_FRAMEWORKS = {
    "pickle": "python-pickle", "pytorch-zip": "pytorch", "pytorch-legacy": "pytorch", "numpy": "numpy",
    "numpy-npz": "numpy", "onnx": "onnx", "keras-v3": "keras", "hdf5": "keras", "safetensors": "safetensors",
    "gguf": "gguf", "tflite": "tensorflow-lite", "tf-savedmodel": "tensorflow", "tf-graphdef": "tensorflow",
    "xgboost-json": "xgboost", "lightgbm": "lightgbm", "pmml": "pmml",
}  # fmt: skip


def render(report: ScanReport, ruleset: RuleSet | None = None, *, spec: str = "1.6") -> str:
    """The ML-BOM of `report` as CycloneDX JSON (spec 1.6 or 1.7)."""
    from cyclonedx.model.bom import Bom  # noqa: PLC0415 - heavy, lazy
    from cyclonedx.output import make_outputter  # noqa: PLC0415
    from cyclonedx.schema import OutputFormat, SchemaVersion  # noqa: PLC0415

    if spec not in SPECS:
        raise OutputError(f"unknown CycloneDX spec {spec!r} (expected one of: {', '.join(SPECS)})")
    version = SchemaVersion.V1_6 if spec == "1.6" else SchemaVersion.V1_7
    by_path = _findings_by_path(report.findings)
    root, components, graph, cards = _components(report, by_path)
    bom = Bom(components=components, metadata=_metadata(report, root), vulnerabilities=_vulnerabilities(report, components))
    for parent, children in graph.items():
        bom.register_dependency(parent, children)
    doc = json.loads(make_outputter(bom, OutputFormat.JSON, version).output_as_string())
    _ml_fields(doc, cards)
    doc["serialNumber"] = "urn:uuid:" + str(
        uuid.UUID(bytes=hashlib.sha256(_canonical(doc, without="serialNumber")).digest()[:16], version=5)
    )
    text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    _validate(text, version)
    return text


def _canonical(doc: dict[str, Any], *, without: str) -> bytes:
    return json.dumps({k: v for k, v in doc.items() if k != without}, sort_keys=True, separators=(",", ":")).encode()


def _validate(text: str, version: Any) -> None:
    from cyclonedx.validation.json import JsonStrictValidator  # noqa: PLC0415

    error = JsonStrictValidator(version).validate_str(text)
    if error is not None:
        raise OutputError(f"the ML-BOM does not validate against CycloneDX {version.to_version()}: {error}")


def _findings_by_path(findings: Iterable[Finding]) -> dict[str, list[Finding]]:
    grouped: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        grouped[f.location.path].append(f)
    return grouped


def _metadata(report: ScanReport, root: Any) -> Any:
    from cyclonedx.model import Property  # noqa: PLC0415
    from cyclonedx.model.bom import BomMetaData  # noqa: PLC0415
    from cyclonedx.model.component import Component, ComponentType  # noqa: PLC0415

    tool = Component(name="mlsec", version=__version__, type=ComponentType.APPLICATION, bom_ref="tool:mlsec")
    properties = [
        Property(name="mlsec:report:schema", value="mlsec.report/1"),
        Property(name="mlsec:rules_digest", value=report.rules_digest),
        Property(name="mlsec:findings:max_severity", value=(report.max_severity().label if report.max_severity() else "none")),
        Property(name="mlsec:scan:errors", value=str(len(report.errors))),
        Property(name="mlsec:scan:skipped", value=str(len(report.skipped))),
    ]
    metadata = BomMetaData(component=root, properties=properties, timestamp=_time(report.finished_at))
    metadata.tools.components.add(tool)
    return metadata


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _components(
    report: ScanReport, by_path: dict[str, list[Finding]]
) -> tuple[Any, list[Any], dict[Any, list[Any]], dict[str, dict[str, Any]]]:
    from cyclonedx.model.component import Component, ComponentType  # noqa: PLC0415

    root = Component(
        name=" ".join(report.targets) or "scan", type=ComponentType.APPLICATION, bom_ref="scan-root", version=__version__
    )
    components: list[Any] = []
    cards: dict[str, dict[str, Any]] = {}
    top = [a for a in report.artifacts if a.member is None]
    models = {a.path for a in report.artifacts if a.kind is ArtifactKind.MODEL}
    for artifact in sorted(top, key=lambda a: a.path):
        if artifact.path in models:
            component = _model(artifact, report, by_path.get(artifact.path, []))
            cards[str(component.bom_ref)] = _model_card(artifact, report, by_path.get(artifact.path, []))
        elif artifact.kind is ArtifactKind.DATASET:
            component = _file_component(artifact, ComponentType.DATA, "dataset", by_path.get(artifact.path, []))
            cards[str(component.bom_ref)] = {"data": [{"type": "dataset", "name": PurePosixPath(artifact.path).name}]}
        else:
            continue
        components.append(component)
    packages = _packages(report, by_path)
    components.extend(packages.values())
    return root, components, {root: components}, cards


def _model(artifact: Artifact, report: ScanReport, findings: list[Finding]) -> Any:
    from cyclonedx.model.component import ComponentType  # noqa: PLC0415

    component = _file_component(artifact, ComponentType.MACHINE_LEARNING_MODEL, "model", findings)
    inner = [a for a in report.artifacts if a.path == artifact.path and a.kind is ArtifactKind.MODEL]
    formats = sorted({a.format for a in inner})
    component.properties.update(_properties({"mlsec:format": ", ".join(formats), "mlsec:framework": _framework(formats)}))
    for key, value in sorted(artifact.facts.items()):
        component.properties.update(_properties({f"mlsec:fact:{key}": value}))
    component.purl = _hub_purl(artifact)
    return component


def _hub_purl(artifact: Artifact) -> Any:
    """pkg:huggingface/ORG/NAME@REV for a model from a Hugging Face repository (purl-spec's huggingface type)."""
    from packageurl import PackageURL  # noqa: PLC0415

    repository, revision = artifact.facts.get("hf_repository"), artifact.facts.get("hf_revision")
    if not isinstance(repository, str) or repository.count("/") != 1:
        return None  # datasets/ and spaces/ repositories have no purl type
    namespace, name = repository.split("/")
    return PackageURL(type="huggingface", namespace=namespace, name=name, version=str(revision) if revision else None)


def _framework(formats: list[str]) -> str:
    return ", ".join(sorted({_FRAMEWORKS.get(f, f) for f in formats}))


def _file_component(artifact: Artifact, kind: Any, prefix: str, findings: list[Finding]) -> Any:
    from cyclonedx.model import HashAlgorithm, HashType  # noqa: PLC0415
    from cyclonedx.model.component import Component  # noqa: PLC0415

    hashes = [HashType(alg=HashAlgorithm.SHA_256, content=artifact.sha256)] if artifact.sha256 else []
    component = Component(
        name=PurePosixPath(artifact.path).name,
        type=kind,
        bom_ref=f"{prefix}:{artifact.sha256 or artifact.path}",
        hashes=hashes,
        properties=_properties({"mlsec:path": artifact.path, "mlsec:size": artifact.size}),
    )
    component.properties.update(_finding_properties(findings))
    return component


def _finding_properties(findings: list[Finding]) -> list[Any]:
    counts = Counter(f.severity.label for f in findings)
    values: dict[str, Any] = {"mlsec:findings:count": len(findings)}
    if findings:
        values["mlsec:findings:max_severity"] = max(f.severity for f in findings).label
        values["mlsec:findings:rules"] = ", ".join(sorted({f.rule_id for f in findings}))
        values.update({f"mlsec:findings:{label}": n for label, n in counts.items()})
    return _properties(values)


def _properties(values: dict[str, Any]) -> list[Any]:
    from cyclonedx.model import Property  # noqa: PLC0415

    return [Property(name=k, value=str(v)) for k, v in values.items() if v not in (None, "")]


def _packages(report: ScanReport, by_path: dict[str, list[Finding]]) -> dict[str, Any]:
    from cyclonedx.model.component import Component, ComponentType  # noqa: PLC0415
    from packageurl import PackageURL  # noqa: PLC0415

    packages: dict[str, Any] = {}
    for artifact in report.artifacts:
        if artifact.kind is not ArtifactKind.PACKAGE or artifact.member is None or artifact.member in packages:
            continue
        facts = artifact.facts
        vulnerable = [f for f in by_path.get(artifact.path, []) if f.evidence.facts.get("purl") == artifact.member]
        component = Component(
            name=str(facts.get("name", artifact.member)),
            version=str(facts.get("version") or "") or None,
            type=ComponentType.LIBRARY,
            bom_ref=artifact.member,
            purl=PackageURL.from_string(artifact.member),
            properties=_properties({"mlsec:manifest": artifact.path, "mlsec:specifier": facts.get("specifier")}),
        )
        component.properties.update(_finding_properties(vulnerable))
        packages[artifact.member] = component
    return packages


def _vulnerabilities(report: ScanReport, components: list[Any]) -> list[Any]:
    from cyclonedx.model.vulnerability import (  # noqa: PLC0415
        BomTarget,
        Vulnerability,
        VulnerabilityRating,
        VulnerabilityReference,
        VulnerabilityScoreSource,
        VulnerabilitySource,
    )

    refs = {str(c.bom_ref) for c in components}
    merged: dict[str, dict[str, Any]] = {}
    for f in report.findings:
        facts = f.evidence.facts
        if "advisory" not in facts or str(facts.get("purl")) not in refs:
            continue
        entry = merged.setdefault(str(facts["advisory"]), {"finding": f, "targets": set()})
        entry["targets"].add(str(facts["purl"]))
    out = []
    osv = VulnerabilitySource(name="OSV")
    for advisory, entry in sorted(merged.items()):
        f, facts = entry["finding"], entry["finding"].evidence.facts
        ratings = []
        if "cvss" in facts:
            vector = str(facts.get("cvss_vector", ""))
            method = VulnerabilityScoreSource.CVSS_V4 if vector.startswith("CVSS:4") else VulnerabilityScoreSource.CVSS_V3_1
            ratings.append(
                VulnerabilityRating(source=osv, score=Decimal(str(facts["cvss"])), method=method, vector=vector or None)
            )
        aliases = [i.strip() for i in str(facts.get("ids", "")).split(",") if i.strip() and i.strip() != advisory]
        out.append(
            Vulnerability(
                bom_ref=f"vuln:{advisory}",
                id=advisory,
                source=osv,
                references=[VulnerabilityReference(id=a, source=osv) for a in aliases],
                ratings=ratings,
                description=f.evidence.summary,
                recommendation=f"upgrade to {facts['fixed_in']}" if facts.get("fixed_in") else None,
                affects=[BomTarget(ref=t) for t in sorted(entry["targets"])],
            )
        )
    return out


def _model_card(artifact: Artifact, report: ScanReport, findings: list[Finding]) -> dict[str, Any]:
    facts = artifact.facts
    parameters: dict[str, Any] = {}
    if facts.get("architecture") or facts.get("model_class"):
        parameters["modelArchitecture"] = str(facts.get("architecture") or facts.get("model_class"))
    if facts.get("inputs"):
        parameters["inputs"] = [{"format": i} for i in str(facts["inputs"]).split(", ") if i]
    if facts.get("outputs"):
        parameters["outputs"] = [{"format": o} for o in str(facts["outputs"]).split(", ") if o]
    datasets = sorted({e.dataset_sha256 for e in report.evaluations if e.artifact_sha256 == artifact.sha256 and e.dataset_sha256})
    if datasets:
        parameters["datasets"] = [{"ref": f"dataset:{d}"} for d in datasets]
    card: dict[str, Any] = {}
    if parameters:
        card["modelParameters"] = parameters
    metrics = [
        {"type": name, "value": str(value), "slice": e.name}
        for e in report.evaluations
        if e.artifact_sha256 == artifact.sha256
        for name, value in sorted(e.metrics.items())
    ]
    if metrics:
        card["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    limitations = [f"{f.rule_id} ({f.severity.label}): {f.evidence.summary}" for f in sorted(findings, key=Finding.sort_key)]
    if limitations:
        card["considerations"] = {"technicalLimitations": limitations[:50]}
    return {"modelCard": card} if card else {}


def _ml_fields(doc: dict[str, Any], cards: dict[str, dict[str, Any]]) -> None:
    """Add what the library cannot express (modelCard, data) to the components it wrote."""
    for component in doc.get("components", []):
        extra = cards.get(component.get("bom-ref", ""))
        if extra:
            component.update(extra)

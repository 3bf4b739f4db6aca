"""`mlsec run --stage NAME`: one stage of an mlsec.yaml pipeline, in order: scan its artifact groups,
sign what it signs (and verify each signature at once), gate, append every step to the ledger, and
write the outputs (report.json, report.sarif, report.html, decision.json, signatures.json).

The exit code is the gate's when the stage has one (0 allowed, 1 denied), else the report's verdict's
(ScanReport.verdict: an evaluation that could not finish makes it incomplete, as in `mlsec evaluate`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlsec.audit_records import entries_about, record_evaluation, record_gate, record_scan, record_signature
from mlsec.decision import Decision
from mlsec.findings import Severity
from mlsec.ledger import Ledger
from mlsec.outputs import FORMATS
from mlsec.outputs import html as html_output
from mlsec.pipeline.config import ConfigError, Evaluate, Pipeline, Stage
from mlsec.report import EXIT_STATUS, ScanReport
from mlsec.rules import RuleSet
from mlsec.scan import scan

KEY_ISSUER = "mlsec:key"  # the issuer of signatures made with a local key (identity: "key sha256:...")
_NAMES = {"json": "report.json", "sarif": "report.sarif", "html": "report.html", "mlbom": "mlbom.cdx.json", "table": "report.txt"}


@dataclass
class StageRun:
    stage: Stage
    report: ScanReport
    exit_code: int
    decision: Decision | None = None
    signatures: list[dict[str, Any]] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


def run_stage(
    pipeline: Pipeline,
    name: str,
    *,
    ruleset: RuleSet,
    decide: Callable[[ScanReport, dict[str, Any]], Decision],
    fail_on: Severity = Severity.HIGH,
) -> StageRun:
    """Run stage `name`; `decide(report, gate_options)` is the gate (the CLI's, so the engine options are one)."""
    if name not in pipeline.stages:
        raise ConfigError(f"no stage {name!r} (stages: {', '.join(pipeline.stages)})", path=str(pipeline.root / "mlsec.yaml"))
    stage = pipeline.stages[name]
    report = scan(pipeline.paths(stage.scan), ruleset=ruleset, isolate=True)
    if stage.evaluate:
        report = _evaluate(pipeline, stage.evaluate, report, ruleset)
    code = EXIT_STATUS[report.verdict(fail_on)]
    result = StageRun(stage, report, code)
    ledger = Ledger(pipeline.ledger) if pipeline.ledger else None
    try:
        if ledger:
            record_scan(ledger, report, code)
            if stage.evaluate:
                record_evaluation(ledger, report, code)
        if stage.sign:
            result.signatures = _sign(pipeline, pipeline.paths(stage.sign), ledger)
        if stage.gate:
            result.decision = decide(report, _gate_options(pipeline, stage, result.signatures))
            if ledger:
                record_gate(ledger, result.decision, report)
            result.exit_code = 0 if result.decision.allowed else 1
        entries = entries_about(ledger, report) if ledger else []
    finally:
        if ledger:
            ledger.close()
    result.written = _write(pipeline, result, ruleset, entries)
    return result


def _evaluate(pipeline: Pipeline, spec: Evaluate, report: ScanReport, ruleset: RuleSet) -> ScanReport:
    """Every model of the group on every dataset of the group, against this stage's own scan report: what it
    found in them decides, as for `mlsec evaluate`, whether they may be loaded at all."""
    from mlsec.evaluations import evaluate  # noqa: PLC0415 - ART and torch load only in the child

    for model in pipeline.paths((spec.models,)):
        for data in pipeline.paths((spec.data,)):
            report = evaluate(
                model, data, label_column=spec.label_column, suites=spec.suites, report=report, ruleset=ruleset,
                epsilons=spec.eps, sample=spec.sample, input_shape=spec.input_shape, factory=spec.factory,
                factory_path=pipeline.root, trigger=spec.trigger,
            )  # fmt: skip
    return report


def _sign(pipeline: Pipeline, paths: list[str], ledger: Ledger | None) -> list[dict[str, Any]]:
    from mlsec.signing import sign, verify  # noqa: PLC0415 - sigstore loads only to sign

    assert pipeline.signing_key is not None  # config.load requires it for stages that sign
    public = pipeline.public_key or pipeline.signing_key.with_suffix(".pub")
    entries = []
    for path in paths:
        bundle = sign(Path(path), key=pipeline.signing_key)
        verified = verify(Path(path), bundle, key=public)
        if ledger:
            record_signature(ledger, Path(path), bundle, "key")
        entries.append({
            "file": path, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(), "verified": True,
            "identity": verified.signer, "issuer": KEY_ISSUER, "bundle": str(bundle),
        })  # fmt: skip
    return entries


def allowed_signers(pipeline: Pipeline) -> list[dict[str, str]]:
    """allowed_signers for the gate's data: `{key: PUB}` entries become that key's identity under KEY_ISSUER."""
    from mlsec.signing import key_identity  # noqa: PLC0415

    out = []
    for signer in pipeline.allowed_signers:
        if "key" in signer:
            out.append({"identity": key_identity(pipeline.root / signer["key"]), "issuer": KEY_ISSUER})
        else:
            out.append({"identity": signer["identity"], "issuer": signer["issuer"]})
    return out


def _gate_options(pipeline: Pipeline, stage: Stage, signatures: list[dict[str, Any]]) -> dict[str, Any]:
    assert stage.gate is not None
    return {
        "stage": stage.gate.stage, "policy_dirs": tuple(map(str, stage.gate.policies)), "data_dirs": tuple(map(str, stage.gate.data)),
        "no_bundled_policies": not stage.gate.bundled, "engine": "embedded", "opa_url": None, "push_policies": False,
        "opa_timeout": 10.0, "signatures": signatures, "allowed_signers": allowed_signers(pipeline),
    }  # fmt: skip


def _write(pipeline: Pipeline, result: StageRun, ruleset: RuleSet, entries: list[Any]) -> list[Path]:
    out = pipeline.out_dir / result.stage.name
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in pipeline.formats:
        if fmt == "html":
            text = html_output.render(
                result.report, ruleset, decision=result.decision, ledger=entries, exit_code=result.exit_code
            )
        else:
            text = FORMATS[fmt](result.report, ruleset)
        (out / _NAMES[fmt]).write_text(text, encoding="utf-8")
        written.append(out / _NAMES[fmt])
    if result.decision is not None:
        (out / "decision.json").write_text(json.dumps(result.decision.to_dict(), indent=2) + "\n", encoding="utf-8")
        written.append(out / "decision.json")
    if result.signatures:
        (out / "signatures.json").write_text(json.dumps(result.signatures, indent=2) + "\n", encoding="utf-8")
        written.append(out / "signatures.json")
    return written

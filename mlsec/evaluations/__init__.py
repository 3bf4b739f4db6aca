"""evaluate(): the only part of mlsec that loads a model, and only one whose static scan passed.

The model and its dataset must be in a scan report (given, or made on the spot) with nothing at or above
`refuse_at` (rules/evaluations.toml, default medium) and no scan error; otherwise the evaluation is
refused (MLSEC-EVAL-002) and nothing is loaded. The evaluation itself runs in sandbox.py's child process;
its metrics come back as EvaluationResult records, and thresholds in rules/ turn them into findings.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsec.findings import Evidence, Finding, Location, Severity
from mlsec.inputs import hash_file
from mlsec.report import EvaluationResult, ScanReport
from mlsec.rules import RuleSet, load_ruleset

if TYPE_CHECKING:  # the sandbox (subprocess and the rest) loads when an evaluation runs, not with this module
    from mlsec.evaluations.sandbox import SandboxLimits

SUITES = ("adversarial", "poisoning", "backdoor")
# what an evaluation runs when not told otherwise (evaluate(), the CLI's options, mlsec.yaml)
DEFAULT_SUITES = ("adversarial",)
DEFAULT_EPSILONS = (0.1,)
DEFAULT_SAMPLE = 200
# what the child loads (child.load_model): scikit-learn pickles and joblib files, PyTorch files, ONNX
EVALUABLE_FORMATS = frozenset({"pickle", "pytorch-zip", "pytorch-legacy", "onnx"})
DEVICES = ("auto", "cpu", "cuda")
_SOURCE = "mlsec evaluate"
# metric, its threshold in rules/evaluations.toml (lists.evaluation_thresholds), whether a value below it
# (True) or above it meets the condition, the rule, and whether the finding is on the dataset. A rule with
# several rows is raised when every condition whose metric the result has is met.
_THRESHOLDS = (
    ("robust_accuracy", "min_robust_accuracy", True, "MLSEC-EVAL-001", False),
    ("label_issue_fraction", "max_label_issue_fraction", False, "MLSEC-EVAL-004", True),
    ("anomaly_index", "max_anomaly_index", False, "MLSEC-EVAL-005", False),
    ("trigger_norm_ratio", "max_trigger_norm_ratio", True, "MLSEC-EVAL-005", False),
    ("backdoor_success_rate", "max_backdoor_success_rate", False, "MLSEC-EVAL-006", False),
    ("class_suspicion_z", "warn_class_suspicion_z", False, "MLSEC-EVAL-007", True),
)
# what the ledger and registry tags keep of a result: the clean accuracy, and every metric a rule judges
HEADLINE_METRICS = ("clean_accuracy", *dict.fromkeys(metric for metric, *_ in _THRESHOLDS))


def suites_named(names: Sequence[str]) -> tuple[str, ...]:
    """The suites `names` asks for, once each in order ("all": every suite); ValueError names unknown ones."""
    unknown = [s for s in names if s not in (*SUITES, "all")]
    if unknown:
        raise ValueError(f"unknown suite(s) {', '.join(unknown)}; this version runs: {', '.join(SUITES)} (or all)")
    return SUITES if "all" in names else tuple(dict.fromkeys(names))


def evaluate(
    model: str | Path,
    data: str | Path,
    *,
    label_column: str | None = None,
    suites: Sequence[str] = DEFAULT_SUITES,
    report: ScanReport | None = None,
    ruleset: RuleSet | None = None,
    epsilons: Sequence[float] = DEFAULT_EPSILONS,
    norms: Sequence[str] = ("inf",),
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    limits: SandboxLimits | None = None,
    factory: str | None = None,
    factory_path: str | Path | None = None,
    input_shape: Sequence[int] | None = None,
    trigger: str | None = None,
    trigger_target: int | None = None,
    device: str = "auto",
) -> ScanReport:
    """Evaluate `model` on `data`; returns `report` (or a fresh static scan of both) with the evaluation
    results and the findings their thresholds raise. A PyTorch state dict needs `factory` ("MODULE:FUNCTION",
    importable from `factory_path`, default the current directory) to build the module it loads into, and
    `input_shape` (e.g. (1, 8, 8)) when the module does not take the dataset's flat rows. With the backdoor
    suite, `trigger` ("R0:R1,C0:C1=VALUE", see trigger.py) is a candidate trigger to measure: its attack
    success rate on `trigger_target` (default: the class it most often forces) and STRIP. Suite "all" runs
    every suite. `device` is where a torch model runs: "auto" (a GPU when torch sees one), "cpu" or "cuda"."""
    ruleset = ruleset or load_ruleset()
    suites = suites_named(suites)
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; one of {', '.join(DEVICES)}")
    if trigger:
        from mlsec.evaluations.trigger import parse  # noqa: PLC0415

        parse(trigger)  # a malformed trigger is the caller's ValueError, before anything runs
    if report is None:
        from mlsec.scan import scan  # noqa: PLC0415 - scan imports every scanner

        report = scan([str(model), str(data)], ruleset=ruleset, isolate=True)
    model_sha, data_sha = hash_file(str(model)), hash_file(str(data))
    thresholds = ruleset.list("evaluation_thresholds")
    refuse_at = Severity.parse(thresholds["refuse_at"])
    reason = refusal(report, {str(model): model_sha, str(data): data_sha}, refuse_at)
    if reason:
        result = EvaluationResult(
            "refused", "refused", model_sha, data_sha, {"suites": list(suites)}, {}, Evidence(reason, {}, _SOURCE), 0.0
        )
        return _with(report, [result], [_finding(ruleset, "MLSEC-EVAL-002", str(model), model_sha, reason)])
    request = {
        "model": str(Path(model).resolve()),
        "data": str(Path(data).resolve()),
        "label_column": label_column,
        "suites": list(suites),
        "epsilons": [float(e) for e in epsilons],
        "norms": list(norms),
        "sample": sample,
        "seed": seed,
        "factory": factory,
        "factory_path": str(Path(factory_path or Path.cwd()).resolve()),
        "input_shape": list(input_shape) if input_shape else None,
        "trigger": trigger,
        "trigger_target": trigger_target,
        "device": device,
        # Neural Cleanse's verdict, from rules/
        "max_anomaly_index": float(thresholds["max_anomaly_index"]),
        "max_trigger_norm_ratio": float(thresholds["max_trigger_norm_ratio"]),
    }
    from mlsec.evaluations.sandbox import SandboxError, SandboxLimits, run_child  # noqa: PLC0415

    started = time.perf_counter()
    try:
        answer = run_child(request, limits or SandboxLimits())
    except SandboxError as exc:
        evidence = Evidence(exc.message, {}, _SOURCE)
        result = EvaluationResult("error", "error", model_sha, data_sha, request, {}, evidence, time.perf_counter() - started)
        return _with(report, [result], [_finding(ruleset, "MLSEC-EVAL-003", str(model), model_sha, exc.message)])
    results = [_result(r, answer, model_sha, data_sha) for r in answer["results"]]
    findings = []
    for r in (r for r in results if r.status == "completed"):
        for rule_id, on_data, met in _conditions(r.metrics, thresholds):
            if met and all(ok for ok, _ in met):
                path, sha = (str(data), data_sha) if on_data else (str(model), model_sha)
                said = "; ".join(why for _, why in met)
                findings.append(_finding(ruleset, rule_id, path, sha, f"{r.evidence.summary}; {said}"))
    return _with(report, results, findings)


def _conditions(metrics: dict, thresholds: dict) -> list[tuple[str, bool, list[tuple[bool, str]]]]:
    """Per rule: whether its finding goes on the dataset, and each of its conditions the metrics can decide
    (met or not, and the threshold as said in the finding)."""
    by_rule: dict[str, tuple[bool, list[tuple[bool, str]]]] = {}
    for metric, key, below, rule_id, on_data in _THRESHOLDS:
        if metric in metrics:
            limit, value = float(thresholds[key]), float(metrics[metric])
            met = value < limit if below else value > limit
            by_rule.setdefault(rule_id, (on_data, []))[1].append((met, f"{key} is {limit:g}"))
    return [(rule_id, on_data, met) for rule_id, (on_data, met) in by_rule.items()]


def refusal(report: ScanReport, files: dict[str, str], refuse_at: Severity) -> str | None:
    """Why these files (path → sha256) may not be loaded, or None: each must be an artifact of the report,
    with no finding at or above `refuse_at` and no scan error in it or its members."""
    for path, sha in files.items():
        artifact = next((a for a in report.artifacts if a.sha256 == sha and a.member is None), None)
        if artifact is None:
            return f"{path} (sha256 {sha[:12]}…) is not in the scan report: it was never statically scanned"
        bad = [
            f
            for f in report.findings
            if f.severity >= refuse_at and (f.artifact_sha256 == sha or f.location.path == artifact.path)
        ]
        if bad:
            worst = max(bad, key=lambda f: f.severity)
            reason = f"{path} failed its static scan: {worst.rule_id} ({worst.severity.label}) {worst.message}"
            if all(f.rule_id == "MLSEC-PICKLE-005" for f in bad):  # only classes nobody vouched for yet
                reason += (
                    "; if you trust every class it imports (a torch module saved whole), allow them in a --rules "
                    "directory (pickle_safe_globals or pickle_safe_patterns) and evaluate again"
                )
            return reason
        if any(e.path == artifact.path for e in report.errors):
            return f"{path} was not completely scanned (a scan error): an incomplete scan does not clear it"
    return None


def _result(raw: dict, answer: dict, model_sha: str, data_sha: str) -> EvaluationResult:
    facts = {**raw.get("facts", {}), **{f"version_{k}": v for k, v in answer.get("versions", {}).items()}}
    facts["network_isolated"] = bool(answer.get("network_isolated", False))
    return EvaluationResult(
        name=raw["name"],
        status=raw["status"],
        artifact_sha256=model_sha,
        dataset_sha256=data_sha,
        parameters={**raw["parameters"], "device": answer.get("device", "cpu")},  # where the model ran
        metrics=raw["metrics"],
        evidence=Evidence(raw["summary"], facts, _SOURCE),
        seconds=raw["seconds"],
    )


def _finding(ruleset: RuleSet, rule_id: str, path: str, sha: str, summary: str) -> Finding:
    rule = ruleset.rule(rule_id)
    return Finding(
        rule_id=rule.id,
        severity=rule.severity,
        message=f"{rule.title}: {summary}",
        location=Location(path=path),
        evidence=Evidence(summary=summary, facts={}, source=_SOURCE),
        artifact_sha256=sha,
    )


def _with(report: ScanReport, results: list[EvaluationResult], findings: list[Finding]) -> ScanReport:
    merged = sorted([*report.findings, *findings], key=Finding.sort_key)
    return replace(report, evaluations=(*report.evaluations, *results), findings=tuple(merged))


def __getattr__(name: str) -> Any:
    if name == "SandboxLimits":  # mlsec.evaluations.SandboxLimits, without loading the sandbox for every importer
        from mlsec.evaluations.sandbox import SandboxLimits  # noqa: PLC0415

        return SandboxLimits
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_EPSILONS",
    "DEFAULT_SAMPLE",
    "DEFAULT_SUITES",
    "DEVICES",
    "EVALUABLE_FORMATS",
    "HEADLINE_METRICS",
    "SUITES",
    "SandboxLimits",
    "evaluate",
    "refusal",
    "suites_named",
]

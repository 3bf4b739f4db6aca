"""`mlsec.yaml`: the artifacts of a repository (globs, by group) and its pipeline's stages.

    version: 1
    artifacts:                 # group name -> globs, relative to the file
      models: ["models/**/*.onnx"]
      datasets: ["data/*.csv"]
    stages:                    # run in the order written; each names groups defined above
      register:
        scan: [models, datasets]
        sign: [models]                       # needs signing.key
        gate: {stage: register}
      serve:
        scan: [models]
        sign: [models]
        gate: {stage: serve, policies: [policies/], data: [policy-data/]}
    signing: {key: keys/mlsec.key, public_key: keys/mlsec.pub}
    allowed_signers: [{key: keys/mlsec.pub}]   # or {identity: "*@example.com", issuer: https://...}
    ledger: .mlsec/ledger.sqlite3              # or postgresql://user@host/db (password in PGPASSWORD)
    outputs: {dir: mlsec-out, formats: [json, sarif, html]}

Every problem is reported at once, each with its line number (`mlsec.yaml:7: ...`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlsec.errors import InputError
from mlsec.evaluations import DEFAULT_EPSILONS, DEFAULT_SAMPLE, DEFAULT_SUITES, suites_named

GATE_STAGES = ("pr", "train", "register", "serve")
OUTPUT_FORMATS = ("json", "sarif", "html", "mlbom", "table")
_TOP = {"version", "artifacts", "stages", "signing", "allowed_signers", "ledger", "outputs"}
_STAGE = {"scan", "sign", "gate", "evaluate"}
_GATE = {"stage", "policies", "data", "no_bundled_policies"}


class ConfigError(InputError):
    """mlsec.yaml is invalid; the message lists every problem with its line."""


@dataclass(frozen=True, slots=True)
class Gate:
    stage: str
    policies: tuple[Path, ...] = ()
    data: tuple[Path, ...] = ()
    bundled: bool = True


@dataclass(frozen=True, slots=True)
class Evaluate:
    """A stage's evaluations: every model of `models` on every dataset of `data` (mlsec evaluate's options)."""

    models: str
    data: str
    label_column: str | None = None
    suites: tuple[str, ...] = DEFAULT_SUITES
    eps: tuple[float, ...] = DEFAULT_EPSILONS
    sample: int = DEFAULT_SAMPLE
    input_shape: tuple[int, ...] | None = None
    factory: str | None = None
    trigger: str | None = None


_EVALUATE = {"models", "data", "label_column", "suites", "eps", "sample", "input_shape", "factory", "trigger"}


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    scan: tuple[str, ...]
    sign: tuple[str, ...] = ()
    gate: Gate | None = None
    evaluate: Evaluate | None = None


@dataclass(frozen=True, slots=True)
class Pipeline:
    root: Path
    artifacts: dict[str, tuple[str, ...]]
    stages: dict[str, Stage]
    signing_key: Path | None = None
    public_key: Path | None = None
    allowed_signers: tuple[dict[str, str], ...] = ()
    ledger: str | None = None  # a SQLite file (relative to mlsec.yaml) or a postgresql:// URL
    out_dir: Path = Path("mlsec-out")
    formats: tuple[str, ...] = ("json", "sarif", "html")
    problems: list[str] = field(default_factory=list)

    def paths(self, groups: tuple[str, ...]) -> list[str]:
        """The files the groups' globs match, sorted, each once; a glob that matches nothing is an error."""
        found: dict[str, None] = {}
        missing = []
        for group in groups:
            for pattern in self.artifacts[group]:
                hits = sorted(str(p) for p in self.root.glob(pattern) if p.is_file())
                if not hits:
                    missing.append(f"{group}: {pattern}")
                found.update(dict.fromkeys(hits))
        if missing:
            raise ConfigError(f"globs that match no file: {'; '.join(missing)}", path=str(self.root / "mlsec.yaml"))
        return list(found)


def load(path: Path) -> Pipeline:
    """Parse and validate `path`; ConfigError lists every problem with its line."""
    import yaml  # noqa: PLC0415

    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path.name}:{mark.line + 1}: " if mark else ""
        raise ConfigError(f"{where}not valid YAML: {getattr(exc, 'problem', exc)}", path=str(path)) from None
    lines = _lines(node)
    problems: list[str] = []

    def bad(keys: tuple[Any, ...], message: str) -> None:
        line = next((lines[keys[:i]] for i in range(len(keys), -1, -1) if keys[:i] in lines), 1)
        problems.append(f"{path.name}:{line}: {'.'.join(map(str, keys)) or '(top)'}: {message}")

    if not isinstance(doc, dict):
        raise ConfigError(f"{path.name}:1: expected a mapping with artifacts and stages", path=str(path))
    for key in sorted(set(doc) - _TOP):
        bad((key,), f"unknown key (expected: {', '.join(sorted(_TOP))})")
    if doc.get("version", 1) != 1:
        bad(("version",), "only version 1 exists")
    artifacts = _artifacts(doc.get("artifacts"), bad)
    stages = _stages(doc.get("stages"), artifacts, path.parent, bad)
    signing = doc.get("signing") or {}
    if not isinstance(signing, dict):
        bad(("signing",), "expected a mapping with key (and public_key)")
        signing = {}
    if any(s.sign for s in stages.values()) and not signing.get("key"):
        bad(("signing",), "stages sign artifacts, so signing.key (a private key from `mlsec keygen`) is required")
    for key in ("key", "public_key"):
        if signing.get(key) and not (path.parent / str(signing[key])).is_file():
            bad(("signing", key), f"{signing[key]!r} does not exist (make a pair with `mlsec keygen --private ... --public ...`)")
    signers = doc.get("allowed_signers") or []
    if not isinstance(signers, list) or not all(
        isinstance(s, dict) and ({"key"} <= set(s) or {"identity", "issuer"} <= set(s)) for s in signers
    ):
        bad(("allowed_signers",), "expected a list of {key: PUBLIC_KEY} or {identity: GLOB, issuer: URL}")
        signers = []
    for signer in signers:
        if "key" in signer and not (path.parent / str(signer["key"])).is_file():
            bad(("allowed_signers",), f"public key {signer['key']!r} does not exist")
    outputs = doc.get("outputs") or {}
    formats = tuple(outputs.get("formats", ("json", "sarif", "html"))) if isinstance(outputs, dict) else ()
    for fmt in formats:
        if fmt not in OUTPUT_FORMATS:
            bad(("outputs", "formats"), f"unknown format {fmt!r} (expected: {', '.join(OUTPUT_FORMATS)})")
    if problems:
        raise ConfigError("invalid pipeline:\n  " + "\n  ".join(problems), path=str(path))
    root = path.parent
    return Pipeline(
        root=root,
        artifacts=artifacts,
        stages=stages,
        signing_key=root / signing["key"] if signing.get("key") else None,
        public_key=root / signing["public_key"] if signing.get("public_key") else None,
        allowed_signers=tuple({str(k): str(v) for k, v in s.items()} for s in signers),
        ledger=_ledger(root, doc.get("ledger")),
        out_dir=root / str((outputs or {}).get("dir", "mlsec-out")),
        formats=formats,
    )


def _ledger(root: Path, value: Any) -> str | None:
    if not value:
        return None
    text = str(value)
    return text if text.startswith(("postgresql://", "postgres://")) else str(root / text)


def _artifacts(raw: Any, bad: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict) or not raw:
        bad(("artifacts",), "expected a mapping of group name -> list of globs")
        return {}
    out = {}
    for group, globs in raw.items():
        globs = [globs] if isinstance(globs, str) else globs
        if not isinstance(globs, list) or not globs or not all(isinstance(g, str) for g in globs):
            bad(("artifacts", group), "expected a glob or a list of globs")
            continue
        for g in globs:
            if g.startswith("/") or ".." in Path(g).parts:
                bad(("artifacts", group), f"glob {g!r} must stay inside the repository")
        out[str(group)] = tuple(globs)
    return out


def _stages(raw: Any, artifacts: dict[str, tuple[str, ...]], root: Path, bad: Any) -> dict[str, Stage]:
    if not isinstance(raw, dict) or not raw:
        bad(("stages",), "expected a mapping of stage name -> what it scans, signs and gates")
        return {}
    stages = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            bad(("stages", name), "expected a mapping with scan (and sign, gate)")
            continue
        for key in sorted(set(spec) - _STAGE):
            bad(("stages", name, key), f"unknown key (expected: {', '.join(sorted(_STAGE))})")
        groups = {}
        for key in ("scan", "sign"):
            value = spec.get(key, [] if key == "sign" else None)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                bad(("stages", name, key), "expected a list of artifact groups")
                value = []
            for group in value:
                if group not in artifacts:
                    bad(("stages", name, key), f"unknown artifact group {group!r} (defined: {', '.join(artifacts) or 'none'})")
            groups[key] = tuple(value)
        for group in groups["sign"]:
            if group not in groups["scan"]:
                bad(("stages", name, "sign"), f"group {group!r} is signed but not scanned in this stage")
        gate = _gate(spec.get("gate"), ("stages", name, "gate"), root, bad) if "gate" in spec else None
        keys = ("stages", name, "evaluate")
        evaluate = _evaluate(spec["evaluate"], keys, groups["scan"], bad) if "evaluate" in spec else None
        stages[str(name)] = Stage(str(name), groups["scan"], groups["sign"], gate, evaluate)
    return stages


def _evaluate(raw: Any, keys: tuple[Any, ...], scanned: tuple[str, ...], bad: Any) -> Evaluate | None:
    """`evaluate: {models: GROUP, data: GROUP, label_column, suites, eps, sample, input_shape, factory, trigger}`;
    both groups must be scanned in the same stage (an evaluation runs only on what its scan cleared)."""
    if not isinstance(raw, dict):
        bad(keys, "expected a mapping with models and data (artifact groups), and label_column, suites, eps...")
        return None
    for key in sorted(set(raw) - _EVALUATE):
        bad((*keys, key), f"unknown key (expected: {', '.join(sorted(_EVALUATE))})")
    ok = True
    for key in ("models", "data"):
        if raw.get(key) not in scanned:
            bad((*keys, key), f"expected an artifact group this stage scans ({', '.join(scanned) or 'none'})")
            ok = False
    suites = raw.get("suites", list(DEFAULT_SUITES))
    try:
        if not isinstance(suites, list) or not suites:
            raise ValueError("expected a non-empty list of suites")
        suites = suites_named(suites)
    except ValueError as exc:
        bad((*keys, "suites"), str(exc))
        ok = False
    eps = raw.get("eps", list(DEFAULT_EPSILONS))
    if not isinstance(eps, list) or not all(isinstance(e, (int, float)) and e > 0 for e in eps):
        bad((*keys, "eps"), "expected a list of positive numbers")
        ok = False
    shape = raw.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and all(isinstance(d, int) and d > 0 for d in shape)):
        bad((*keys, "input_shape"), "expected a list of positive integers (for example [1, 8, 8])")
        ok = False
    sample = raw.get("sample", DEFAULT_SAMPLE)
    if not isinstance(sample, int) or isinstance(sample, bool) or sample < 1:
        bad((*keys, "sample"), "expected a positive integer")
        ok = False
    if not ok:
        return None
    return Evaluate(
        models=raw["models"], data=raw["data"], label_column=raw.get("label_column"), suites=tuple(suites),
        eps=tuple(float(e) for e in eps), sample=sample,
        input_shape=tuple(shape) if shape else None, factory=raw.get("factory"), trigger=raw.get("trigger"),
    )  # fmt: skip


def _gate(raw: Any, keys: tuple[str, ...], root: Path, bad: Any) -> Gate | None:
    if not isinstance(raw, dict):
        bad(keys, "expected a mapping with stage (and policies, data)")
        return None
    for key in sorted(set(raw) - _GATE):
        bad((*keys, key), f"unknown key (expected: {', '.join(sorted(_GATE))})")
    stage = raw.get("stage")
    if stage not in GATE_STAGES:
        bad((*keys, "stage"), f"expected one of {', '.join(GATE_STAGES)}")
    dirs = {}
    for key in ("policies", "data"):
        values = raw.get(key, [])
        if not isinstance(values, list):
            bad((*keys, key), "expected a list of directories")
            values = []
        for v in values:
            if not (root / v).exists():
                bad((*keys, key), f"{v!r} does not exist")
        dirs[key] = tuple(root / v for v in values)
    return Gate(str(stage), dirs["policies"], dirs["data"], not raw.get("no_bundled_policies", False))


def _lines(node: Any, keys: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Line (1-based) of every mapping key, by its path of keys."""
    import yaml  # noqa: PLC0415

    out: dict[tuple[Any, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*keys, key_node.value)
            out[path] = key_node.start_mark.line + 1
            out.update(_lines(value_node, path))
    return out

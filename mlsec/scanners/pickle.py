"""Pickle, joblib and dill files: every imported global judged against rules/pickle.toml.

The symbolic machine in `_pickle_vm` follows the stream the way the unpickler would; this module
decides, per global, by the allowlist (known-safe globals per framework) after checking the
deny categories, and asks fickling for a second opinion and for decompiled evidence.
"""

from __future__ import annotations

import _compat_pickle
import ast
import contextlib
import hashlib
import io
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, ClassVar

from mlsec.artifacts import Blob
from mlsec.errors import RuleError
from mlsec.findings import Finding, Severity
from mlsec.rules import RuleSet
from mlsec.scanners._pickle_vm import PickleAnalysis, PickleMachine
from mlsec.scanners.base import ScanContext

log = logging.getLogger(__name__)

# Deny categories in the order they are checked; each list belongs to the rule whose `lists` names it.
_CATEGORIES = ("pickle_code_execution", "pickle_filesystem_network", "pickle_import_machinery", "pickle_reflection")
_SECOND_OPINION_MAX_BYTES = 2 << 20
_SOURCE = "mlsec pickle analyser"
_DECOMPILED_CHARS = 1500


@dataclass(frozen=True, slots=True)
class _Policy:
    categories: tuple[tuple[Mapping[str, Sequence[str]], str], ...]
    dangerous_names: frozenset[str]
    dangerous_rule: str
    safe: Mapping[str, frozenset[str]]
    patterns: tuple[tuple[str, re.Pattern[str]], ...]
    exceptions: Mapping[str, frozenset[str]]
    verdicts: dict[tuple[str, str], tuple[str | None, str]] = field(default_factory=dict)  # classify's, remembered

    def classify(self, module: str, name: str) -> tuple[str | None, str]:
        """(rule id or None when allowed, why) for one global."""
        verdict = self.verdicts.get((module, name))
        if verdict is None:
            verdict = self._classify(module, name)
            if len(self.verdicts) < 65536:  # a registry's models import the same few hundred globals
                self.verdicts[module, name] = verdict
        return verdict

    def _classify(self, module: str, name: str) -> tuple[str | None, str]:
        full_module, _, last = f"{module}.{name}".rpartition(".")
        if name in self.exceptions.get(module, ()) and last not in self.dangerous_names:
            return None, "an inert name in a denied module (pickle_deny_exceptions)"
        for table, rule_id in self.categories:
            for mod, attr in ((module, name), (full_module, last)):
                if _listed(table, mod, attr):
                    return rule_id, f"listed in {rule_id} deny list"
        if last in self.dangerous_names:
            return self.dangerous_rule, f"name {last!r} is a known dangerous callable"
        if name in self.safe.get(module, ()):
            return None, "allowlisted"
        if "." in name:
            return "MLSEC-PICKLE-008", "dotted name walks attributes"
        for prefix, pattern in self.patterns:
            if (module == prefix or module.startswith(prefix + ".")) and pattern.match(name):
                return None, "allowlisted by pattern"
        return "MLSEC-PICKLE-005", "not on the allowlist"


def _listed(table: Mapping[str, Sequence[str]], module: str, name: str) -> bool:
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        names = table.get(".".join(parts[:i]))
        if names is not None and ("*" in names or name in names):
            return True
    return False


_POLICIES: dict[str, _Policy] = {}


def _policy(ruleset: RuleSet) -> _Policy:
    cached = _POLICIES.get(ruleset.digest)
    if cached is None:
        cached = _POLICIES[ruleset.digest] = _Policy(
            categories=tuple((ruleset.list(lst), _rule_for_list(ruleset, lst)) for lst in _CATEGORIES),
            dangerous_names=frozenset(ruleset.list("pickle_dangerous_names")["names"]),
            dangerous_rule=_rule_for_list(ruleset, "pickle_dangerous_names"),
            safe={m: frozenset(n) for m, n in ruleset.list("pickle_safe_globals").items()},
            patterns=tuple((p["module"], re.compile(p["name"])) for p in ruleset.list("pickle_safe_patterns")),
            exceptions={m: frozenset(n) - {"*"} for m, n in ruleset.list("pickle_deny_exceptions").items()},
        )
    return cached


def denied_global(ruleset: RuleSet, module: str, name: str) -> str | None:
    """Why `module.name` is on a pickle deny list (code execution, files, imports, reflection), else None.

    Other formats that name Python callables (Keras configs) judge them by the same lists.
    """
    policy = _policy(ruleset)
    rule_id, why = policy.classify(module, name)
    denied = {rule for _, rule in policy.categories} | {policy.dangerous_rule}
    if rule_id not in denied:
        return None
    return why if rule_id in why else f"{why} ({rule_id})"


def _rule_for_list(ruleset: RuleSet, list_name: str) -> str:
    owners = [r.id for r in ruleset.rules.values() if list_name in r.lists]
    if len(owners) != 1:
        raise RuleError(f"list {list_name!r} must belong to exactly one rule, found {owners or 'none'}")
    return owners[0]


def _py2_names(module: str, name: str) -> tuple[str, str]:
    """The name the unpickler really imports for protocols 0-2 (fix_imports, as pickle does)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def analyze_stream(
    stream: BinaryIO, blob: Blob, ctx: ScanContext, *, base_offset: int = 0, member: str | None = None
) -> Iterator[Finding]:
    """Findings for the pickle(s) in `stream`; used by this scanner and by pytorch/numpy scanners."""
    findings, _ = analyze(stream, blob, ctx, base_offset=base_offset, member=member)
    yield from findings


def analyze(
    stream: BinaryIO, blob: Blob, ctx: ScanContext, *, base_offset: int = 0, member: str | None = None
) -> tuple[list[Finding], PickleAnalysis]:
    """The findings and the raw analysis of the pickle(s) in `stream`."""
    analysis = PickleMachine(ctx.limits).run(stream, base_offset)
    findings = list(_judge(analysis, blob, ctx, member))
    if analysis.error is not None:
        findings.append(
            ctx.finding(
                "MLSEC-PICKLE-010",
                blob,
                f"stops being a valid pickle at offset {analysis.error_offset}: {analysis.error}",
                facts={"error": analysis.error, "opcodes_read": analysis.opcodes, "globals_seen": len(analysis.imports)},
                source=_SOURCE,
                offset=analysis.error_offset,
                member=member,
            )
        )
    log.debug("%s: %d opcodes, %d pickles, %d globals", blob.display, analysis.opcodes, analysis.pickles, len(analysis.imports))
    return findings, analysis


def _judge(analysis: PickleAnalysis, blob: Blob, ctx: ScanContext, member: str | None) -> Iterator[Finding]:
    policy = _policy(ctx.ruleset)
    seen: dict[tuple[str, str], list[Any]] = {}
    for event in analysis.imports:
        key = (event.module, event.name)
        if key in seen:
            seen[key][1] += 1
            continue
        # Protocols 0-2 import the mapped name (fix_imports); the raw name still counts when denied.
        mapped = _py2_names(*key) if analysis.protocol < 3 else key
        rule_id, why = policy.classify(*mapped)
        resolved = f"{mapped[0]}.{mapped[1]}"
        if mapped != key:
            raw_rule, raw_why = policy.classify(*key)
            if raw_rule not in (None, "MLSEC-PICKLE-005") and _rank(ctx.ruleset, raw_rule) > _rank(ctx.ruleset, rule_id):
                rule_id, why, resolved = raw_rule, raw_why, f"{key[0]}.{key[1]}"
        seen[key] = [event, 1, rule_id, why, resolved]
    for (module, name), (event, count, rule_id, why, resolved) in seen.items():
        if rule_id is None:
            continue
        shown = f"{module}.{name}"
        alias = f" (resolves to {resolved})" if resolved != shown else ""
        yield ctx.finding(
            rule_id,
            blob,
            f"imports {shown}{alias} via {event.opcode} at offset {event.offset}",
            facts={
                "global": shown,
                "resolved_global": resolved,
                "opcode": event.opcode,
                "occurrences": count,
                "reason": why,
                "pickle_protocol": analysis.protocol,
                "pickle_index": event.pickle_index,
            },
            source=_SOURCE,
            offset=event.offset,
            member=member,
        )
    for offset, what in analysis.computed_globals:
        yield ctx.finding(
            "MLSEC-PICKLE-006",
            blob,
            f"STACK_GLOBAL at offset {offset} imports {what}",
            facts={"operands": what},
            source=_SOURCE,
            offset=offset,
            member=member,
        )
    for offset, code in analysis.extensions:
        yield ctx.finding(
            "MLSEC-PICKLE-007",
            blob,
            f"extension code {code} at offset {offset}",
            facts={"extension_code": code},
            source=_SOURCE,
            offset=offset,
            member=member,
        )


def _rank(ruleset: RuleSet, rule_id: str | None) -> int:
    return -1 if rule_id is None else int(ruleset.rule(rule_id).severity)


def second_opinion(data: bytes, blob: Blob, ctx: ScanContext, own: Sequence[Finding]) -> list[Finding]:
    """fickling's view: decompiled code as evidence on blocking findings, a finding where it disagrees."""
    if len(data) > _SECOND_OPINION_MAX_BYTES:
        return list(own)
    opinion = _fickling(data, blob.display)
    if opinion is None:
        return list(own)
    out = [
        replace(f, evidence=replace(f.evidence, facts={**f.evidence.facts, "decompiled": opinion.decompiled}))
        if f.severity >= Severity.HIGH
        else f
        for f in own
    ]
    if not any(f.severity >= Severity.HIGH for f in own) and opinion.malicious:
        out.append(
            ctx.finding(
                "MLSEC-PICKLE-009",
                blob,
                f"fickling says {opinion.malicious}: {opinion.detail[:300]}",
                facts={"fickling_severity": opinion.malicious, "decompiled": opinion.decompiled},
                source="fickling 0.1",
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class _Opinion:
    decompiled: str  # cut to _DECOMPILED_CHARS
    malicious: str | None  # fickling's severity when it is LIKELY_OVERTLY_MALICIOUS or worse
    detail: str  # the results that say so


# fickling's opinion of each pickle's bytes, remembered per process: a registry's checkpoints of one architecture
# share their data.pkl byte for byte (7 ms of fickling each, 5% of scanning a 128 MiB checkpoint). By sha256.
_OPINIONS: dict[bytes, _Opinion | None] = {}
_MAX_OPINIONS = 256


def _fickling(data: bytes, display: str) -> _Opinion | None:
    """What fickling says of `data`; None when it cannot read it (logged: it is only a second opinion)."""
    key = hashlib.sha256(data).digest()
    if key in _OPINIONS:
        return _OPINIONS[key]
    try:
        from fickling.analysis import Severity as FSeverity  # noqa: PLC0415 - heavy, lazy
        from fickling.analysis import check_safety  # noqa: PLC0415
        from fickling.fickle import Pickled  # noqa: PLC0415

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            pickled = Pickled.load(data)
            results = check_safety(pickled)
            decompiled = ast.unparse(pickled.ast)
    except Exception as exc:  # noqa: BLE001 - fickling is a second opinion; its failures are logged only
        log.debug("%s: fickling could not analyse: %s", display, exc)
        opinion = None
    else:
        if len(decompiled) > _DECOMPILED_CHARS:
            decompiled = decompiled[:_DECOMPILED_CHARS] + "\n..."
        bad = FSeverity.LIKELY_OVERTLY_MALICIOUS
        opinion = _Opinion(
            decompiled,
            results.severity.name if results.severity >= bad else None,
            "; ".join(str(r) for r in results.results if r.severity >= bad),
        )
    if len(_OPINIONS) >= _MAX_OPINIONS:
        _OPINIONS.clear()
    _OPINIONS[key] = opinion
    return opinion


class PickleScanner:
    name: ClassVar[str] = "pickle"
    formats: ClassVar[frozenset[str]] = frozenset({"pickle"})

    def scan(self, blob: Blob, ctx: ScanContext) -> Iterator[Finding]:
        with blob.open() as stream:
            own, analysis = analyze(stream, blob, ctx)
        # fickling reads one plain pickle: joblib's inline arrays and concatenated pickles confuse it.
        if blob.size > _SECOND_OPINION_MAX_BYTES or analysis.joblib_arrays or analysis.pickles > 1:
            yield from own
            return
        data = blob.data if blob.data is not None else blob.head(_SECOND_OPINION_MAX_BYTES)
        yield from second_opinion(data, blob, ctx, own)

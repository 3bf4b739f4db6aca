"""gate(): evaluate every deny/violation/warn under data.mlsec.gates and turn the results into a Decision.

Conventions are conftest's: rules named deny, violation or warn (optionally `_suffix`), results as
strings or objects with `msg`; a package's `exception` set names the rules it waives. Waivers are
data too (data.mlsec.waivers: rule id, artifact sha256, reason, expiry): applied here, the same for
every engine, and listed in the Decision, so nothing is waived silently. An expired waiver stops
working and says so in the warnings. An undefined or failing evaluation raises: never an allow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from mlsec.decision import Decision, Reason
from mlsec.policy_engines.base import PolicyEngine, PolicyError

QUERY = "data.mlsec.gates"
_RESULT_RULE = re.compile(r"^(deny|violation|warn)(_\w+)?$")


def gate(
    gate_input: Mapping[str, Any],
    engine: PolicyEngine,
    *,
    waivers: Sequence[Mapping[str, Any]] = (),
    gate_ids: Mapping[str, str] | None = None,
) -> Decision:
    """The Decision for `gate_input`. `gate_ids` maps package paths to their METADATA custom.id."""
    for i, waiver in enumerate(waivers):  # a malformed waiver fails now, not on the day a deny first meets it
        missing = [k for k in ("rule_id", "reason", "expires") if not waiver.get(k)]
        if missing:
            raise PolicyError(f"waiver #{i + 1} lacks {', '.join(missing)}: every waiver needs a rule id, a reason and an expiry")
    value = engine.evaluate(QUERY, gate_input)
    if not isinstance(value, dict):
        raise PolicyError(f"{QUERY} is {type(value).__name__}, not a tree of packages")
    denies: list[Reason] = []
    warnings: list[Reason] = []
    waived: list[Reason] = []
    for package, rules in _packages(value, QUERY.removeprefix("data.")):
        exempt = _exceptions(rules.get("exception"))
        for rule, results in rules.items():
            if not _RESULT_RULE.match(rule):
                continue
            for result in _as_list(results, package, rule):
                reason = _reason(result, package, rule, (gate_ids or {}).get(package, package))
                if _exempted(rule, exempt):
                    waived.append(_with_waiver(reason, f"exception in package {package}"))
                elif rule.startswith("warn"):
                    warnings.append(reason)
                else:
                    denies.append(reason)
    today = str(gate_input.get("environment", {}).get("date", ""))
    kept: list[Reason] = []
    for reason in denies:
        verdict = _waiver_for(reason, waivers, today)
        if verdict is None:
            kept.append(reason)
        elif verdict[0]:
            waived.append(_with_waiver(reason, verdict[1]))
        else:
            kept.append(reason)
            warnings.append(Reason("mlsec-waivers", verdict[1], reason.rule_id, reason.artifact, "mlsec.waivers", "warn"))
    return Decision(
        allowed=not kept,
        stage=str(gate_input.get("stage", "")),
        denies=tuple(sorted(kept, key=_order)),
        warnings=tuple(sorted(warnings, key=_order)),
        waived=tuple(sorted(waived, key=_order)),
        engine=engine.name,
        policies_digest=engine.policies_digest,
    )


def _packages(tree: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(package path, its rules) for every package in the tree of values under data.mlsec.gates."""
    if any(_RESULT_RULE.match(k) or k == "exception" for k in tree):
        yield path, tree
    for key, value in tree.items():
        if isinstance(value, dict) and not _RESULT_RULE.match(key):
            yield from _packages(value, f"{path}.{key}")


def _as_list(results: Any, package: str, rule: str) -> list[Any]:
    if isinstance(results, list):
        return results
    if isinstance(results, bool):  # `deny if {...}` (a boolean rule) denies with no message
        return [f"{rule} in {package}"] if results else []
    raise PolicyError(f"data.{package}.{rule} must be a set of results, got {type(results).__name__}")


def _reason(result: Any, package: str, rule: str, gate_id: str) -> Reason:
    if isinstance(result, dict):
        message = result.get("msg", result.get("message"))
        return Reason(
            gate_id=str(result.get("gate_id") or gate_id),
            message=str(message) if message is not None else json.dumps(result, sort_keys=True),
            rule_id=_opt(result.get("rule_id")),
            artifact=_opt(result.get("artifact")),
            package=package,
            rule=rule,
        )
    return Reason(gate_id=gate_id, message=result if isinstance(result, str) else json.dumps(result), package=package, rule=rule)


def _opt(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _exceptions(value: Any) -> set[str]:
    """conftest's `exception contains rules`: each item a rule name (or a list of them)."""
    names: set[str] = set()
    for item in value if isinstance(value, list) else []:
        names.update(item if isinstance(item, list) else [item])
    return {str(n) for n in names}


def _exempted(rule: str, names: set[str]) -> bool:
    suffix = rule.split("_", 1)[1] if "_" in rule else ""
    return rule in names or (suffix != "" and suffix in names)


def _waiver_for(reason: Reason, waivers: Sequence[Mapping[str, Any]], today: str) -> tuple[bool, str] | None:
    """(applies, description) for a live waiver matching this deny, else the expired one, else None."""
    expired: tuple[bool, str] | None = None
    for waiver in waivers:
        if waiver["rule_id"] != reason.rule_id:
            continue
        artifact = waiver.get("artifact_sha256")
        if artifact and artifact != reason.artifact:
            continue
        if waiver.get("gate_id") and waiver["gate_id"] != reason.gate_id:
            continue
        expires = str(waiver["expires"])
        scope = f"{waiver['rule_id']} on {artifact[:19] + '…' if artifact else 'every artifact'}"
        if today and expires < today:
            expired = expired or (False, f"waiver for {scope} expired on {expires} and no longer applies ({waiver['reason']})")
            continue
        return True, f"waiver for {scope} until {expires}: {waiver['reason']}"
    return expired


def _with_waiver(reason: Reason, waiver: str) -> Reason:
    return Reason(reason.gate_id, reason.message, reason.rule_id, reason.artifact, reason.package, reason.rule, waiver)


def _order(reason: Reason) -> tuple[str, str, str, str]:
    return (reason.gate_id, reason.rule_id or "", reason.artifact or "", reason.message)

"""Rego in process through regorus (DECISIONS.md): every package is evaluated at load, so a broken
policy fails there with file:line:col, never at decision time; undefined is an error, never allow."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from mlsec.policy_engines.base import PolicyError, Undefined
from mlsec.policy_engines.sources import RegoFile, data_documents, digest, rego_files

_LOCATION = re.compile(r"-->\s*(?P<file>.+?):(?P<row>\d+):(?P<col>\d+)")
_MESSAGE = re.compile(r"^error:\s*(?P<msg>.+)$", re.MULTILINE)


def regorus_error(exc: BaseException) -> tuple[str, dict[str, Any] | None]:
    """regorus's message without its Rust backtrace: ("file:row:col: message\\n<snippet>", location)."""
    text = str(exc).split("\nStack backtrace:")[0].strip("\n")
    where, what = _LOCATION.search(text), _MESSAGE.search(text)
    message = what.group("msg").strip() if what else text.strip().splitlines()[-1] if text.strip() else type(exc).__name__
    if where is None:
        return message, None
    location = {"file": where.group("file"), "row": int(where.group("row")), "col": int(where.group("col"))}
    snippet = "\n".join(line for line in text.splitlines() if "|" in line)
    return f"{location['file']}:{location['row']}:{location['col']}: {message}\n{snippet}".rstrip(), location


_GRAVEYARD: list[tuple[int, Any]] = []  # (owner thread, native engine) released away from its owner


class _Native:
    """A regorus engine and the thread that made it. regorus engines must be dropped by their own
    thread (PyO3 "unsendable"); tracebacks and garbage collection can release ours on another, so
    such a release parks the engine here and its own thread drops it the next time it passes by."""

    def __init__(self) -> None:
        import regorus  # noqa: PLC0415 - native, lazy

        _reap()
        self.thread = threading.get_ident()
        self.engine = regorus.Engine()

    def __del__(self) -> None:
        if threading.get_ident() != self.thread:
            _GRAVEYARD.append((self.thread, self.engine))


def _reap() -> None:
    me = threading.get_ident()
    _GRAVEYARD[:] = [(owner, engine) for owner, engine in _GRAVEYARD if owner != me]


class EmbeddedEngine:
    """regorus behind the PolicyEngine protocol. One engine object is used under a lock (it is single-threaded)."""

    def __init__(self, files: Sequence[RegoFile], data: dict[str, Any], *, coverage: bool = False) -> None:
        self.files = list(files)
        self.data = data
        self.policies_digest = digest(self.files, data)
        self.name = f"embedded regorus {metadata.version('gordon-to-regorus')}"
        self._lock = threading.Lock()
        self._native = _Native()
        self._engine = self._native.engine
        self._load(coverage)

    def _load(self, coverage: bool) -> None:
        self._engine.set_enable_coverage(coverage)
        for f in self.files:
            try:
                self._engine.add_policy(f.path, f.text)
            except BaseException as exc:  # noqa: BLE001 - regorus raises RuntimeError, or BaseException across threads
                message, location = regorus_error(exc)
                raise PolicyError(f"policy does not compile: {message}", location=location) from None
        self._engine.add_data_json(json.dumps(self.data))
        self.packages: list[str] = list(self._engine.get_packages())
        for package in self.packages:  # regorus reports a rule's errors only when the rule is evaluated
            try:
                self.evaluate(package, {}, undefined_ok=True)
            except PolicyError as exc:
                raise PolicyError(f"policy fails at load: {exc.message.split(': ', 1)[-1]}", location=exc.location) from None
        if coverage:
            self._engine.clear_coverage_data()

    @classmethod
    def from_dirs(
        cls, policy_dirs: Sequence[Path], data_dirs: Sequence[Path] = (), *, tests: bool = False, coverage: bool = False
    ) -> EmbeddedEngine:
        return cls(rego_files(policy_dirs, tests=tests), data_documents(data_dirs), coverage=coverage)

    def evaluate(self, query: str, input_doc: Any, *, undefined_ok: bool = False) -> Any:
        with self._lock:
            try:
                self._engine.set_input_json(json.dumps(input_doc))
                raw = self._engine.eval_query_as_json(query)
            except BaseException as exc:  # noqa: BLE001
                message, location = regorus_error(exc)
                raise PolicyError(f"evaluating {query}: {message}", location=location) from None
        results = json.loads(raw).get("result", [])
        if not results:
            if undefined_ok:
                return None
            raise Undefined(f"{query} is undefined: no loaded policy defines it")
        return results[0]["expressions"][0]["value"]

    def eval_rule(self, rule_path: str) -> Any:
        """A rule's value with the current input, or None when undefined (for `policy test`)."""
        with self._lock:
            try:
                raw = self._engine.eval_rule_as_json(rule_path)
            except BaseException as exc:  # noqa: BLE001
                message, location = regorus_error(exc)
                raise PolicyError(f"evaluating {rule_path}: {message}", location=location) from None
        return None if raw == '"<undefined>"' or raw == "<undefined>" else json.loads(raw)

    def coverage(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(self._engine.get_coverage_report_as_json())

    def set_input(self, input_doc: Any) -> None:
        with self._lock:
            self._engine.set_input_json(json.dumps(input_doc))

"""The PolicyEngine protocol: evaluate a Rego query over an input document; undefined is an error."""

from __future__ import annotations

from typing import Any, Protocol

from mlsec.errors import MlsecError


class PolicyError(MlsecError):
    """Policies could not be loaded or evaluated: the gate cannot decide (exit 3, never an allow).

    `location` ({"file", "row", "col"}) says where in which policy, when the engine knows.
    """

    def __init__(self, message: str, *, location: dict[str, Any] | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.location = location


class Undefined(PolicyError):
    """The query has no value: no policy defines it. Fail closed."""


class PolicyEngine(Protocol):
    name: str  # "embedded regorus 0.13.0", "opa http://host:8181"
    policies_digest: str  # identifies the exact policies and data decided with

    def evaluate(self, query: str, input_doc: Any) -> Any:
        """The value of `query` (e.g. "data.mlsec.gates") for `input_doc`; raises Undefined, PolicyError."""
        ...

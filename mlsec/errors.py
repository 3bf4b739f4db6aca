"""The errors mlsec raises. Each carries its context and says what to do in `diagnostics()`."""

from __future__ import annotations


class MlsecError(Exception):
    """Base of every error the library raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        member: str | None = None,
        rule_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.member = member
        self.rule_id = rule_id
        self.hint = hint

    def context(self) -> str:
        parts = []
        if self.path:
            parts.append(self.path)
        if self.member:
            parts.append(f"member {self.member}")
        if self.rule_id:
            parts.append(f"rule {self.rule_id}")
        return ": ".join(parts)

    def diagnostics(self) -> str:
        """The text a person reads: what happened, where, and what to do about it."""
        where = self.context()
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class InputError(MlsecError):
    """An input cannot be read as what it claims to be (truncated, malformed, missing)."""


class LimitExceeded(InputError):
    """An input went past a ScanLimits bound (size, members, depth, ratio, opcodes)."""

    def __init__(self, resource: str, limit: int, actual: int, **kwargs: str | None) -> None:
        super().__init__(f"{resource} limit exceeded: {actual} > {limit}", **kwargs)
        self.resource = resource
        self.limit = limit
        self.actual = actual


class RuleError(MlsecError):
    """The rule set is invalid; the message lists every problem found."""


class OutputError(MlsecError):
    """An output cannot be produced or written."""


class UsageError(MlsecError):
    """A request that cannot be carried out as given (an option whose extra is not installed, an unknown name)."""

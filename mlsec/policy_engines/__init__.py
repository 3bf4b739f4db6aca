"""Policy engines behind one protocol, and the one way the CLI and the library open them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlsec import bundled
from mlsec.policy_engines.base import PolicyEngine, PolicyError, Undefined
from mlsec.policy_engines.sources import RegoFile, data_documents, rego_files


@dataclass(frozen=True, slots=True)
class PolicySet:
    """The policies and data a gate decides with: the shipped ones unless left out, then yours."""

    files: tuple[RegoFile, ...]
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(
        cls, policy_dirs: Sequence[Path] = (), data_dirs: Sequence[Path] = (), *, bundled_policies: bool = True
    ) -> PolicySet:
        dirs = [bundled.policies_dir(), *policy_dirs] if bundled_policies else list(policy_dirs)
        if not dirs:
            raise PolicyError("no policies: give --policies DIR or keep the bundled policies")
        # data documents found among the policies load first, so --data can override them
        return cls(tuple(rego_files(dirs, tests=False)), data_documents([*dirs, *data_dirs]))

    @property
    def gate_ids(self) -> dict[str, str]:
        """package -> METADATA custom.id, for the Decision's reasons."""
        ids = {}
        for f in self.files:
            custom = f.metadata.get("custom")
            if isinstance(custom, dict) and custom.get("id"):
                ids[f.package] = str(custom["id"])
        return ids

    @property
    def waivers(self) -> list[dict[str, Any]]:
        waivers = self.data.get("mlsec", {}).get("waivers", [])
        if not isinstance(waivers, list):
            raise PolicyError("data.mlsec.waivers must be a list of waivers")
        return waivers


def open_engine(
    policies: PolicySet,
    *,
    engine: str = "embedded",
    opa_url: str | None = None,
    push: bool = False,
    timeout: float = 5.0,
    token: str | None = None,
) -> PolicyEngine:
    """The embedded engine over `policies`, or a team's OPA server (policies pushed only when asked)."""
    if engine == "embedded":
        from mlsec.policy_engines.embedded import EmbeddedEngine  # noqa: PLC0415

        return EmbeddedEngine(policies.files, policies.data)
    if engine == "opa":
        if not opa_url:
            raise PolicyError("--engine opa needs --opa-url URL")
        from mlsec.policy_engines.opa_server import OpaServerEngine  # noqa: PLC0415

        return OpaServerEngine(
            opa_url, timeout=timeout, token=token, push=policies.files if push else (), data=policies.data if push else None
        )
    raise PolicyError(f"unknown engine {engine!r} (expected embedded or opa)")


__all__ = ["PolicyEngine", "PolicyError", "PolicySet", "Undefined", "open_engine"]

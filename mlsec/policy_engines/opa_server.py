"""A team's OPA server through opa-python-client (DECISIONS.md): rego_compat off, an explicit
timeout, and an undefined answer ({} with no "result") is a failure, never an allow."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from mlsec.policy_engines.base import PolicyError, Undefined
from mlsec.policy_engines.sources import RegoFile, digest

_IMPORT = re.compile(r"^\s*import\s+data\.([\w.]+)", re.MULTILINE)


def policy_id(f: RegoFile) -> str:
    """The id a policy file is stored under on the server: its package, so a re-push replaces it."""
    return f.package.replace(".", "/")


def push_order(files: Sequence[RegoFile]) -> list[RegoFile]:
    """Files ordered so that a package comes before those importing it: a server compiles each upload
    against what it already holds, and rejects a gate whose helper library is not there yet."""
    pending = list(files)
    packages = {f.package for f in files}
    ordered: list[RegoFile] = []
    while pending:
        ready = [f for f in pending if not (_imports(f) & packages - {o.package for o in ordered} - {f.package})]
        ordered.extend(ready or pending[:1])  # a cycle: push as is and let the server say why
        pending = [f for f in pending if f not in (ready or pending[:1])]
    return ordered


def _imports(f: RegoFile) -> set[str]:
    return {m.group(1) for m in _IMPORT.finditer(f.text)}


class OpaServerEngine:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        token: str | None = None,
        push: Sequence[RegoFile] = (),
        data: dict[str, Any] | None = None,
    ) -> None:
        from opa_client.opa import OpaClient  # noqa: PLC0415 - requests is only needed here

        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PolicyError(f"--opa-url {url!r} is not an http(s) URL")
        port = parts.port or (443 if parts.scheme == "https" else 8181)
        self.url = f"{parts.scheme}://{parts.hostname}:{port}"
        self.name = f"opa {self.url}"
        self._client = OpaClient(
            host=parts.hostname, port=port, ssl=parts.scheme == "https", token=token, timeout=timeout, retries=0
        )
        try:
            for f in push_order(push):
                self._client.update_policy_from_string(f.text, policy_id(f), rego_compat=False)
            for key, value in (data or {}).items():
                self._client.update_or_create_data(value if isinstance(value, dict) else {"value": value}, key)
            self.policies_digest = digest(push, data or {}) if push else self._server_digest()
        except PolicyError:
            raise
        except Exception as exc:  # noqa: BLE001 - requests and opa_client errors alike
            raise PolicyError(f"OPA at {self.url}: {_describe(exc)}") from None

    def _server_digest(self) -> str:
        """sha256 over the policies the server holds (id and text), so a decision names what decided it."""
        h = hashlib.sha256()
        for pid in sorted(self._client.get_policies_list()):
            raw = self._client.get_policy(pid).get("result", {}).get("raw", "")
            h.update(pid.encode() + b"\0" + raw.encode() + b"\0")
        return "sha256:" + h.hexdigest()

    def evaluate(self, query: str, input_doc: Any) -> Any:
        path = query.removeprefix("data.").replace(".", "/")
        try:
            body = self._client.query_rule(input_doc, path)
        except Exception as exc:  # noqa: BLE001
            raise PolicyError(f"OPA at {self.url} could not evaluate {query}: {_describe(exc)}") from None
        if "result" not in body:
            raise Undefined(f"{query} is undefined on {self.url}: the server has no policy that defines it")
        return body["result"]


def _describe(exc: BaseException) -> str:
    parts = [type(exc).__name__] + [str(a) for a in getattr(exc, "args", ()) if a]
    return ": ".join(parts)[:500]

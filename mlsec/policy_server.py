"""`mlsec serve`: OPA's REST Data API over the embedded engine, so OPA clients (opa-python-client,
curl, conftest --update...) work against mlsec on a machine with no OPA binary.

Implemented: GET /health; GET /v1/policies; GET, PUT, DELETE /v1/policies/{id}; GET, PUT,
DELETE /v1/data/{path}; POST /v1/data/{path} with {"input": ...}. Errors have OPA's shape
({"code", "message", "errors": [{"code", "message", "location"}]}). A policy that does not
compile (or breaks another at load) is rejected and the old set stays in force. Undefined
results are `{}` without "result", as OPA answers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from mlsec.policy_engines.base import PolicyError
from mlsec.policy_engines.embedded import EmbeddedEngine
from mlsec.policy_engines.sources import RegoFile, deep_merge, rego_file

log = logging.getLogger(__name__)
MAX_BODY = 16 << 20


class ApiError(Exception):
    def __init__(self, status: HTTPStatus, code: str, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.errors = status, code, errors or []

    def body(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"code": self.code, "message": str(self)}
        if self.errors:
            doc["errors"] = self.errors
        return doc


class PolicyStore:
    """The server's policies and data; every change compiles a new engine first and swaps it in only if it loads.

    regorus engines may not cross threads (DECISIONS.md), and the HTTP server runs each request on
    a thread of its own: so one worker thread owns every engine, from compiling to dropping, and
    requests hand it their work.
    """

    def __init__(self, policies: Mapping[str, str] | None = None, data: dict[str, Any] | None = None) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlsec-rego")
        self._policies: dict[str, RegoFile] = {}
        self._data: dict[str, Any] = {}
        self._engine: EmbeddedEngine | None = None
        initial = {pid: text for pid, text in (policies or {}).items()}
        self._call(self._load, initial, dict(data or {}))

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self._worker.submit(fn, *args).result()

    def _load(self, policies: dict[str, str], data: dict[str, Any]) -> None:
        files = {pid: rego_file(pid, text) for pid, text in policies.items()}
        self._swap(files, data)

    def _swap(self, policies: dict[str, RegoFile], data: dict[str, Any]) -> None:
        """Compile first; only an engine that loads replaces the old one (on the worker thread)."""
        try:
            engine = EmbeddedEngine(list(policies.values()), data)
        except PolicyError as exc:
            error = _compile_error(exc)  # copied out: the failure's traceback holds the half-built engine
        else:
            self._engine, self._policies, self._data = engine, policies, data
            return
        raise error  # the half-built engine was dropped here, on the worker thread, with `exc`

    def close(self) -> None:
        """Drop the engine on its own thread and stop the worker."""
        self._call(setattr, self, "_engine", None)
        self._worker.shutdown()

    def policies(self) -> list[dict[str, Any]]:
        return [{"id": pid, "raw": f.text} for pid, f in sorted(self._policies.items())]

    def policy(self, pid: str) -> dict[str, Any]:
        current = self._policies
        if pid not in current:
            raise ApiError(HTTPStatus.NOT_FOUND, "resource_not_found", f"storage_not_found_error: policy id {pid!r}")
        return {"id": pid, "raw": current[pid].text}

    def put_policy(self, pid: str, text: str) -> None:
        try:
            candidate = rego_file(pid, text)
        except PolicyError as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_parameter", str(exc)) from None
        self._call(lambda: self._swap({**self._policies, pid: candidate}, self._data))

    def delete_policy(self, pid: str) -> None:
        def delete() -> None:
            if pid not in self._policies:
                raise ApiError(HTTPStatus.NOT_FOUND, "resource_not_found", f"storage_not_found_error: policy id {pid!r}")
            self._swap({k: v for k, v in self._policies.items() if k != pid}, self._data)

        self._call(delete)

    def put_data(self, path: list[str], value: Any) -> None:
        def put() -> None:
            if path:
                update: Any = value
                for segment in reversed(path):
                    update = {segment: update}
                data = _replace(self._data, path, value) if _has(self._data, path) else deep_merge(self._data, update)
            elif isinstance(value, dict):
                data = value
            else:
                raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_parameter", "the root document must be an object")
            self._swap(self._policies, data)

        self._call(put)

    def delete_data(self, path: list[str]) -> None:
        def delete() -> None:
            if not path or not _has(self._data, path):
                raise ApiError(HTTPStatus.NOT_FOUND, "resource_not_found", f"storage_not_found_error: /{'/'.join(path)}")
            self._swap(self._policies, _replace(self._data, path, None, delete=True))

        self._call(delete)

    def query(self, path: list[str], input_doc: Any) -> tuple[bool, Any]:
        """(defined, value) of data.<path>."""
        query = "data" + "".join(f"[{json.dumps(s)}]" for s in path)

        def evaluate() -> Any:
            assert self._engine is not None
            return self._engine.evaluate(query, input_doc if input_doc is not None else {}, undefined_ok=True)

        try:
            value = self._call(evaluate)
        except PolicyError as exc:
            raise ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", str(exc)) from None
        return value is not None, value


def _has(doc: Any, path: list[str]) -> bool:
    for segment in path:
        if not isinstance(doc, dict) or segment not in doc:
            return False
        doc = doc[segment]
    return True


def _replace(doc: dict[str, Any], path: list[str], value: Any, *, delete: bool = False) -> dict[str, Any]:
    out = dict(doc)
    if len(path) == 1:
        if delete:
            out.pop(path[0], None)
        else:
            out[path[0]] = value
        return out
    out[path[0]] = _replace(out[path[0]], path[1:], value, delete=delete)
    return out


def _compile_error(exc: PolicyError) -> ApiError:
    message = exc.message.split("\n")[0]
    kind = "rego_parse_error" if "parsing" in message or "expecting" in message else "rego_compile_error"
    detail: dict[str, Any] = {"code": kind, "message": message}
    if exc.location:
        detail["location"] = exc.location
    return ApiError(HTTPStatus.BAD_REQUEST, "invalid_parameter", "error(s) occurred while compiling module(s)", [detail])


class _Handler(BaseHTTPRequestHandler):
    server_version = "mlsec-opa-api/1"
    store: PolicyStore  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("%s %s", self.address_string(), format % args)

    def _route(self, method: str) -> None:
        try:
            kind, rest = self._split()
            status, body = self._dispatch(method, kind, rest)
        except ApiError as exc:
            status, body = exc.status, exc.body()
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the server thread silently
            log.exception("request failed")
            status, body = HTTPStatus.INTERNAL_SERVER_ERROR, {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}
        self._send(status, body)

    def _split(self) -> tuple[str, list[str]]:
        path = urlsplit(self.path).path
        if path in ("/health", "/health/"):
            return "health", []
        for kind in ("policies", "data"):
            prefix = f"/v1/{kind}"
            if path == prefix or path.startswith(prefix + "/"):
                return kind, [unquote(s) for s in path[len(prefix) :].split("/") if s]
        raise ApiError(HTTPStatus.NOT_FOUND, "resource_not_found", f"no such endpoint: {path}")

    def _dispatch(self, method: str, kind: str, rest: list[str]) -> tuple[HTTPStatus, Any]:
        store = self.store
        if kind == "health" and method == "GET":
            return HTTPStatus.OK, {}
        if kind == "policies":
            pid = "/".join(rest)
            if method == "GET":
                return HTTPStatus.OK, {"result": store.policy(pid) if pid else store.policies()}
            if method == "PUT" and pid:
                store.put_policy(pid, self._body().decode("utf-8", "replace"))
                return HTTPStatus.OK, {}
            if method == "DELETE" and pid:
                store.delete_policy(pid)
                return HTTPStatus.OK, {}
        if kind == "data":
            if method == "GET":
                return self._result(*store.query(rest, None))
            if method == "POST":
                raw = self._body()
                doc = self._json(raw) if raw.strip() else {}
                if not isinstance(doc, dict):
                    raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_parameter", 'body must be an object: {"input": ...}')
                return self._result(*store.query(rest, doc.get("input")))
            if method == "PUT":
                store.put_data(rest, self._json(self._body()))
                return HTTPStatus.NO_CONTENT, None
            if method == "DELETE":
                store.delete_data(rest)
                return HTTPStatus.NO_CONTENT, None
        raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "invalid_parameter", f"{method} is not supported on /{kind}")

    @staticmethod
    def _result(defined: bool, value: Any) -> tuple[HTTPStatus, Any]:
        return HTTPStatus.OK, ({"result": value} if defined else {})

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_parameter", "bad Content-Length") from None
        if length > MAX_BODY:
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "invalid_parameter", f"body over {MAX_BODY} bytes")
        return self.rfile.read(length) if length > 0 else b""

    @staticmethod
    def _json(raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_parameter", f"body is not JSON: {exc}") from None

    def _send(self, status: HTTPStatus, body: Any) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._route("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")


def make_server(host: str, port: int, store: PolicyStore) -> ThreadingHTTPServer:
    """A threaded HTTP server over `store` (port 0 picks a free port: see server.server_address)."""
    handler = type("Handler", (_Handler,), {"store": store})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server

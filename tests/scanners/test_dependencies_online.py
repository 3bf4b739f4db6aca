"""--online: OSV's query API through pip-audit, against a real HTTP server on loopback; failures never read as clean."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mlsec import scan
from mlsec.cli import main
from tests.conftest import FIXTURES

JINJA2 = [
    yaml.safe_load((FIXTURES / "advisories" / "jinja2" / f"{i}.yaml").read_text()) for i in ("PYSEC-2019-217", "PYSEC-2021-66")
]


class _Osv(BaseHTTPRequestHandler):
    """Answers like api.osv.dev/v1/query: {"vulns": [...]}, {} for none; pillow gets a server error."""

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name, version = body["package"]["name"], body["version"]
        if name == "pillow":
            self.send_response(500)
            self.end_headers()
            return
        answer = {"vulns": JINJA2} if (name, version) == ("jinja2", "2.10") else {}
        payload = json.dumps(answer, default=str).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def osv_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Osv)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    server.shutdown()
    server.server_close()


def _requirements(tmp_path: Path, text: str) -> str:
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    return str(path)


def test_online_answers_become_findings_and_failures_stay_unchecked(tmp_path: Path, osv_url: str) -> None:
    report = scan([_requirements(tmp_path, "jinja2==2.10\npyyaml==6.0.1\npillow==8.0.0\n")], osv_url=osv_url)
    advisories = sorted(str(f.evidence.facts["advisory"]) for f in report.findings)
    assert advisories == ["PYSEC-2019-217", "PYSEC-2021-66"]
    assert all(f.evidence.source.startswith("OSV online via pip-audit") for f in report.findings)
    assert [s.reason.split(":")[0:2] for s in report.skipped] == [["pillow", " online lookup failed"]]
    (error,) = report.errors
    assert "1 online lookup failed" in error.reason


def test_an_unreachable_service_checks_nothing_and_exits_3(tmp_path: Path) -> None:
    path = _requirements(tmp_path, "jinja2==2.10\n")
    result = CliRunner().invoke(main, ["scan", path, "--osv-url", "http://127.0.0.1:9/v1/query"])
    assert result.exit_code == 3
    assert "online lookup failed" in result.output


def test_without_online_nothing_is_sent(tmp_path: Path, osv_url: str) -> None:
    report = scan([_requirements(tmp_path, "jinja2==2.10\n")])
    assert report.findings == ()
    assert "no vulnerability database" in report.errors[0].reason

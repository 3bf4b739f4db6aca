"""Gate decision time over a large report, through both engines. One run.

    python benchmarks/bench_gate.py [--findings 10000] [--repeat 3]

Builds a report with --findings findings (every severity, many artifacts), then times
`gate()` with the bundled policies: the embedded engine (regorus, in process), and the OPA REST
API of `mlsec serve` on loopback through opa-python-client. Also times the whole CLI
(`mlsec gate --report`), start-up included. The issue's bar: under 1 s for 10,000 findings.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlsec.gate import gate  # noqa: E402
from mlsec.gate_input import build_gate_input  # noqa: E402
from mlsec.policy_engines import PolicySet, open_engine  # noqa: E402
from mlsec.policy_engines.opa_server import OpaServerEngine  # noqa: E402
from mlsec.policy_server import PolicyStore, make_server  # noqa: E402

SEVERITIES = ("info", "low", "medium", "high", "critical")


def big_report(n: int) -> dict:
    findings = [
        {
            "rule_id": f"MLSEC-PICKLE-00{1 + i % 9}",
            "severity": SEVERITIES[i % 5],
            "message": f"finding {i}",
            "location": {"path": f"models/m{i % 500}.pkl", "member": None, "offset": i, "line": None},
            "evidence": {"summary": "s", "facts": {"global": "os.system", "cvss": float(i % 10)}, "source": "bench"},
            "artifact_sha256": f"{i % 500:064x}",
        }
        for i in range(n)
    ]
    artifacts = [
        {
            "path": f"models/m{i}.pkl",
            "member": None,
            "kind": "model",
            "format": "pickle",
            "sha256": f"{i:064x}",
            "size": 1,
            "parent_sha256": None,
            "facts": {},
        }
        for i in range(500)
    ]
    return {
        "schema_version": "mlsec.report/1", "tool": {"name": "mlsec", "version": "bench"}, "rules_digest": "sha256:" + "0" * 64,
        "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:00Z", "targets": ["models"],
        "summary": {}, "artifacts": artifacts, "findings": findings, "skipped": [], "errors": [], "evaluations": [],
    }  # fmt: skip


def best(repeat: int, fn) -> tuple[float, object]:  # noqa: ANN001
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    doc = big_report(args.findings)
    policies = PolicySet.load()
    rows = []
    for stage in ("pr", "serve"):
        inp = build_gate_input(doc, stage=stage)
        load, engine = best(args.repeat, lambda: open_engine(policies))
        seconds, decision = best(args.repeat, lambda inp=inp, engine=engine: gate(inp, engine, gate_ids=policies.gate_ids))
        rows.append((f"embedded, stage {stage}", load, seconds, len(decision.denies), len(decision.warnings)))
    store = PolicyStore()
    server = make_server("127.0.0.1", 0, store)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://{server.server_address[0]}:{server.server_address[1]}"
    load, remote = best(1, lambda: OpaServerEngine(url, push=policies.files, data=policies.data, timeout=60))
    inp = build_gate_input(doc, stage="pr")
    seconds, decision = best(args.repeat, lambda: gate(inp, remote, gate_ids=policies.gate_ids))
    rows.append(("opa-python-client -> mlsec serve, pr", load, seconds, len(decision.denies), len(decision.warnings)))
    server.shutdown()
    store.close()
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        report_path.write_text(json.dumps(doc))
        cmd = [sys.executable, "-m", "mlsec", "gate", "--report", str(report_path), "-o", f"json={Path(tmp) / 'd.json'}"]
        seconds, _ = best(args.repeat, lambda: subprocess.run(cmd, cwd=ROOT, capture_output=True, check=False))
        rows.append(("CLI `mlsec gate` (process start included)", 0.0, seconds, -1, -1))
    print(f"== gate over a report with {args.findings:,} findings (best of {args.repeat}) ==")
    print(f"{'engine':<44}{'load s':>8}{'decide s':>10}{'denies':>8}{'warns':>7}")
    for name, load_s, decide_s, denies, warns in rows:
        print(f"{name:<44}{load_s:>8.3f}{decide_s:>10.3f}{denies if denies >= 0 else '':>8}{warns if warns >= 0 else '':>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

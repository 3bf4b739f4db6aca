"""Dependency scanning cost: import the whole shared advisory database, then scan 300 pins. One run.

    python benchmarks/bench_deps.py [--pins 300] [--repeat 3]

Times `mlsec db import` of ../shared/data/pypa-advisory-database (2,661 OSV YAML records) and a
scan of a requirements file pinning --pins packages from it (versions taken from the records, so
many match), in process, best of --repeat. The issue's bar: import plus scan under 2 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "pypa-advisory-database"

from mlsec import scan  # noqa: E402
from mlsec.dependencies.vulndb import import_records  # noqa: E402


def pins(n: int) -> str:
    lines = []
    packages = [p for p in sorted((SHARED / "vulns").iterdir()) if any(p.glob("*.yaml"))]
    for package in packages[:n]:
        record = yaml.load(sorted(package.glob("*.yaml"))[0].read_bytes(), Loader=yaml.CBaseLoader)
        versions = [v for a in record["affected"] for v in a.get("versions", []) or []]
        lines.append(f"{package.name}=={versions[len(versions) // 2] if versions else '1.0.0'}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pins", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(pins(args.pins))
        db = Path(tmp) / "osv.sqlite"
        imports, scans = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            summary = import_records(SHARED, db)
            imports.append(time.perf_counter() - start)
            start = time.perf_counter()
            report = scan([str(requirements)], vulndb=db)
            scans.append(time.perf_counter() - start)
        advisories = sum(1 for f in report.findings if "advisory" in f.evidence.facts)
        print(f"== {summary.records} records imported; {args.pins} pins scanned (best of {args.repeat}) ==")
        print(f"{'db import':<28}{min(imports):>8.3f} s")
        print(f"{'scan of the pins':<28}{min(scans):>8.3f} s   {advisories} advisories on {len(report.artifacts) - 1} packages")
        print(f"{'import + scan':<28}{min(imports) + min(scans):>8.3f} s   (bar: 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

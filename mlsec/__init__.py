"""mlsec: an MLSecOps supply-chain scanner and policy engine.

The public API (everything else may change between releases):

- `scan(paths, *, ruleset=None, limits=None) -> ScanReport`: static scan, never executes input.
- `scan_bytes(name, data, *, ruleset=None, limits=None) -> ScanReport`: the same for bytes in memory.
- `ScanReport` (and `ScanReport.from_json`), `Finding`, `Severity`, `Location`, `Evidence`.
- `ScanLimits`: the bounds applied to hostile input.
- `load_ruleset(extra_dirs=()) -> RuleSet`: the shipped rules plus your own.
- `MlsecError` and subclasses: every error raised on purpose, with `diagnostics()`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from mlsec.errors import MlsecError  # noqa: E402
from mlsec.findings import Evidence, Finding, Location, Severity  # noqa: E402
from mlsec.limits import ScanLimits  # noqa: E402
from mlsec.report import ScanReport  # noqa: E402
from mlsec.rules import RuleSet, load_ruleset  # noqa: E402
from mlsec.scan import scan, scan_bytes  # noqa: E402

__all__ = [
    "Evidence",
    "Finding",
    "Location",
    "MlsecError",
    "RuleSet",
    "ScanLimits",
    "ScanReport",
    "Severity",
    "__version__",
    "load_ruleset",
    "scan",
    "scan_bytes",
]

"""Where mlsec keeps its files in the user's home, with the variables that move them. A module of its own, so
that a command finds them without importing what uses them (the scan, the vulnerability database)."""

from __future__ import annotations

import os
from pathlib import Path

VULNDB_NAME = "osv-pypi.sqlite"


def cache_dir() -> Path:
    """What mlsec can always compute again (the result cache, the parsed rules): $MLSEC_CACHE_DIR, else
    $XDG_CACHE_HOME/mlsec, else ~/.cache/mlsec."""
    if os.environ.get("MLSEC_CACHE_DIR"):
        return Path(os.environ["MLSEC_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlsec"


def vulndb_path() -> Path:
    """The offline vulnerability database: $MLSEC_VULNDB, else the user's data directory ($XDG_DATA_HOME/mlsec or
    ~/.local/share/mlsec)."""
    if os.environ.get("MLSEC_VULNDB"):
        return Path(os.environ["MLSEC_VULNDB"])
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "mlsec" / VULNDB_NAME

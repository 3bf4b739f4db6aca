"""Where the shipped rules/ and policies/ live: inside the wheel, or in the checkout."""

from __future__ import annotations

from pathlib import Path


def _bundled_dir(name: str) -> Path:
    # A wheel carries the directory as package data (hatchling force-include) in mlsec/_bundled/; an
    # editable install or a plain checkout finds it beside the package. (Not importlib.resources: mlsec
    # reads its rules as files, so it never runs from a zip, and the import cost every command 4 ms.)
    packaged = Path(__file__).resolve().parent / "_bundled" / name
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"mlsec's bundled {name}/ directory is missing from this installation")


def rules_dir() -> Path:
    """The directory of the rules shipped with mlsec."""
    return _bundled_dir("rules")


def policies_dir() -> Path:
    """The directory of the Rego policies shipped with mlsec."""
    return _bundled_dir("policies")

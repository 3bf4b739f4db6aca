"""Shared test helpers: fixture paths, and the sentinel guard that proves nothing scanned ever ran."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
CORPUS = ROOT.parent / "shared" / "corpus"


def fixture(rel: str) -> str:
    """Path of a committed fixture (a file, or a directory such as a SavedModel), as the scanner reports it."""
    path = FIXTURES / rel
    assert path.is_file() or path.is_dir(), f"missing fixture {rel}: run python fixtures/build.py"
    return str(path)


@pytest.fixture(scope="session", autouse=True)
def no_user_vulndb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never see a vulnerability database the machine's user imported, nor write to the user's
    audit ledger or result cache: each names its own."""
    old = os.environ.get("MLSEC_VULNDB")
    old_ledger = os.environ.pop("MLSEC_LEDGER", None)
    old_cache = os.environ.get("MLSEC_CACHE_DIR")
    os.environ["MLSEC_VULNDB"] = str(tmp_path_factory.mktemp("no-vulndb") / "absent.sqlite")
    os.environ["MLSEC_CACHE_DIR"] = str(tmp_path_factory.mktemp("result-cache"))  # the CLI's cache, this session's own
    yield
    if old_cache is None:
        os.environ.pop("MLSEC_CACHE_DIR", None)
    else:
        os.environ["MLSEC_CACHE_DIR"] = old_cache
    if old is None:
        os.environ.pop("MLSEC_VULNDB", None)
    else:
        os.environ["MLSEC_VULNDB"] = old
    if old_ledger is not None:
        os.environ["MLSEC_LEDGER"] = old_ledger


@pytest.fixture(scope="session", autouse=True)
def sentinel_guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every malicious fixture's payload touches $MLSEC_SENTINEL; the run fails if it ever appears."""
    sentinel = tmp_path_factory.mktemp("sentinel") / "EXECUTED"
    old = os.environ.get("MLSEC_SENTINEL")
    os.environ["MLSEC_SENTINEL"] = str(sentinel)
    yield sentinel
    if old is None:
        os.environ.pop("MLSEC_SENTINEL", None)
    else:
        os.environ["MLSEC_SENTINEL"] = old
    assert not sentinel.exists(), "a scanned payload was EXECUTED: the sentinel file exists"


@pytest.fixture(autouse=True)
def _sentinel_after_each_test(sentinel_guard: Path) -> Iterator[None]:
    yield
    assert not sentinel_guard.exists(), "a scanned payload was EXECUTED during this test"

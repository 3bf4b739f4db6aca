"""Loading the rules: the parsed documents kept in mlsec's cache directory stand for the TOML files exactly,
and only while every file's bytes are the ones they were parsed from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlsec import rules
from mlsec.bundled import rules_dir
from mlsec.rules import load_ruleset

_RULE = '[[rule]]\nid = "LOCAL-001"\nname = "local"\nseverity = "low"\ntitle = "{title}"\nhelp = "h"\n'


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache directory of the test's own, and no rule set remembered by this process."""
    monkeypatch.setenv("MLSEC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(rules, "_LOADED", {})
    return tmp_path / "cache" / "rules"


def _fresh(extra: list[Path] | None = None) -> rules.RuleSet:
    rules._LOADED.clear()  # as a new process finds it
    return load_ruleset(extra or [])


def _parsed_from_toml(extra: list[Path] | None = None) -> rules.RuleSet:
    files = sorted(rules_dir().glob("*.toml")) + [f for d in extra or [] for f in sorted(d.glob("*.toml"))]
    return rules._build([(str(f), rules._parse(f.read_bytes())) for f in files])


def test_a_second_load_reads_the_kept_documents_and_gets_the_same_rules(cache: Path) -> None:
    first = _fresh()
    (kept,) = list(cache.glob("*.json"))
    assert isinstance(json.loads(kept.read_text()), list)
    second = _fresh()
    assert second is not first
    assert second == first == _parsed_from_toml()  # rules, lists, frameworks and digest


def test_a_new_process_with_the_documents_kept_does_not_import_tomllib(cache: Path) -> None:
    probe = "import sys; from mlsec.rules import load_ruleset; r = load_ruleset(); print('tomllib' in sys.modules, r.digest)"
    env = dict(os.environ)
    runs = [subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True) for _ in range(2)]
    (first, digest_1), (second, digest_2) = (run.stdout.split() for run in runs)
    assert (first, second) == ("True", "False")
    assert digest_1 == digest_2 == _parsed_from_toml().digest


def test_a_changed_rules_file_is_parsed_again(cache: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "local.toml").write_text(_RULE.format(title="before"))
    assert _fresh([mine]).rule("LOCAL-001").title == "before"
    (mine / "local.toml").write_text(_RULE.format(title="after"))
    changed = _fresh([mine])
    assert changed.rule("LOCAL-001").title == "after"
    assert changed == _parsed_from_toml([mine])
    assert len(list(cache.glob("*.json"))) == 2  # one for each set of bytes


def test_a_damaged_entry_is_parsed_afresh_and_replaced(cache: Path) -> None:
    expected = _fresh()
    (kept,) = list(cache.glob("*.json"))
    good = kept.read_text()
    for damage in ('{"rule": []}', "[1, 2]", "not json", "[]", good[: len(good) // 2]):
        kept.write_text(damage)
        assert _fresh() == expected, damage
        assert kept.read_text() == good, damage


def test_documents_json_cannot_hold_are_parsed_each_time(cache: Path, tmp_path: Path) -> None:
    dated = tmp_path / "dated"
    dated.mkdir()
    (dated / "local.toml").write_text(_RULE.format(title="t") + "[lists]\nreviewed_on = [1979-05-27]\n")
    loaded = _fresh([dated])
    assert loaded.list("reviewed_on")[0].year == 1979
    assert list(cache.glob("*.json")) == []
    assert _fresh([dated]) == loaded == _parsed_from_toml([dated])


def test_an_unusable_cache_directory_only_costs_the_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("MLSEC_CACHE_DIR", str(blocked))
    monkeypatch.setattr(rules, "_LOADED", {})
    assert _fresh() == _parsed_from_toml()
    assert blocked.read_text() == "not a directory"


def test_at_most_memo_keep_entries_are_kept_the_newest_among_them(cache: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    for i in range(rules._MEMO_KEEP + 3):
        (mine / "local.toml").write_text(_RULE.format(title=f"version {i}"))
        _fresh([mine])
    assert len(list(cache.glob("*.json"))) == rules._MEMO_KEEP
    before = {p: p.stat().st_mtime_ns for p in cache.glob("*.json")}
    assert _fresh([mine]).rule("LOCAL-001").title == f"version {rules._MEMO_KEEP + 2}"
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*.json")} == before  # the last one was kept: read, not written


def test_an_entry_that_cannot_be_written_leaves_nothing_behind(cache: Path) -> None:
    expected = _fresh()
    (kept,) = list(cache.glob("*.json"))
    kept.unlink()
    kept.mkdir()  # the entry's name is taken by a folder: writing it fails, as on a full disk
    assert _fresh() == expected
    assert sorted(p.name for p in cache.iterdir()) == [kept.name]  # no half-written file left beside it

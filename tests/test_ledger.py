"""The audit ledger: a hash chain that edits, deletions and reordering break, and that concurrent
writers extend without forking; the commands that append to it and read it."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlsec.cli import main
from mlsec.ledger import GENESIS, Ledger, actor
from tests.conftest import fixture

CLEAN = fixture("models/benign/mlp.onnx")
EVIL = fixture("examples/demo/downloaded_model.pkl")
# A PostgreSQL database the tests may wipe (.ci/run starts one on loopback and sets this).
POSTGRES = os.environ.get("MLSEC_TEST_POSTGRES")


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh, empty ledger lives: a SQLite file, or the test PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "l.db")
    if not POSTGRES:
        pytest.skip("no PostgreSQL server (set MLSEC_TEST_POSTGRES=postgresql://...; .ci/run does)")
    _sql(POSTGRES, "DROP TABLE IF EXISTS ledger")
    return POSTGRES


def _filled(location: str | Path, n: int = 5) -> Ledger:
    ledger = Ledger(location)
    for i in range(n):
        ledger.append("scan", subjects={f"m{i}.pkl": f"{i:064x}"}, digests={"rules_digest": "sha256:r"}, result={"i": i})
    return ledger


def _sql(location: str | Path, statement: str) -> None:
    """Edit the ledger by hand, as someone with write access to its store could."""
    if str(location).startswith("postgresql://"):
        import psycopg

        with psycopg.connect(str(location), autocommit=True) as db:
            for part in statement.split(";"):
                if part.strip():
                    db.execute(part)
        return
    db = sqlite3.connect(location)
    db.executescript(statement)
    db.commit()
    db.close()


def test_a_fresh_chain_verifies_and_links_each_entry_to_the_last(location: str) -> None:
    with _filled(location) as ledger:
        entries = list(ledger.entries())
        result = ledger.verify()
    assert result.ok
    assert (result.entries, result.head) == (5, entries[-1].hash)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("UPDATE ledger SET result = '{\"i\": 99}' WHERE seq = 3", "entry 3: its content does not match its hash (edited)"),
        ("UPDATE ledger SET actor = 'someone-else' WHERE seq = 1", "entry 1: its content does not match its hash (edited)"),
        ("DELETE FROM ledger WHERE seq = 2", "entry 3: found at position 2 (entries were deleted or renumbered)"),
        (
            "UPDATE ledger SET seq = -2 WHERE seq = 2; UPDATE ledger SET seq = 2 WHERE seq = 4;"
            "UPDATE ledger SET seq = 4 WHERE seq = -2",
            "entry 2: does not follow the entry before it (deleted, inserted or reordered)",
        ),
    ],
    ids=["edited-result", "edited-actor", "deleted", "reordered"],
)
def test_any_hand_edit_breaks_the_chain(location: str, tamper: str, expected: str) -> None:
    _filled(location).close()
    _sql(location, tamper)
    with Ledger(location) as ledger:
        result = ledger.verify()
    assert not result.ok
    assert expected in result.problems


def test_entries_cut_from_the_end_are_found_against_a_kept_head(location: str) -> None:
    with _filled(location) as ledger:
        head = ledger.verify().head
    _sql(location, "DELETE FROM ledger WHERE seq = 5")
    with Ledger(location) as ledger:
        assert ledger.verify().ok  # a shorter chain is still a chain...
        assert not ledger.verify(expect_head=head).ok  # ...but not the one that was kept


def _writer(path: str, worker: int, count: int) -> None:
    with Ledger(path) as ledger:
        for i in range(count):
            ledger.append("scan", subjects={f"w{worker}/{i}": f"{worker:032x}{i:032x}"}, digests={}, result={"w": worker})


def test_1000_appends_from_4_processes_leave_one_valid_chain(location: str) -> None:
    path = location
    Ledger(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, w, 250)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=300)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    with Ledger(path) as ledger:
        result = ledger.verify()
        entries = list(ledger.entries())
    assert result.ok, result.problems
    assert [e.seq for e in entries] == list(range(1, 1001))
    assert {k for e in entries for k in e.subjects} == {f"w{w}/{i}" for w in range(4) for i in range(250)}


def test_the_actor_is_the_ci_identity_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSEC_ACTOR", raising=False)
    for name, value in {
        "GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "octocat", "GITHUB_REPOSITORY": "acme/models",
        "GITHUB_RUN_ID": "42", "GITHUB_WORKFLOW_REF": "acme/models/.github/workflows/gate.yml@refs/heads/main",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    assert actor() == (
        "github:octocat via acme/models/.github/workflows/gate.yml@refs/heads/main "
        "(https://github.com/acme/models/actions/runs/42)"
    )
    monkeypatch.setenv("MLSEC_ACTOR", "release-bot")
    assert actor() == "release-bot"


def test_scan_gate_and_sign_append_and_audit_reads_them_back(tmp_path: Path) -> None:
    runner, ledger = CliRunner(), str(tmp_path / "audit.db")
    report = tmp_path / "r.json"
    assert runner.invoke(main, ["scan", EVIL, "--ledger", ledger]).exit_code == 1
    assert runner.invoke(main, ["scan", CLEAN, "--ledger", ledger, "-o", f"json={report}"]).exit_code == 0
    assert runner.invoke(main, ["gate", "--report", str(report), "--ledger", ledger]).exit_code == 0
    assert runner.invoke(main, ["keygen", "--private", str(tmp_path / "k"), "--public", str(tmp_path / "k.pub")]).exit_code == 0
    model = tmp_path / "mlp.onnx"
    model.write_bytes(Path(CLEAN).read_bytes())
    assert runner.invoke(main, ["sign", str(model), "--key", str(tmp_path / "k"), "--ledger", ledger]).exit_code == 0

    log = runner.invoke(main, ["audit", "log", "--ledger", ledger, "--json"])
    entries = [json.loads(line) for line in log.output.splitlines()]
    assert [(e["kind"], e["result"].get("verdict", e["result"].get("allowed"))) for e in entries] == [
        ("scan", "blocked"), ("scan", "clean"), ("gate", True), ("sign", None),
    ]  # fmt: skip
    onnx_sha = json.loads(report.read_text())["artifacts"][0]["sha256"]
    about = runner.invoke(main, ["audit", "log", "--ledger", ledger, "--artifact", onnx_sha, "--json"]).output.splitlines()
    assert [json.loads(line)["kind"] for line in about] == ["scan", "gate", "sign"]
    assert runner.invoke(main, ["audit", "log", "--ledger", ledger, "--since", "2999-01-01"]).output == ""
    verified = runner.invoke(main, ["audit", "verify", "--ledger", ledger])
    assert verified.exit_code == 0
    assert "4 entries" in verified.output


def test_audit_verify_fails_after_a_row_is_edited_by_hand(tmp_path: Path) -> None:
    runner, ledger = CliRunner(), tmp_path / "audit.db"
    assert runner.invoke(main, ["scan", EVIL, "--ledger", str(ledger)]).exit_code == 1
    assert runner.invoke(main, ["scan", CLEAN, "--ledger", str(ledger)]).exit_code == 0
    _sql(ledger, "UPDATE ledger SET result = replace(result, 'blocked', 'clean') WHERE seq = 1")
    result = runner.invoke(main, ["audit", "verify", "--ledger", str(ledger)])
    assert result.exit_code == 1
    assert "entry 1: its content does not match its hash (edited)" in result.output
    assert "entry 2" not in result.output  # the next entry still follows the stored hash; only entry 1 lies


def test_export_is_signed_and_its_signature_verifies(tmp_path: Path) -> None:
    runner, ledger = CliRunner(), str(tmp_path / "audit.db")
    runner.invoke(main, ["keygen", "--private", str(tmp_path / "k"), "--public", str(tmp_path / "k.pub")])
    assert runner.invoke(main, ["scan", CLEAN, "--ledger", ledger]).exit_code == 0
    out = tmp_path / "audit.jsonl"
    result = runner.invoke(main, ["audit", "export", "--ledger", ledger, "-o", str(out), "--key", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 1
    assert f"head {json.loads(lines[0])['hash']}" in result.output
    verified = runner.invoke(main, ["verify", str(out), "--key", str(tmp_path / "k.pub")])
    assert verified.exit_code == 0, verified.output
    out.write_text(out.read_text().replace("clean", "blocked"))
    assert runner.invoke(main, ["verify", str(out), "--key", str(tmp_path / "k.pub")]).exit_code == 1


def test_an_unwritable_ledger_makes_the_scan_incomplete_but_never_hides_a_block(tmp_path: Path) -> None:
    runner, blocker = CliRunner(), tmp_path / "a-file"
    blocker.write_text("not a directory")
    folder = blocker / "audit.db"  # its parent is a file: the ledger cannot be created
    clean = runner.invoke(main, ["scan", CLEAN, "--ledger", str(folder)])
    assert clean.exit_code == 3
    assert "the audit ledger was not written" in clean.output
    assert runner.invoke(main, ["scan", EVIL, "--ledger", str(folder)]).exit_code == 1


@pytest.mark.skipif(not POSTGRES, reason="no PostgreSQL server (set MLSEC_TEST_POSTGRES)")
def test_the_commands_work_against_postgresql(tmp_path: Path) -> None:
    _sql(POSTGRES, "DROP TABLE IF EXISTS ledger")
    runner = CliRunner()
    assert runner.invoke(main, ["scan", EVIL, "--ledger", POSTGRES]).exit_code == 1
    assert runner.invoke(main, ["scan", CLEAN, "--ledger", POSTGRES]).exit_code == 0
    verified = runner.invoke(main, ["audit", "verify", "--ledger", POSTGRES])
    assert verified.exit_code == 0, verified.output
    assert "2 entries" in verified.output
    password = POSTGRES.split("//", 1)[1].split("@", 1)[0].split(":")[-1]
    log = runner.invoke(main, ["audit", "log", "--ledger", POSTGRES])
    assert "blocked" in log.output
    assert "clean" in log.output
    wrong = POSTGRES.replace(f":{password}@", ":wrong-password@")
    failed = runner.invoke(main, ["scan", CLEAN, "--ledger", wrong])
    assert failed.exit_code == 3
    assert "the audit ledger was not written" in failed.output
    assert "wrong-password" not in failed.output

"""Hostile and broken inputs: findings or errors with the path, never a crash, a hang or a traceback."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from mlsec import ScanLimits, scan
from tests.conftest import fixture


def test_one_unreadable_file_never_stops_the_others(tmp_path: Path) -> None:
    broken = fixture("models/malformed/truncated.pt")
    evil = fixture("models/malicious/os_system_protocol2.pkl")
    report = scan([broken, evil])
    assert [e.path for e in report.errors] == [broken]
    assert {f.location.path for f in report.findings} == {evil}


def test_empty_model_file_is_an_error_other_empty_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"")
    (tmp_path / "__init__.py").write_bytes(b"")
    report = scan([str(tmp_path)])
    assert [Path(e.path).name for e in report.errors] == ["model.pt"]
    assert [Path(s.path).name for s in report.skipped] == ["__init__.py"]


def test_directory_walk_skips_symlinks_and_empty_files(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    os.symlink("/etc/passwd", tmp_path / "link.pkl")
    os.symlink("/etc", tmp_path / "linkdir")
    report = scan([str(tmp_path)])
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(reasons) == {"empty.txt", "link.pkl", "linkdir"}
    assert "symbolic link" in reasons["link.pkl"]


def test_location_path_is_the_given_path_joined_with_the_walk(tmp_path: Path) -> None:
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    (sub / "m.pkl").write_bytes(b"\x80\x02cos\nsystem\n.")
    report = scan([str(tmp_path / "a")])
    assert report.findings[0].location.path == os.path.join(str(tmp_path / "a"), "b", "m.pkl")


def test_member_chain_names_every_archive_level() -> None:
    report = scan([fixture("models/malicious/zip_in_tar_in_gzip.tgz")])
    [finding] = report.findings
    assert finding.location.member == "zip_in_tar_in_gzip.tgz:gzip-payload → outer/inner.zip → m.pkl"


def test_suffix_is_only_a_hint(tmp_path: Path) -> None:
    renamed = tmp_path / "weights.safetensors"
    renamed.write_bytes(Path(fixture("models/malicious/os_system_protocol2.pkl")).read_bytes())
    report = scan([str(renamed)])
    assert report.artifacts[0].format == "pickle"
    assert {f.rule_id for f in report.findings} == {"MLSEC-PICKLE-001"}


def test_zip_bomb_is_refused_by_declared_ratio_before_reading() -> None:
    report = scan([fixture("archives/hostile/bomb.zip")])
    assert {f.rule_id for f in report.findings} == {"MLSEC-ARCHIVE-005"}
    assert [a.member for a in report.artifacts] == [None]


def test_lying_zip_sizes_are_bounded_by_actual_expansion(tmp_path: Path) -> None:
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", b"\0" * (4 << 20))
    report = scan([str(path)], limits=ScanLimits(max_member_in_memory=1 << 20, ratio_floor=1 << 30))
    assert report.errors
    assert "exceeds the in-memory limit" in report.errors[0].reason


def test_member_count_limit() -> None:
    report = scan([fixture("models/benign/weights.npz")], limits=ScanLimits(max_members=1))
    assert {f.rule_id for f in report.findings} == {"MLSEC-ARCHIVE-007"}


def test_crc_mismatch_still_scans_the_payload_the_loader_would_read() -> None:
    report = scan([fixture("archives/hostile/crc_mismatch.zip")])
    assert {f.rule_id for f in report.findings} == {"MLSEC-ARCHIVE-008", "MLSEC-PICKLE-001"}


def test_duplicate_names_scan_both_copies() -> None:
    report = scan([fixture("archives/hostile/duplicate_names.zip")])
    pickles = [a for a in report.artifacts if a.format == "pickle"]
    assert len(pickles) == 2


def test_truncated_zip_is_an_error_with_its_path() -> None:
    path = fixture("archives/hostile/truncated.zip")
    report = scan([path])
    assert [(e.path, e.scanner) for e in report.errors] == [(path, "inputs.zip")]


def test_nothing_is_written_next_to_the_inputs(tmp_path: Path) -> None:
    target = tmp_path / "in"
    target.mkdir()
    for rel in ("archives/hostile/traversal.zip", "models/malicious/pickle_in_tar.tar.gz", "models/malicious/pickle_in_7z.7z"):
        (target / Path(rel).name).write_bytes(Path(fixture(rel)).read_bytes())
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    scan([str(target)])
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


def test_a_small_file_is_read_at_its_size_and_whole_if_it_grew_meanwhile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small file is read with one request of its own size (not 1 MiB: that allocation cost 22 us a file);
    one that grew between the stat and the read is still read whole, up to the in-memory limit."""
    import hashlib

    from mlsec import inputs

    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b\n" + b"1,2\n" * 5000)
    real = os.fstat

    def stale(fd: int) -> os.stat_result:  # the size the file had a moment before
        st = real(fd)
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, 100, 0, 0, 0))

    monkeypatch.setattr(inputs.os, "fstat", stale)
    blob = next(e for e in inputs.walk([str(path)], ScanLimits()) if isinstance(e, inputs.Blob))
    assert blob.size == path.stat().st_size == len(blob.data)
    assert blob.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_that_became_a_fifo_after_the_walk_is_passed_over_without_waiting(tmp_path: Path) -> None:
    """Between the walk's stat and the read a file may be replaced: a FIFO there is passed over, as the walk
    passes one over, and never opened for a read that would wait for a writer for ever."""
    import threading

    from mlsec import inputs
    from mlsec.report import Skipped

    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x04N.")
    (unit,) = inputs.plan([str(path)])  # a regular file when walked
    path.unlink()
    os.mkfifo(path)
    events: list[object] = []
    reader = threading.Thread(target=lambda: events.extend(unit.events(ScanLimits())), daemon=True)
    reader.start()
    reader.join(30)
    assert not reader.is_alive(), "the read waits for a writer"
    assert events == [Skipped(str(path), "not a regular file (device, FIFO or socket)")]


_MAPPED_CHILD = """
import hashlib, json, mmap, resource, sys
from mlsec import deadline, inputs
real, mapped = mmap.mmap, []
mmap.mmap = lambda *args, **kwargs: mapped.append(args) or real(*args, **kwargs)
deadline.exit_on_overrun()  # as each worker process of a scan does
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
digests = [inputs.hash_file(path) for path in sys.argv[1:]]
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps([digests, len(mapped), grew * 1024]))
"""


def test_a_worker_hashes_a_large_file_mapped_and_the_users_process_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan's worker process maps a file to hash it (no copy), a window at a time, so its memory does not grow
    with the file; a mapped file cut short kills the process (SIGBUS), so the user's own process reads it
    instead. Both give the file's sha256; an empty file, which cannot be mapped, is read."""
    import hashlib
    import json
    import mmap
    import subprocess
    import sys

    from mlsec import inputs

    large, empty = tmp_path / "large.bin", tmp_path / "empty.bin"
    large.write_bytes(os.urandom(3 << 20) * 25)  # 75 MiB: more than one piece of the mapping
    empty.write_bytes(b"")
    expected = [hashlib.sha256(large.read_bytes()).hexdigest(), hashlib.sha256(b"").hexdigest()]
    child = subprocess.run(
        [sys.executable, "-c", _MAPPED_CHILD, str(large), str(empty)], capture_output=True, text=True, check=True
    )
    digests, mapped, grew = json.loads(child.stdout)
    assert digests == expected
    assert mapped == -(-large.stat().st_size // inputs._MAPPED_WINDOW)  # a window at a time; the empty file is read
    assert grew < 3 * inputs._MAPPED_WINDOW  # what stays resident is a window's worth, not the 75 MiB file

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("the user's process mapped a file")

    monkeypatch.setattr(mmap, "mmap", refused)
    assert [inputs.hash_file(str(large)), inputs.hash_file(str(empty))] == expected

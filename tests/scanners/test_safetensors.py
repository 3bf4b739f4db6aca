"""safetensors: data only, so clean files raise nothing; each test names the structural lie it covers."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsec import scan
from tests.conftest import fixture

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def _file(tmp_path: Path, data: bytes, name: str = "w.safetensors") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _header(tensors: dict, buffer: bytes) -> bytes:
    raw = json.dumps(tensors).encode()
    return struct.pack("<Q", len(raw)) + raw + buffer


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int8, np.uint8, np.int64, np.bool_])
def test_files_written_by_the_library_raise_nothing_and_count_parameters(tmp_path: Path, dtype: type) -> None:
    data = safetensors_numpy.save({"a": np.ones((3, 5), dtype=dtype), "empty": np.zeros((0, 4), dtype=dtype)})
    report = scan([_file(tmp_path, data)])
    assert report.findings == ()
    assert report.artifacts[0].facts == {"tensors": 2, "parameters": 15}


def test_polyglot_trailing_pickle_is_named_in_the_evidence() -> None:
    (finding,) = scan([fixture("models/malicious/safetensors_polyglot.safetensors")]).findings
    assert finding.rule_id == "MLSEC-SAFETENSORS-004"
    assert finding.evidence.facts["hidden_format"] == "pickle"


def test_hole_between_tensors_is_unindexed_bytes(tmp_path: Path) -> None:
    tensors = {
        "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
        "b": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]},
    }
    (finding,) = scan([_file(tmp_path, _header(tensors, bytes(12)))]).findings
    assert (finding.rule_id, finding.evidence.facts["begin"], finding.evidence.facts["end"]) == ("MLSEC-SAFETENSORS-004", 4, 8)


def test_metadata_pickle_reports_what_it_imports() -> None:
    (finding,) = scan([fixture("models/malicious/safetensors_metadata_pickle.safetensors")]).findings
    assert finding.evidence.facts["imports"] == "posix.system"
    assert finding.evidence.facts["pickle_verdict"] == "critical"


def test_plain_metadata_strings_are_not_pickles(tmp_path: Path) -> None:
    data = safetensors_numpy.save({"a": np.ones(2, dtype=np.float32)}, metadata={"note": "gASVexample text that is base64-ish"})
    assert scan([_file(tmp_path, data)]).findings == ()


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}, "unknown dtype"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}, "data_offsets"),
        ({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}, "needs 8 bytes"),
        ("not an object", "not an object"),
    ],
)
def test_inconsistent_entries_say_what_is_wrong(tmp_path: Path, entry: object, why: str) -> None:
    report = scan([_file(tmp_path, _header({"t": entry}, bytes(4)))])
    messages = [f.evidence.summary for f in report.findings if f.rule_id == "MLSEC-SAFETENSORS-002"]
    assert len(messages) == 1
    assert why in messages[0]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x01\x00", "too short"),
        (struct.pack("<Q", 64) + b"{}", "runs past the end"),
        (struct.pack("<Q", 4) + b"\xff\xfe{}", "not UTF-8"),
        (struct.pack("<Q", 2) + b"[]", "does not start with '{'"),
        (struct.pack("<Q", 3) + b"{x}", "not valid JSON"),
        (struct.pack("<Q", 26) + b'{"__metadata__":{"a":1}}  ', "strings to strings"),
    ],
)
def test_malformed_headers_are_findings_not_errors(tmp_path: Path, data: bytes, why: str) -> None:
    report = scan([_file(tmp_path, data)])
    assert report.errors == ()
    assert [f.rule_id for f in report.findings] == ["MLSEC-SAFETENSORS-001"]
    assert why in report.findings[0].evidence.summary


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_a_header_length_never_crash(tmp_path: Path, tail: bytes) -> None:
    report = scan([_file(tmp_path, struct.pack("<Q", len(tail)) + tail)])
    assert report.errors == ()

"""Property-based tests (hypothesis) over the parsers that read attacker bytes first: the pickle
analyser, the zip and tar readers, ONNX and the OCI image reader. (safetensors, GGUF and the
TensorFlow subset have theirs next to their scanners.) Bounded: a few hundred examples in all.

Two kinds of property: what a well-formed input must give (data-only pickles raise nothing, every
archive member written is read back with its bytes), and that mutated input never ends in a bug
(`ScanError.is_bug`) or an exception out of scan.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsec import scan, scan_bytes
from mlsec.report import ScanReport
from tests.conftest import fixture

FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20)
)
data_only = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=8), inner, max_size=5),
        st.frozensets(st.integers(), max_size=5),
        st.sets(st.text(max_size=5), max_size=5),
    ),
    max_leaves=30,
)
member_names = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters="/\\:"), min_size=1, max_size=20
).filter(lambda n: n.strip(".") != "")  # "." and ".." are traversal findings, tested elsewhere


def no_bug(report: ScanReport) -> None:
    assert [e for e in report.errors if e.is_bug] == []


def mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        out[position % len(out)] = value
    return bytes(out)


edits = st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8)


@FEW
@given(data_only, st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_data_only_pickles_raise_nothing(value: object, protocol: int) -> None:
    report = scan_bytes("data.pkl", pickle.dumps(value, protocol=protocol))
    assert report.findings == ()
    assert report.errors == ()


@FEW
@given(data_only, edits)
def test_mutated_pickles_never_end_in_a_bug(value: object, changes: list[tuple[int, int]]) -> None:
    no_bug(scan_bytes("data.pkl", mutate(pickle.dumps(value, protocol=4), changes)))


def _pickled(payloads: dict[str, bytes]) -> dict[str, bytes]:
    """Members a scanner reads (members nothing reads are not artifacts of their own)."""
    return {name: pickle.dumps(data, protocol=4) for name, data in payloads.items()}


@FEW
@given(st.dictionaries(member_names, st.binary(max_size=200), min_size=1, max_size=6).map(_pickled))
def test_every_zip_member_is_read_with_its_bytes(members: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    report = scan_bytes("a.zip", buf.getvalue())
    read = {a.member: a.sha256 for a in report.artifacts if a.member}
    assert read == {n: hashlib.sha256(d).hexdigest() for n, d in members.items()}
    assert report.findings == ()
    no_bug(report)


@FEW
@given(st.dictionaries(member_names, st.binary(max_size=200), min_size=1, max_size=6).map(_pickled))
def test_every_tar_member_is_read_with_its_bytes(members: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    report = scan_bytes("a.tar", buf.getvalue())
    read = {a.member: a.sha256 for a in report.artifacts if a.member}
    assert read == {n: hashlib.sha256(d).hexdigest() for n, d in members.items()}
    assert report.findings == ()
    no_bug(report)


@FEW
@given(edits)
def test_mutated_zip_and_tar_never_end_in_a_bug(changes: list[tuple[int, int]]) -> None:
    for path in ("models/benign/state_dict.pt", "archives/hostile/links.tar"):
        no_bug(scan_bytes(Path(path).name, mutate(Path(fixture(path)).read_bytes(), changes)))


@FEW
@given(edits)
def test_mutated_onnx_never_ends_in_a_bug(changes: list[tuple[int, int]]) -> None:
    data = Path(fixture("models/benign/onnx_if_function_contrib.onnx")).read_bytes()
    no_bug(scan_bytes("m.onnx", mutate(data, changes)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits)
def test_mutated_oci_images_never_end_in_a_bug(tmp_path: Path, changes: list[tuple[int, int]]) -> None:
    data = Path(fixture("images/model-server.oci.tar")).read_bytes()
    path = tmp_path / "image.tar"
    path.write_bytes(mutate(data, changes))
    no_bug(scan([str(path)]))

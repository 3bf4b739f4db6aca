""".npy files: the header's dtype and shape must account for the bytes, read without numpy for plain dtypes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlsec import scan
from mlsec.scanners.numpy import _CANONICAL, _PLAIN_DTYPES, _header, _itemsize


@pytest.mark.parametrize("order", "<>|=")
def test_plain_dtypes_have_numpys_item_sizes(order: str) -> None:
    for code in _PLAIN_DTYPES:
        assert _itemsize(order + code) == np.dtype(order + code).itemsize, order + code


def test_other_dtypes_are_numpys_to_read() -> None:
    assert _itemsize("<U10") == 40
    assert _itemsize([("a", "<f4"), ("b", "<i8")]) == 12
    with pytest.raises(TypeError):
        _itemsize("<i3")  # not a dtype: numpy's loader refuses it, and so does the scan


@pytest.mark.parametrize("write", ["write_array_header_1_0", "write_array_header_2_0"])
def test_a_header_reads_as_literal_eval_reads_it(write: str) -> None:
    """numpy's own headers, the plain ones read by a pattern (_CANONICAL) and the rest by ast.literal_eval,
    give the dict literal_eval gives; so do near-misses of the pattern, or the same error."""
    import ast
    import io

    matched = 0
    for shape in [(), (0,), (1,), (64, 64), (3, 0, 5), (10**12, 2), (1,) * 32]:
        for dtype in ["<f4", ">i8", "|b1", "<c16", "<U10", "|S5", "<M8[ns]", [("a", "<i4")], "|O"]:
            for fortran in (False, True):
                out = io.BytesIO()
                descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
                getattr(np.lib.format, write)(out, {"descr": descr, "fortran_order": fortran, "shape": shape})
                text = out.getvalue()[10 if write.endswith("1_0") else 12 :].decode("latin-1")
                matched += _CANONICAL.fullmatch(text) is not None
                assert _header(text) == ast.literal_eval(text), text
    assert matched >= 7 * 7 * 2  # the plain dtypes took the pattern
    for shape in ["(64)", "(0)", "(064,)", "(00,)", "(,)", "(1,,)", "(1 ,)", "(1,2)", "(1, 2,)", "(5,)", "()"]:
        text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"
        try:
            expected: object = ast.literal_eval(text)
        except SyntaxError:
            expected = SyntaxError
        try:
            got: object = _header(text)
        except SyntaxError:
            got = SyntaxError
        assert got == expected, shape


def test_a_plain_array_is_scanned_without_importing_numpy(tmp_path: Path) -> None:
    """numpy costs 66 ms to import, in every worker of a pool: a float32 array does not need it."""
    np.save(tmp_path / "weights.npy", np.zeros((8, 8), np.float32))
    code = (
        "import sys, json; from mlsec import scan\n"
        "report = scan([sys.argv[1]], jobs=1)\n"
        "print(json.dumps([len(report.artifacts), len(report.errors), 'numpy' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [1, 0, False]


@pytest.mark.parametrize(
    ("array", "cut"),
    [(np.zeros(10, np.float64), 8), (np.zeros(4, [("a", "<f4"), ("b", "<i8")]), 12), (np.zeros(3, "<U5"), 20)],
)
def test_a_header_that_does_not_account_for_the_bytes_is_an_error(tmp_path: Path, array: np.ndarray, cut: int) -> None:
    path = tmp_path / "a.npy"
    np.save(path, array)
    assert not scan([str(path)]).errors
    path.write_bytes(path.read_bytes()[:-cut])
    errors = scan([str(path)]).errors
    assert len(errors) == 1
    assert f"holds {array.nbytes - cut:,}" in errors[0].reason

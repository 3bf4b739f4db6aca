"""The pickle analyser: each test names the attack or the loader behaviour it covers."""

from __future__ import annotations

import io
import pickle
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest

from mlsec import ScanLimits, Severity, scan
from mlsec.scanners._pickle_vm import PickleMachine


def _scan_bytes(tmp_path: Path, data: bytes, name: str = "m.pkl", **limits: int):
    path = tmp_path / name
    path.write_bytes(data)
    return scan([str(path)], limits=ScanLimits(**limits))


def _rules(report) -> set[str]:
    return {f.rule_id for f in report.findings}


def _str(s: str) -> bytes:
    raw = s.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


@pytest.mark.parametrize("protocol", range(0, 6))
def test_benign_containers_in_every_protocol_raise_nothing(tmp_path: Path, protocol: int) -> None:
    obj = {"a": [1, 2.5, "x", b"raw", None, True], "t": (1, (2, 3)), "s": {1, 2}, "f": frozenset({3}), "o": OrderedDict(k=1)}
    report = _scan_bytes(tmp_path, pickle.dumps(obj, protocol=protocol))
    assert report.findings == ()
    assert report.artifacts[0].format == "pickle"


def test_memoized_stack_global_resolves_through_binget(tmp_path: Path) -> None:
    data = b"\x80\x04" + _str("os") + b"\x94" + _str("system") + b"\x94" + b"00h\x00h\x01\x93" + _str("id") + b"\x85R."
    report = _scan_bytes(tmp_path, data)
    assert _rules(report) == {"MLSEC-PICKLE-001"}
    assert report.findings[0].evidence.facts["global"] == "os.system"


def test_py2_module_alias_is_resolved_like_the_unpickler(tmp_path: Path) -> None:
    # __builtin__.apply is on no list by that name; fix_imports maps it to builtins.apply.
    report = _scan_bytes(tmp_path, b"c__builtin__\napply\n.")
    finding = report.findings[0]
    assert finding.rule_id == "MLSEC-PICKLE-004"
    assert finding.evidence.facts["resolved_global"] == "builtins.apply"


def test_inst_and_obj_opcodes_import_their_class(tmp_path: Path) -> None:
    inst = b"(S'id'\nisubprocess\ncheck_output\n."
    obj = b"(csubprocess\ncall\nS'id'\no."
    assert _rules(_scan_bytes(tmp_path, inst, "a.pkl")) == {"MLSEC-PICKLE-001"}
    assert _rules(_scan_bytes(tmp_path, obj, "b.pkl")) == {"MLSEC-PICKLE-001"}


def test_newobj_ex_of_unknown_class_is_medium(tmp_path: Path) -> None:
    data = b"\x80\x04" + _str("evil.mod") + _str("Thing") + b"\x93)}\x92."
    report = _scan_bytes(tmp_path, data)
    assert [(f.rule_id, f.severity) for f in report.findings] == [("MLSEC-PICKLE-005", Severity.MEDIUM)]


def test_allowlisted_module_cannot_smuggle_a_dangerous_name(tmp_path: Path) -> None:
    # sklearn classes are allowed by pattern; a re-exported `system` in sklearn is not.
    data = b"\x80\x04" + _str("sklearn.utils") + _str("system") + b"\x93."
    assert _rules(_scan_bytes(tmp_path, data)) == {"MLSEC-PICKLE-001"}


def test_attribute_walk_through_allowlisted_module_is_caught(tmp_path: Path) -> None:
    data = b"\x80\x04" + _str("numpy") + _str("testing._private.utils.os.system") + b"\x93."
    report = _scan_bytes(tmp_path, data)
    assert _rules(report) == {"MLSEC-PICKLE-001"}


def test_payload_hidden_in_second_concatenated_pickle(tmp_path: Path) -> None:
    data = pickle.dumps([1, 2], protocol=2) + b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."
    report = _scan_bytes(tmp_path, data)
    assert _rules(report) == {"MLSEC-PICKLE-001"}
    assert report.findings[0].evidence.facts["pickle_index"] == 2


def test_truncated_pickle_reports_what_ran_before_the_break(tmp_path: Path) -> None:
    report = _scan_bytes(tmp_path, b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85")
    assert _rules(report) == {"MLSEC-PICKLE-001", "MLSEC-PICKLE-010"}


@pytest.mark.parametrize(
    ("data", "error", "offset", "opcodes"),
    [
        (b"\x80\x02", "truncated: wanted 1 bytes, got 0", 2, 1),  # where an opcode should be
        (b"\x80\x02J\x01\x02", "truncated: wanted 4 bytes, got 2", 3, 2),  # in BININT's fixed-size argument
        (b"\x80\x02K\x07q", "truncated: wanted 1 bytes, got 0", 5, 3),  # in BINPUT's, after a whole BININT1
        (b"\x80\x02X\x05\x00\x00\x00ab", "truncated: wanted 5 bytes, got 2", 7, 2),  # in BINUNICODE's string
        (b"\x80\x02\xff", "invalid opcode b'\\xff'", 2, 1),
    ],
)
def test_a_cut_or_bad_stream_stops_at_the_offset_the_unpickler_would(data: bytes, error: str, offset: int, opcodes: int) -> None:
    """Each way an opcode or its argument is read (fixed-size arguments in the machine's loop, counted ones by
    their reader) reports the same truncation, at the offset of the bytes that are missing."""
    analysis = PickleMachine(ScanLimits()).run(io.BytesIO(data))
    assert (analysis.error, analysis.error_offset, analysis.opcodes) == (error, offset, opcodes)


def test_giant_long4_is_skipped_not_read(tmp_path: Path) -> None:
    # LONG4 announcing 2 GiB with nothing behind it: a truncation finding, no allocation.
    report = _scan_bytes(tmp_path, b"\x80\x02\x8b\x00\x00\x00\x80.")
    assert _rules(report) == {"MLSEC-PICKLE-010"}


def test_huge_memo_hits_the_limit_not_the_memory(tmp_path: Path) -> None:
    data = b"\x80\x02N" + b"\x94" * 50 + b"."
    report = _scan_bytes(tmp_path, data, max_pickle_memo=10)
    assert report.errors
    assert report.errors[0].error_type == "LimitExceeded"


def test_opcode_limit_stops_a_long_stream(tmp_path: Path) -> None:
    data = b"\x80\x02" + b"N0" * 1000 + b"N."
    report = _scan_bytes(tmp_path, data, max_pickle_opcodes=100)
    assert report.errors
    assert "pickle opcodes" in report.errors[0].reason


def test_deeply_nested_containers_do_not_recurse(tmp_path: Path) -> None:
    data = b"\x80\x02" + b"(" * 100_000 + b"l" * 100_000 + b"."
    report = _scan_bytes(tmp_path, data)
    assert report.errors == ()
    # our analysis finds no global; fickling's resource-exhaustion check disagrees (a medium finding).
    assert {(f.rule_id, f.evidence.source) for f in report.findings} == {("MLSEC-PICKLE-009", "fickling 0.1")}


def test_joblib_object_array_nested_pickle_is_followed() -> None:
    joblib = pytest.importorskip("joblib")
    np = pytest.importorskip("numpy")
    buf = io.BytesIO()
    joblib.dump({"w": np.arange(3.0), "o": np.array(["a", None], dtype=object)}, buf)
    analysis = PickleMachine(ScanLimits()).run(io.BytesIO(buf.getvalue()))
    assert analysis.error is None
    assert analysis.joblib_arrays == 2
    assert analysis.nested_pickles == 1


def test_own_rules_dir_can_allowlist_a_class(tmp_path: Path) -> None:
    from mlsec import load_ruleset

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ours.toml").write_text('[lists.pickle_safe_globals]\n"ourco.models" = ["Net"]\n')
    data = b"\x80\x04" + _str("ourco.models") + _str("Net") + b"\x93)\x81."
    path = tmp_path / "m.pkl"
    path.write_bytes(data)
    assert _rules(scan([str(path)])) == {"MLSEC-PICKLE-005"}
    assert scan([str(path)], ruleset=load_ruleset([rules])).findings == ()


def test_blocking_findings_carry_decompiled_evidence(tmp_path: Path) -> None:
    report = _scan_bytes(tmp_path, b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.")
    assert "system('id')" in str(report.findings[0].evidence.facts["decompiled"])


def test_fickling_reads_the_same_bytes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints of one architecture share their pickle byte for byte: fickling's opinion of those bytes is
    asked once per process, and every file still gets its own findings with it (here: its decompiled code,
    and fickling's finding on a pickle only fickling objects to)."""
    from fickling.fickle import Pickled

    import mlsec.scanners.pickle as scanner

    monkeypatch.setattr(scanner, "_OPINIONS", {})
    loads: list[int] = []
    real = Pickled.load

    def counted(data, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        loads.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(Pickled, "load", staticmethod(counted))
    hostile = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R."
    nested = b"\x80\x02" + b"(" * 100_000 + b"l" * 100_000 + b"."
    for name, data in [("a.pkl", hostile), ("b.pkl", hostile), ("c.pkl", nested), ("d.pkl", nested)]:
        (tmp_path / name).write_bytes(data)
    report = scan([str(tmp_path)])
    assert sorted(loads) == sorted([len(hostile), len(nested)])
    decompiled = {
        f.location.path[-5:]: f.evidence.facts["decompiled"] for f in report.findings if f.rule_id == "MLSEC-PICKLE-001"
    }
    assert decompiled.keys() == {"a.pkl", "b.pkl"}
    assert decompiled["a.pkl"] == decompiled["b.pkl"]
    assert "system('id')" in str(decompiled["a.pkl"])
    fickling_says = sorted(f.location.path[-5:] for f in report.findings if f.rule_id == "MLSEC-PICKLE-009")
    assert fickling_says == ["c.pkl", "d.pkl"]


def _global_call(module: str, name: str) -> bytes:
    """A protocol-4 pickle that imports module.name and calls it with ([1],)."""
    return b"\x80\x04" + _str(module) + _str(name) + b"\x93]K\x01a\x85R."


def test_inert_names_in_a_denied_module_are_exceptions_and_nothing_else_is(tmp_path: Path) -> None:
    """torch.jit is denied as a whole (it compiles code); its _pickle helpers return their argument and are
    in pickle_deny_exceptions, exactly by name: a neighbour in the same module, or torch.jit.load, stays critical."""
    inert = _scan_bytes(tmp_path, _global_call("torch.jit._pickle", "build_intlist"), "inert.pkl")
    assert "MLSEC-PICKLE-001" not in _rules(inert)
    for module, name in (("torch.jit._pickle", "not_a_helper"), ("torch.jit", "load")):
        denied = _scan_bytes(tmp_path, _global_call(module, name), f"{name}.pkl")
        assert "MLSEC-PICKLE-001" in _rules(denied), (module, name)


def test_a_torchscript_archive_is_judged_by_its_classes_not_criticised_for_its_list_helpers(tmp_path: Path) -> None:
    """ScriptModule.save() writes torch.jit._pickle.build_intlist into data.pkl and every debug_pkl: the
    archive's findings are its TorchScript classes (__torch__.*, medium) and fickling's opinion, not critical."""
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 2))
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; archives of it are still met
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model.eval()).save(str(tmp_path / "script.pt"))
    report = scan([str(tmp_path / "script.pt")])
    assert report.findings, "its classes are not on the allowlist: there is something to say"
    assert max(f.severity for f in report.findings) == Severity.MEDIUM
    assert any("__torch__.torch.nn.modules" in f.message for f in report.findings if f.rule_id == "MLSEC-PICKLE-005")

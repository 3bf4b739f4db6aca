"""GGUF: bounded parsing of the header and tensor table, and chat templates read as Jinja syntax trees."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsec import scan
from mlsec.scanners._jinja import TemplateSyntax, injection_constructs
from tests.conftest import fixture

BENIGN = Path(fixture("models/benign/chat.gguf")).read_bytes()


def _file(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    return str(path)


def test_benign_file_raises_nothing_and_describes_the_model() -> None:
    report = scan([fixture("models/benign/chat.gguf")])
    assert report.findings == ()
    facts = report.artifacts[0].facts
    assert (facts["architecture"], facts["tensors"], facts["parameters"], facts["gguf_version"]) == ("llama", 2, 40, 3)


def test_ssti_chat_template_lists_the_constructs() -> None:
    (finding,) = scan([fixture("models/malicious/gguf_chat_template_ssti.gguf")]).findings
    assert finding.rule_id == "MLSEC-GGUF-002"
    assert "__subclasses__" in finding.evidence.facts["constructs"]


@pytest.mark.parametrize(
    "template",
    [
        "{{ messages.__class__ }}",
        "{{ messages['__class__'] }}",
        "{{ messages|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
        "{{ lipsum.__globals__ }}",
        "{{ cycler.next() }}",
        "{% include 'x' %}",
        "{% set a = '_' ~ '_class__' %}{{ messages|attr(a) }}",
    ],
)
def test_injection_constructs_are_found(template: str) -> None:
    assert injection_constructs(template) != []


@pytest.mark.parametrize(
    "template",
    [
        "{% for m in messages %}{{ m['role'] | upper }}: {{ m['content'] | trim }}{% endfor %}",
        "{% set ns = namespace(first=true) %}{% if ns.first %}{{ bos_token }}{% endif %}",
        "{{ raise_exception('roles must alternate') if messages[0]['role'] != 'user' }}{{ messages | tojson }}",
        "{% for m in messages %}{{ '<|' + m.role + '|>' + m.content.strip() }}{% endfor %}",
    ],
)
def test_hub_template_idioms_are_not_injection(template: str) -> None:
    assert injection_constructs(template) == []


def test_syntax_errors_carry_the_line() -> None:
    with pytest.raises(TemplateSyntax) as raised:
        injection_constructs("ok\n{% if %}")
    assert raised.value.line == 2


@pytest.mark.parametrize(
    ("offset", "value", "why"),
    [
        (4, struct.pack("<I", 9), "unsupported GGUF version 9"),
        (8, struct.pack("<Q", 1 << 40), "cannot fit"),
        (24, struct.pack("<Q", 1 << 50), "claims"),
    ],
)
def test_header_lies_are_malformed_findings(tmp_path: Path, offset: int, value: bytes, why: str) -> None:
    data = bytearray(BENIGN)
    data[offset : offset + len(value)] = value
    report = scan([_file(tmp_path, bytes(data))])
    assert report.errors == ()
    assert [f.rule_id for f in report.findings] == ["MLSEC-GGUF-001"]
    assert why in report.findings[0].evidence.summary


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=4, max_value=len(BENIGN) - 1), st.binary(min_size=1, max_size=8))
def test_any_byte_edit_is_a_finding_or_nothing_never_a_crash(tmp_path: Path, offset: int, patch: bytes) -> None:
    data = bytearray(BENIGN)
    data[offset : offset + len(patch)] = patch
    report = scan([_file(tmp_path, bytes(data))])
    assert report.errors == ()

"""Dependencies: manifests read, advisories matched by OSV ranges on real PyPA records, nothing unchecked passes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mlsec import scan
from mlsec.cli import main
from mlsec.dependencies.manifests import parse
from mlsec.dependencies.osv import evaluate
from mlsec.dependencies.vulndb import VulnDB, import_records
from tests.conftest import FIXTURES, fixture

ADVISORIES = FIXTURES / "advisories"
PILLOW_8_0_0 = {
    "PYSEC-2021-137", "PYSEC-2021-138", "PYSEC-2021-139", "PYSEC-2021-317", "PYSEC-2021-331", "PYSEC-2021-35",
    "PYSEC-2021-36", "PYSEC-2021-37", "PYSEC-2021-38", "PYSEC-2021-39", "PYSEC-2021-40", "PYSEC-2021-41",
    "PYSEC-2021-42", "PYSEC-2021-69", "PYSEC-2021-70", "PYSEC-2021-71", "PYSEC-2021-92", "PYSEC-2021-93",
    "PYSEC-2021-94", "PYSEC-2022-10", "PYSEC-2022-168", "PYSEC-2022-42979", "PYSEC-2022-8", "PYSEC-2022-9",
    "PYSEC-2023-175", "PYSEC-2023-227",
}  # fmt: skip


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "osv.sqlite"
    import_records(ADVISORIES, path)
    return path


def _advisories(report) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for f in report.findings:
        if "advisory" in f.evidence.facts:
            found.setdefault(str(f.evidence.facts["purl"]), set()).add(str(f.evidence.facts["advisory"]))
    return found


def _requirements(tmp_path: Path, text: str) -> str:
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    return str(path)


def test_acceptance_exactly_the_advisories_the_ranges_say(db: Path) -> None:
    report = scan([fixture("dependencies/acceptance/requirements.txt")], vulndb=db)
    assert _advisories(report) == {
        "pkg:pypi/pyyaml@5.3": {"PYSEC-2020-96", "PYSEC-2021-142"},  # not PYSEC-2020-176: fixed in 5.2b1, a pre-release
        "pkg:pypi/jinja2@2.10": {"PYSEC-2019-217", "PYSEC-2021-66"},
        "pkg:pypi/pillow@8.0.0": PILLOW_8_0_0,
        # torch 2.5.0+cu121: the one torch record is fixed in 1.13.1; a local build compares on 2.5.0
    }
    assert report.errors == ()
    assert {f.rule_id for f in report.findings} == {"MLSEC-DEP-005", "MLSEC-DEP-010"}  # unscored records; a 2024 database


def test_acceptance_without_a_database_exits_3_and_says_why(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["scan", fixture("dependencies/acceptance/requirements.txt")])
    assert result.exit_code == 3
    assert "4 dependencies could not be checked for vulnerabilities (4 no vulnerability database)" in result.output
    assert "mlsec db import" in result.output


@pytest.mark.parametrize(
    ("pin", "expected"),
    [
        ("torch==1.13.0+cu117", {"PYSEC-2022-43015"}),  # listed 1.13.0, compared on the public version
        ("torch==1.13.1+cu117", set()),  # a local build of the fixed release
        ("pyyaml==5.1b1", {"PYSEC-2018-49", "PYSEC-2021-142"}),  # before 5.1, so not 2020-96 (introduced in 5.1)
        ("pyyaml==5.2b1", {"PYSEC-2020-96", "PYSEC-2021-142"}),  # 5.2b1 is where 2020-176 is fixed
        ("redis==4.6.0", set()),  # PYSEC-2023-73 affects every redis, but it was withdrawn
        ("jinja2==2.11.3", set()),
        ("jinja2==2.11.3rc1", {"PYSEC-2021-66"}),  # before 2.11.3 includes its release candidates
    ],
)
def test_version_matching_traps(db: Path, tmp_path: Path, pin: str, expected: set[str]) -> None:
    report = scan([_requirements(tmp_path, pin + "\n")], vulndb=db)
    assert set().union(*_advisories(report).values()) == expected


def test_records_with_invalid_versions_survive_and_are_reported(db: Path, tmp_path: Path) -> None:
    report = scan([_requirements(tmp_path, "binderhub==0.1.0\nbuildbot==0.7.10\n")], vulndb=db)
    reasons = [s.reason for s in report.skipped]
    assert any("PYSEC-2021-371 not fully evaluated: 0.2.0-n653 not PEP 440" in r for r in reasons)
    assert report.errors == ()


def _record(rid: str, package: str, *, cvss: str | None = None, aliases: tuple[str, ...] = ()) -> dict:
    record = {
        "id": rid,
        "modified": "2099-01-01T00:00:00Z",
        "aliases": list(aliases),
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}],
            }
        ],
    }
    if cvss:
        record["severity"] = [{"type": "CVSS_V3", "score": cvss}]
    return record


@pytest.mark.parametrize(
    ("vector", "rule"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "MLSEC-DEP-001"),  # 9.8
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", "MLSEC-DEP-002"),  # 7.5
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N", "MLSEC-DEP-003"),  # 5.3
        ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", "MLSEC-DEP-004"),  # 1.6
        (None, "MLSEC-DEP-005"),
    ],
)
def test_cvss_picks_the_rule_and_the_score_reaches_the_gate(tmp_path: Path, vector: str | None, rule: str) -> None:
    (tmp_path / "osv").mkdir()
    (tmp_path / "osv" / "r.json").write_text(json.dumps(_record("GHSA-test-0001", "acme", cvss=vector)))
    import_records(tmp_path / "osv", tmp_path / "db.sqlite")
    (finding,) = scan([_requirements(tmp_path, "acme==1.0\n")], vulndb=tmp_path / "db.sqlite").findings
    assert finding.rule_id == rule
    assert ("cvss" in finding.evidence.facts) == (vector is not None)


def test_aliases_are_merged_and_malware_is_its_own_rule(tmp_path: Path) -> None:
    records = [
        _record("PYSEC-9999-1", "acme", aliases=("CVE-9999-1",)),
        _record("GHSA-aaaa-bbbb-cccc", "acme", aliases=("CVE-9999-1",)),
        _record("MAL-2099-1", "evilpkg"),
    ]
    (tmp_path / "osv").mkdir()
    for r in records:
        (tmp_path / "osv" / f"{r['id']}.json").write_text(json.dumps(r))
    import_records(tmp_path / "osv", tmp_path / "db.sqlite")
    report = scan([_requirements(tmp_path, "acme==1.0\nevilpkg==0.1\n")], vulndb=tmp_path / "db.sqlite")
    by_rule = {f.rule_id: f for f in report.findings}
    assert set(by_rule) == {"MLSEC-DEP-005", "MLSEC-DEP-009"}
    assert by_rule["MLSEC-DEP-005"].evidence.facts["ids"] == "CVE-9999-1, GHSA-aaaa-bbbb-cccc, PYSEC-9999-1"


def test_osv_scanner_layout_imports_the_same_records(tmp_path: Path, db: Path) -> None:
    layout = tmp_path / "osv" / "PyPI"
    layout.mkdir(parents=True)
    with zipfile.ZipFile(layout / "all.zip", "w") as zf:
        for path in sorted(ADVISORIES.rglob("*.yaml")):
            zf.writestr(f"{path.stem}.json", json.dumps(yaml.safe_load(path.read_text()), default=str))
    summary = import_records(tmp_path / "osv", tmp_path / "db.sqlite")
    assert summary.records == int(VulnDB(db).meta["records"])
    assert _advisories(scan([fixture("dependencies/acceptance/requirements.txt")], vulndb=tmp_path / "db.sqlite")) == _advisories(
        scan([fixture("dependencies/acceptance/requirements.txt")], vulndb=db)
    )


def test_a_stale_database_is_one_finding_per_scan(db: Path) -> None:
    report = scan([fixture("dependencies/locks")], vulndb=db)
    (stale,) = [f for f in report.findings if f.rule_id == "MLSEC-DEP-010"]
    assert stale.evidence.facts["database_date"] == "2023-11-03"
    manifest = next(a for a in report.artifacts if a.path.endswith("poetry.lock") and a.member is None)
    assert manifest.facts["vulnerability_db_date"] == "2023-11-03"


def test_every_dependency_is_an_artifact_with_a_purl(db: Path) -> None:
    report = scan([fixture("dependencies/risky/requirements.txt")], vulndb=db)
    packages = {a.member: a for a in report.artifacts if a.kind.value == "package"}
    assert packages["pkg:pypi/requests@2.31.0"].sha256 == "58cd2187c01e70e6e26505bca751777aa9f2ee0b7f4300988b709f44e013003f"
    assert packages["pkg:pypi/acme-tokenizers"].facts["requirement_kind"] == "vcs"
    assert "pkg:pypi/pyyaml@5.2b1" in packages  # through -r base-requirements.txt


@pytest.mark.parametrize(
    ("rel", "fmt", "expected"),
    [
        (
            "dependencies/pyproject/pyproject.toml",
            "pyproject",
            {"jinja2": "2.11.3", "pillow": None, "torch": "1.13.1+cu117", "pyyaml": "5.4", "fastapi": None},
        ),
        ("dependencies/locks/poetry.lock", "poetry-lock", {"jinja2": "2.10", "markupsafe": "2.1.5"}),
        ("dependencies/locks/uv.lock", "uv-lock", {"pillow": "10.0.1"}),
        ("dependencies/locks/pylock.toml", "pylock", {"pyyaml": "6.0.1", "loguru": "0.5.3"}),
        ("dependencies/locks/Pipfile.lock", "pipfile-lock", {"pillow": "8.0.0", "jinja2": "3.1.4"}),
        ("dependencies/conda/environment.yml", "conda-env", {"jinja2": "2.10.1", "torch": "2.5.0+cu121"}),
        ("dependencies/site-packages/PyYAML-5.3.dist-info/METADATA", "python-metadata", {"pyyaml": "5.3"}),
    ],
)
def test_each_manifest_format(rel: str, fmt: str, expected: dict[str, str | None]) -> None:
    path = fixture(rel)
    assert scan([path]).artifacts[0].format == fmt
    manifest = parse(fmt, Path(path).read_text(), path, on_disk=True)
    assert {d.name: d.version for d in manifest.dependencies} == expected


def test_requirements_syntax(tmp_path: Path) -> None:
    (tmp_path / "more.txt").write_text("Flask_Login[extra]==0.6.3 ; python_version >= '3.8'  # trailing comment\n")
    text = "-r more.txt\n# a comment\nnumpy==1.26.4 \\\n    --hash=sha256:aa --hash=sha256:bb\n-i https://index.example/simple\nbad requirement here\n"
    manifest = parse("requirements", _requirements(tmp_path, text) and text, str(tmp_path / "requirements.txt"), on_disk=True)
    deps = {d.name: d for d in manifest.dependencies}
    assert deps["flask-login"].version == "0.6.3"
    assert deps["flask-login"].extras == ("extra",)
    assert deps["flask-login"].markers == 'python_version >= "3.8"'
    assert deps["numpy"].hashes == ("sha256:aa", "sha256:bb")
    assert manifest.index_url == "https://index.example/simple"
    assert any("not a requirement" in p for p in manifest.problems)


def test_db_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["db", "import", str(ADVISORIES), "--db", str(tmp_path / "x.sqlite")])
    assert result.exit_code == 0, result.output
    assert "PyPI records" in result.output
    info = runner.invoke(main, ["db", "info", "--db", str(tmp_path / "x.sqlite")])
    assert "newest record 2023-11-03" in info.output
    missing = runner.invoke(main, ["db", "info", "--db", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 3


def test_evaluate_last_affected_and_limit() -> None:
    record = {"affected": [{"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": [
        {"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"last_affected": "1.4"}]},
        {"type": "ECOSYSTEM", "events": [{"introduced": "2.0"}, {"limit": "2.5"}]},
    ]}]}  # fmt: skip
    assert [evaluate(record, "x", v).affected for v in ("0.9", "1.0", "1.4", "1.4.1", "2.1", "2.5", "3.0")] == [
        False, True, True, False, True, False, False,
    ]  # fmt: skip


@pytest.mark.parametrize("include", ["/etc/passwd", "../../../../etc/passwd"])
def test_includes_outside_the_manifest_directory_are_not_read(tmp_path: Path, include: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    path = _requirements(project, f"-r {include}\n")
    report = scan([path])
    assert any("leaves the manifest's directory; not read" in s.reason for s in report.skipped)
    assert "root:" not in report.to_json()


@pytest.mark.parametrize("text", [b"\x04", b"dependencies: [unclosed", b"a: b: c"])
def test_a_conda_environment_that_is_not_yaml_is_the_files_fault(tmp_path: Path, text: bytes) -> None:
    """PyYAML's errors are not ValueErrors: the manifest reader says them as one, so the scan reports an
    unreadable manifest (exit 3), not a scanner bug."""
    (tmp_path / "environment.yml").write_bytes(text)
    report = scan([str(tmp_path / "environment.yml")])
    assert [(e.error_type, e.is_bug) for e in report.errors] == [("InputError", False)]
    assert "cannot read conda-env manifest: not YAML" in report.errors[0].reason

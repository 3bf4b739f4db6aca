"""Signing and verification: round trips with local keys, every tampering rejected with the reason,
a real public keyless bundle verified offline, and signatures made earlier still verifying."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlsec.cli import main
from mlsec.signing import PREDICATE_BOM, VerificationFailed, keygen, sign, verify
from tests.conftest import FIXTURES, fixture

PUBLIC = FIXTURES / "signatures" / "public"
KEPT = sorted((FIXTURES / "signatures" / "kept").iterdir())
RFC8785_IDENTITY = "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    keygen(tmp_path / "k.pem", tmp_path / "k.pub")
    return tmp_path / "k.pem", tmp_path / "k.pub"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    directory.mkdir()
    shutil.copy(fixture("models/benign/mlp.onnx"), directory / "mlp.onnx")
    (directory / "tokenizer.json").write_text('{"vocab": ["a", "b"]}')
    return directory


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_model_directory_round_trip(model: Path, keys: tuple[Path, Path]) -> None:
    bundle = sign(model, key=keys[0])
    assert bundle == model.with_name("model.sigstore.json")
    assert verify(model, bundle, key=keys[1]).kind == "model"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda m: (m / "mlp.onnx").write_bytes((m / "mlp.onnx").read_bytes()[:-1] + b"\x00"), "changed since signing: mlp.onnx"),
        (lambda m: (m / "extra.pkl").write_bytes(b"x"), "added since signing: extra.pkl"),
        (lambda m: (m / "tokenizer.json").unlink(), "removed since signing: tokenizer.json"),
    ],
)
def test_tampered_models_are_rejected_with_exit_1(model: Path, keys: tuple[Path, Path], tamper, reason: str) -> None:  # noqa: ANN001
    sign(model, key=keys[0])
    tamper(model)
    code, out = _run("verify", str(model), "--key", str(keys[1]))
    assert code == 1
    assert reason in out


def test_a_wrong_key_is_rejected(model: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    sign(model, key=keys[0])
    keygen(tmp_path / "other.pem", tmp_path / "other.pub")
    code, out = _run("verify", str(model), "--key", str(tmp_path / "other.pub"))
    assert code == 1
    assert "verification FAILED" in out


def test_bom_and_report_are_in_toto_attestations(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    report, bom = tmp_path / "report.json", tmp_path / "bom.cdx.json"
    assert _run("scan", fixture("examples/demo"), "-o", f"json={report}", "-o", f"mlbom={bom}")[0] == 1
    for path, kind in ((bom, "bom"), (report, "report")):
        bundle = sign(path, key=keys[0])
        envelope = json.loads(bundle.read_text())["dsseEnvelope"]
        assert envelope["payloadType"] == "application/vnd.in-toto+json"
        verified = verify(path, bundle, key=keys[1])
        assert verified.kind == kind
    statement = json.loads(
        __import__("base64").b64decode(
            json.loads((tmp_path / "bom.cdx.json.sigstore.json").read_text())["dsseEnvelope"]["payload"]
        )
    )
    assert statement["predicateType"] == PREDICATE_BOM
    assert statement["predicate"]["bomFormat"] == "CycloneDX"
    bom.write_text(bom.read_text().replace('"mlsec"', '"mlsec-evil"', 1))
    with pytest.raises(VerificationFailed, match="is not what was signed"):
        verify(bom, tmp_path / "bom.cdx.json.sigstore.json", key=keys[1])


def test_a_real_public_keyless_bundle_verifies_offline() -> None:
    wheel = PUBLIC / "rfc8785-0.1.2-py3-none-any.whl"
    code, out = _run("verify", str(wheel), "--identity", RFC8785_IDENTITY, "--issuer", GITHUB_ISSUER)
    assert code == 0, out
    assert "c4e92e9ecc828bef2aa7dba1de8ac983511f7532a0df11c770d39099a25cf201" in out


def test_the_public_bundle_rejects_another_identity_and_other_bytes(tmp_path: Path) -> None:
    wheel = PUBLIC / "rfc8785-0.1.2-py3-none-any.whl"
    bundle = PUBLIC / "rfc8785-0.1.2-py3-none-any.whl.sigstore.json"
    assert (
        _run("verify", str(wheel), "--bundle", str(bundle), "--identity", "someone@example.com", "--issuer", GITHUB_ISSUER)[0]
        == 1
    )
    changed = tmp_path / wheel.name
    changed.write_bytes(wheel.read_bytes() + b"\x00")
    code, out = _run("verify", str(changed), "--bundle", str(bundle), "--identity", RFC8785_IDENTITY, "--issuer", GITHUB_ISSUER)
    assert code == 1
    assert "keyless verification failed" in out


@pytest.mark.parametrize("kept", KEPT, ids=[k.name for k in KEPT])
def test_signatures_made_earlier_still_verify(kept: Path) -> None:
    public = kept / "signing.pub"
    assert verify(kept / "model", kept / "model.sigstore.json", key=public).kind == "model"
    assert verify(kept / "bom.cdx.json", kept / "bom.cdx.json.sigstore.json", key=public).kind == "bom"
    assert verify(kept / "report.json", kept / "report.json.sigstore.json", key=public).kind == "report"


def test_keyless_without_an_identity_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "SIGSTORE_ID_TOKEN", "GITHUB_ACTIONS"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "bom.cdx.json"
    path.write_text('{"bomFormat": "CycloneDX", "specVersion": "1.6"}')
    code, out = _run("sign", str(path), "--keyless")
    assert code == 3
    assert "OIDC identity" in out


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    assert _run("keygen", "--private", str(tmp_path / "a.key"), "--public", str(tmp_path / "a.pub"))[0] == 0
    assert oct((tmp_path / "a.key").stat().st_mode & 0o777) == "0o600"
    code, out = _run("keygen", "--private", str(tmp_path / "a.key"), "--public", str(tmp_path / "b.pub"))
    assert code == 3
    assert "refusing to overwrite" in out

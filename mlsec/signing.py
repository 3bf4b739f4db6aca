"""Sign and verify what mlsec produces and what it guards: Sigstore bundles, offline when keys are local.

- Models (files or directories) through model-signing: per-file sha256 digests in an in-toto
  Statement (predicate `https://model_signing/signature/v1.0`), DSSE in a Sigstore bundle.
- ML-BOMs and reports as in-toto attestations (predicate `https://cyclonedx.org/bom` for BOMs,
  as GitHub's attestations and `cosign attest --type cyclonedx` do; `https://mlsec.dev/report/v1`
  for reports), DSSE in a Sigstore bundle: with a local ECDSA key through `cryptography`, or
  keyless through sigstore-python when an OIDC identity is available (CI).
- Verification with the public key, or with an identity and issuer against the trust root that
  ships with sigstore-python (offline). Any mismatch raises VerificationFailed with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsec.errors import InputError, MlsecError

PREDICATE_MODEL = "https://model_signing/signature/v1.0"
PREDICATE_BOM = "https://cyclonedx.org/bom"
PREDICATE_REPORT = "https://mlsec.dev/report/v1"
STATEMENT = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


class VerificationFailed(MlsecError):
    """A signature does not hold: wrong key or identity, or the signed bytes changed."""


@dataclass(frozen=True, slots=True)
class Verified:
    path: str
    kind: str  # model, bom, report, artifact
    signer: str  # "key sha256:…" or "identity <id> from <issuer>"
    sha256: str | None  # the subject digest, when there is one


def keygen(private: Path, public: Path) -> None:
    """A new ECDSA P-256 key pair as PEM files; the private one readable by its owner only."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    for path in (private, public):
        if path.exists():
            raise InputError("refusing to overwrite an existing key", path=str(path))
    for path in (private, public):
        path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def kind_of(path: Path) -> str:
    """model (a directory, or any file that is not one of ours), bom or report."""
    if path.is_dir() or path.stat().st_size > 256 << 20:
        return "model"
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return "model"
    if isinstance(doc, dict) and doc.get("bomFormat") == "CycloneDX":
        return "bom"
    if isinstance(doc, dict) and doc.get("schema_version") == "mlsec.report/1":
        return "report"
    return "model"


def default_bundle(path: Path) -> Path:
    return path.with_name(path.name + ".sigstore.json")


def sign(path: Path, *, key: Path | None = None, keyless: bool = False, bundle: Path | None = None) -> Path:
    """Sign `path` (a model file or directory, an ML-BOM, a report); returns the bundle written."""
    if bool(key) == keyless:
        raise InputError("sign with exactly one of a private key (--key) or --keyless")
    if not path.exists():
        raise InputError("nothing to sign here", path=str(path))
    bundle = bundle or default_bundle(path)
    kind = kind_of(path)
    if kind == "model":
        _sign_model(path, key, bundle)
    else:
        statement = _statement(path, PREDICATE_BOM if kind == "bom" else PREDICATE_REPORT)
        text = _sign_dsse_with_key(statement, key) if key else _sign_dsse_keyless(statement)
        bundle.write_text(text)
    return bundle


def _sign_model(path: Path, key: Path | None, bundle: Path) -> None:
    from model_signing import signing  # noqa: PLC0415 - heavy, lazy

    config = signing.Config()
    if key:
        config.use_elliptic_key_signer(private_key=key)
    else:
        config.use_sigstore_signer()
    try:
        config.sign(path, bundle)
    except Exception as exc:  # noqa: BLE001 - model-signing raises ValueError, OSError, sigstore errors
        raise MlsecError(f"model-signing could not sign: {exc}", path=str(path)) from None


def _statement(path: Path, predicate_type: str) -> dict[str, Any]:
    data = path.read_bytes()
    return {
        "_type": STATEMENT,
        "subject": [{"name": path.name, "digest": {"sha256": hashlib.sha256(data).hexdigest()}}],
        "predicateType": predicate_type,
        "predicate": json.loads(data),
    }


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _key_hint(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _sign_dsse_with_key(statement: dict[str, Any], key_path: Path) -> str:
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=_password())
    except (ValueError, TypeError, OSError) as exc:
        raise InputError(f"not a usable private key: {exc}", path=str(key_path)) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError("only ECDSA keys sign (mlsec keygen makes one)", path=str(key_path))
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    signature = key.sign(_pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": _key_hint(key.public_key())}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
        },
    }
    return json.dumps(bundle, indent=2) + "\n"


def _password() -> bytes | None:
    value = os.environ.get("MLSEC_KEY_PASSWORD")
    return value.encode() if value else None


def _sign_dsse_keyless(statement: dict[str, Any]) -> str:
    """Fulcio certificate + Rekor entry through sigstore-python, with the CI's ambient OIDC identity."""
    from sigstore import dsse  # noqa: PLC0415 - network client, lazy
    from sigstore.models import ClientTrustConfig  # noqa: PLC0415
    from sigstore.oidc import IdentityToken, detect_credential  # noqa: PLC0415
    from sigstore.sign import SigningContext  # noqa: PLC0415

    try:
        credential = detect_credential()
    except Exception as exc:  # noqa: BLE001 - sigstore raises its own error types
        raise InputError(f"keyless signing needs an OIDC identity: {exc}") from None
    if credential is None:
        raise InputError("keyless signing needs an OIDC identity (in GitHub Actions: permissions: id-token: write)")
    try:
        context = SigningContext.from_trust_config(ClientTrustConfig.production())
        with context.signer(IdentityToken(credential)) as signer:
            bundle = signer.sign_dsse(dsse.StatementBuilder(**_builder_args(statement)).build())
    except Exception as exc:  # noqa: BLE001
        raise MlsecError(f"keyless signing failed: {exc}") from None
    return bundle.to_json()


def _builder_args(statement: dict[str, Any]) -> dict[str, Any]:
    from sigstore import dsse  # noqa: PLC0415

    subjects = [dsse.Subject(name=s["name"], digest={"sha256": s["digest"]["sha256"]}) for s in statement["subject"]]
    return {"subjects": subjects, "predicate_type": statement["predicateType"], "predicate": statement["predicate"]}


def verify(
    path: Path, bundle: Path, *, key: Path | None = None, identity: str | None = None, issuer: str | None = None
) -> Verified:
    """Check `bundle` over `path`; raises VerificationFailed with the reason when it does not hold."""
    logging.getLogger("sigstore._internal.tuf").setLevel(logging.ERROR)  # "offline mode" is the point here
    if bool(key) == bool(identity or issuer) or (identity is None) != (issuer is None):
        raise InputError("verify with a public key (--key), or with both --identity and --issuer")
    try:
        doc = json.loads(bundle.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"not a Sigstore bundle: {exc}", path=str(bundle)) from None
    if "messageSignature" in doc:
        return _verify_artifact_keyless(path, bundle, identity, issuer)
    envelope = doc.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        raise VerificationFailed("the bundle holds neither a DSSE envelope nor a message signature", path=str(bundle))
    try:
        statement = json.loads(base64.b64decode(envelope["payload"]))
    except (KeyError, ValueError) as exc:
        raise VerificationFailed(f"the bundle's payload is not an in-toto statement: {exc}", path=str(bundle)) from None
    if statement.get("predicateType") == PREDICATE_MODEL:
        return _verify_model(path, bundle, key, identity, issuer)
    if key:
        _check_dsse_with_key(envelope, key, bundle)
        signer = f"key {_key_file_hint(key)}"
    else:
        statement = _check_dsse_keyless(bundle, identity, issuer)
        signer = f"identity {identity} from {issuer}"
    digest = _subject_digest(statement, path, bundle)
    kind = {PREDICATE_BOM: "bom", PREDICATE_REPORT: "report"}.get(statement.get("predicateType"), "artifact")
    return Verified(str(path), kind, signer, digest)


def key_identity(public_key: Path) -> str:
    """The signer a signature made with this key's private half verifies as ("key sha256:...")."""
    return f"key {_key_file_hint(public_key)}"


def _key_file_hint(key: Path) -> str:
    return "sha256:" + _key_hint(_public_key(key))[:16]


def _public_key(key: Path) -> Any:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    try:
        return serialization.load_pem_public_key(key.read_bytes())
    except (ValueError, OSError) as exc:
        raise InputError(f"not a public key: {exc}", path=str(key)) from None


def _check_dsse_with_key(envelope: dict[str, Any], key: Path, bundle: Path) -> None:
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    public = _public_key(key)
    payload = base64.b64decode(envelope["payload"])
    for signature in envelope.get("signatures", []):
        try:
            public.verify(base64.b64decode(signature["sig"]), _pae(envelope["payloadType"], payload), ec.ECDSA(hashes.SHA256()))
            return
        except (InvalidSignature, KeyError, ValueError):
            continue
    raise VerificationFailed(f"no signature in the bundle was made by the key {key}", path=str(bundle))


def _check_dsse_keyless(bundle: Path, identity: str | None, issuer: str | None) -> dict[str, Any]:
    from sigstore.errors import Error as SigstoreError  # noqa: PLC0415
    from sigstore.models import Bundle  # noqa: PLC0415
    from sigstore.verify import Verifier  # noqa: PLC0415
    from sigstore.verify.policy import Identity  # noqa: PLC0415

    try:
        parsed = Bundle.from_json(bundle.read_bytes())
        _, payload = Verifier.production(offline=True).verify_dsse(parsed, Identity(identity=str(identity), issuer=str(issuer)))
    except (SigstoreError, ValueError) as exc:
        raise VerificationFailed(f"keyless verification failed: {exc}", path=str(bundle)) from None
    return json.loads(payload)


def _verify_artifact_keyless(path: Path, bundle: Path, identity: str | None, issuer: str | None) -> Verified:
    from sigstore.errors import Error as SigstoreError  # noqa: PLC0415
    from sigstore.models import Bundle  # noqa: PLC0415
    from sigstore.verify import Verifier  # noqa: PLC0415
    from sigstore.verify.policy import Identity  # noqa: PLC0415

    if not identity:
        raise InputError("a keyless bundle is verified with --identity and --issuer", path=str(bundle))
    data = path.read_bytes()
    try:
        Verifier.production(offline=True).verify_artifact(
            data, Bundle.from_json(bundle.read_bytes()), Identity(identity=identity, issuer=str(issuer))
        )
    except (SigstoreError, ValueError) as exc:
        raise VerificationFailed(f"keyless verification failed: {exc}", path=str(path)) from None
    return Verified(str(path), "artifact", f"identity {identity} from {issuer}", hashlib.sha256(data).hexdigest())


def _subject_digest(statement: dict[str, Any], path: Path, bundle: Path) -> str:
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    digests = [s.get("digest", {}).get("sha256") for s in statement.get("subject", [])]
    if actual not in digests:
        raise VerificationFailed(
            f"the file's sha256 {actual[:16]}… is not what was signed ({', '.join(str(d)[:16] + '…' for d in digests)})",
            path=str(path),
        )
    return actual


def _verify_model(path: Path, bundle: Path, key: Path | None, identity: str | None, issuer: str | None) -> Verified:
    from model_signing import verifying  # noqa: PLC0415 - heavy, lazy

    config = verifying.Config()
    if key:
        config.use_elliptic_key_verifier(public_key=key)
    else:
        config.use_sigstore_verifier(identity=str(identity), oidc_issuer=str(issuer))
    try:
        config.verify(path, bundle)
    except Exception as exc:  # noqa: BLE001 - model-signing raises ValueError for every mismatch
        raise VerificationFailed(f"model signature does not hold: {_short(exc)}", path=str(path)) from None
    signer = f"key {_key_file_hint(key)}" if key else f"identity {identity} from {issuer}"
    return Verified(str(path), "model", signer, None)


def _short(exc: Exception) -> str:
    """model-signing's mismatch report, reduced to the files concerned."""
    text = str(exc)
    parts = []
    for label, pattern in (
        ("added since signing", r"Extra files found in model \\?'[^']*?\\?': ([^\"'\]]+)"),
        ("removed since signing", r"Missing files in model \\?'[^']*?\\?': ([^\"'\]]+)"),
        ("changed since signing", r"Hash mismatch for \\?'([^'\\]+)"),
    ):
        names = [n.strip() for found in re.findall(pattern, text) for n in found.split(",")]
        if names:
            parts.append(f"{label}: {', '.join(names)}")
    if parts:
        return "; ".join(parts)
    return text if len(text) < 400 else text[:400] + "…"

"""`mlsec keygen`, `mlsec sign`, `mlsec verify`: Sigstore bundles for models, ML-BOMs and reports."""

from __future__ import annotations

from pathlib import Path

import click

from mlsec.audit_records import record_signature
from mlsec.cli.exit_codes import ExitCode
from mlsec.cli.options import ledger_option, record
from mlsec.signing import VerificationFailed, default_bundle, keygen, sign, verify


@click.command("keygen")
@click.option(
    "--private",
    "private",
    default="mlsec.key",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Private key (PEM) to write.",
)
@click.option(
    "--public",
    "public",
    default="mlsec.pub",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Public key (PEM) to write.",
)
def keygen_command(private: str, public: str) -> None:
    """Make an ECDSA P-256 key pair for offline signing (MLSEC_KEY_PASSWORD is not needed for it)."""
    keygen(Path(private), Path(public))
    click.echo(f"wrote {private} (keep it secret) and {public}")


@click.command("sign")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="Private ECDSA key (PEM) to sign with, offline.")
@click.option(
    "--keyless", is_flag=True, help="Sign with the CI's OIDC identity through Sigstore (needs the network and id-token)."
)
@click.option(
    "--bundle", "bundle", type=click.Path(dir_okay=False), help="Bundle path (one PATH only; default: PATH.sigstore.json)."
)
@ledger_option
@click.pass_context
def sign_command(
    ctx: click.Context, paths: tuple[str, ...], key: str | None, keyless: bool, bundle: str | None, ledger_path: str | None
) -> None:
    """Sign model files or directories (model-signing), ML-BOMs and reports (in-toto attestations)."""
    if bundle and len(paths) > 1:
        raise click.UsageError("--bundle names one bundle: give one PATH")
    recorded, method = True, "keyless" if keyless else "key"
    for path in paths:
        written = sign(Path(path), key=Path(key) if key else None, keyless=keyless, bundle=Path(bundle) if bundle else None)
        click.echo(f"signed {path} -> {written}")
        recorded = (
            record(ledger_path, lambda ledger, p=path, w=written: record_signature(ledger, Path(p), w, method)) and recorded
        )
    if not recorded:
        ctx.exit(int(ExitCode.INCOMPLETE))


@click.command("verify")
@click.argument("path", type=click.Path(exists=True))
@click.option(
    "--bundle", "bundle", type=click.Path(exists=True, dir_okay=False), help="The Sigstore bundle (default: PATH.sigstore.json)."
)
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="Public key (PEM) the signature must come from.")
@click.option("--identity", help="Keyless: the signer identity the certificate must name (e-mail or workflow URI).")
@click.option("--issuer", help="Keyless: the OIDC issuer (e.g. https://token.actions.githubusercontent.com).")
@click.pass_context
def verify_command(
    ctx: click.Context, path: str, bundle: str | None, key: str | None, identity: str | None, issuer: str | None
) -> None:
    """Verify a signature offline; exit 0 when it holds, 1 (with the reason) when it does not."""
    target = Path(path)
    try:
        verified = verify(
            target,
            Path(bundle) if bundle else default_bundle(target),
            key=Path(key) if key else None,
            identity=identity,
            issuer=issuer,
        )
    except VerificationFailed as exc:
        click.echo(f"mlsec: verification FAILED: {exc.diagnostics()}", err=True)
        ctx.exit(int(ExitCode.BLOCKED))
    click.echo(
        f"verified {verified.kind} {verified.path}: signed by {verified.signer}"
        + (f", sha256 {verified.sha256}" if verified.sha256 else "")
    )

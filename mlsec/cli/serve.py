"""`mlsec serve`: OPA's REST Data API over the embedded engine, preloaded with the gates."""

from __future__ import annotations

import click

from mlsec.cli.options import as_paths
from mlsec.policy_engines import PolicySet
from mlsec.policy_engines.opa_server import policy_id
from mlsec.policy_server import PolicyStore, make_server


@click.command("serve")
@click.option("--addr", default="127.0.0.1:8181", show_default=True, metavar="HOST:PORT", help="Address to listen on.")
@click.option(
    "--policies", "policy_dirs", multiple=True, type=click.Path(exists=True), help="Rego policies to preload (repeatable)."
)
@click.option("--data", "data_dirs", multiple=True, type=click.Path(exists=True), help="Data documents to preload (repeatable).")
@click.option("--no-bundled-policies", is_flag=True, help="Start without the shipped gates.")
def serve_command(addr: str, policy_dirs: tuple[str, ...], data_dirs: tuple[str, ...], no_bundled_policies: bool) -> None:
    """Serve policies over OPA's REST API (PUT/GET/DELETE /v1/policies, GET/PUT/POST /v1/data) until interrupted."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{addr!r} is not HOST:PORT", param_hint="--addr")
    policies = (
        PolicySet.load(as_paths(policy_dirs), as_paths(data_dirs), bundled_policies=not no_bundled_policies)
        if (policy_dirs or not no_bundled_policies)
        else None
    )
    store = PolicyStore({policy_id(f): f.text for f in policies.files} if policies else {}, policies.data if policies else {})
    server = make_server(host.strip("[]") or "127.0.0.1", int(port), store)
    bound = server.server_address
    click.echo(f"mlsec serve: OPA REST API on http://{bound[0]}:{bound[1]} ({len(store.policies())} policies)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.close()

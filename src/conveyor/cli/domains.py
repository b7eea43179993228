"""``conveyor domains`` and ``conveyor certs``: an environment's own domains and their certificates.

Thin over the API (``/apps/{app}/domains``, ``/domains``, ``/domains/{name}/certificate``):
the certificate files are read here and sent as PEM text; the control plane
checks them and stores the key sealed (encrypted with its key ring). ``--json`` for scripts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from conveyor.cli import output as o
from conveyor.cli.main import JsonOpt, run  # registered from main, after it is loaded
from conveyor.cli.client import Api, CliError, ExitCode


domains_app = typer.Typer(help="An environment's own domains (served over HTTPS once a certificate covers them).", no_args_is_help=True)
certs_app = typer.Typer(help="Certificates for domains (from files).", no_args_is_help=True)



def _cert_text(d: dict[str, Any]) -> str:
    c = d.get("certificate")
    if not c:
        return "-"
    expires = time.strftime("%Y-%m-%d", time.gmtime(c["not_after"]))
    return f"{c['source']}, expires {expires} ({c['days_left']:.0f} days)"


def _status(d: dict[str, Any]) -> str:
    st = d["status"]
    text = {"ok": "[green]https[/green]", "none": "[dim]http only[/dim]", "expired": "[red]expired[/red]",
            "pending": "[yellow]pending[/yellow]", "issuing": "[yellow]issuing[/yellow]",
            "renewing": "[green]https[/green] [yellow]renewing[/yellow]"}.get(st, f"[red]{escape(st)}[/red]")
    return text + (f" [red]{escape(d['error'])}[/red]" if d.get("error") else "")


@domains_app.command("add")
def domains_add(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    name: Annotated[str, typer.Argument(metavar="DOMAIN", help="A hostname you own, e.g. app.example.com")],
    env: Annotated[str, typer.Option("--env", "-e", help="The environment it serves.")] = "production",
    no_redirect: Annotated[bool, typer.Option("--no-redirect", help="Keep serving plain HTTP (no 308 to HTTPS).")] = False,
    hsts: Annotated[int, typer.Option("--hsts", help="Strict-Transport-Security max-age in seconds (0: none).")] = 0,
    no_acme: Annotated[bool, typer.Option("--no-acme", help="Do not obtain its certificate by ACME (add one with `conveyor certs add`).")] = False,
    json: JsonOpt = False,
) -> None:
    """Route DOMAIN to APP's environment. Point its DNS at the router; add a certificate with `conveyor certs add`."""

    def body() -> None:
        with Api() as api:
            d = api.post(f"/apps/{app_name}/domains", json={"name": name, "env": env, "redirect": not no_redirect, "hsts_max_age": hsts, "acme": not no_acme})
        if json:
            o.emit_json(d)
        else:
            then = ("its certificate is being obtained by ACME (see `conveyor domains list`)" if d["acme"] else
                    f"add its certificate: `conveyor certs add {d['name']} --cert FULLCHAIN.pem --key KEY.pem`")
            o.out.print(f"{d['name']} now routes to {d['app']}/{d['env']}; {then}.")

    run(body)


@domains_app.command("list")
def domains_list(
    app_name: Annotated[str | None, typer.Argument(metavar="[APP]", help="Only this app's domains.")] = None,
    json: JsonOpt = False,
) -> None:
    """Domains, the environment each serves, and where its certificate stands."""

    def body() -> None:
        with Api() as api:
            ds = api.get(f"/apps/{app_name}/domains" if app_name else "/domains")
        if json:
            o.emit_json(ds)
            return
        if not ds:
            o.out.print("No domains yet. Add one with `conveyor domains add APP DOMAIN`.")
            return
        o.table(None, ["DOMAIN", "APP", "ENV", "STATUS", "CERTIFICATE", "REDIRECT", "HSTS"],
                [[d["name"], d["app"], d["env"], _status(d), _cert_text(d), "308" if d["redirect"] else "off",
                  str(d["hsts_max_age"]) if d["hsts_max_age"] else "-"] for d in ds])

    run(body)


@domains_app.command("remove")
def domains_remove(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    name: Annotated[str, typer.Argument(metavar="DOMAIN")],
    json: JsonOpt = False,
) -> None:
    """Stop routing DOMAIN (its certificate goes with it)."""

    def body() -> None:
        with Api() as api:
            api.request("DELETE", f"/apps/{app_name}/domains/{name}")
        o.emit_json({"removed": name}) if json else o.out.print(f"{name} removed from {app_name}.")

    run(body)


@certs_app.command("add")
def certs_add(
    name: Annotated[str, typer.Argument(metavar="DOMAIN")],
    cert: Annotated[Path, typer.Option("--cert", help="PEM file: the certificate, then its chain.")],
    key: Annotated[Path, typer.Option("--key", help="PEM file: its private key (unencrypted).")],
    json: JsonOpt = False,
) -> None:
    """Serve DOMAIN over HTTPS with this certificate (checked against the key, the domain and its dates)."""

    def body() -> None:
        try:
            cert_pem, key_pem = cert.read_text(), key.read_text()
        except (OSError, UnicodeError) as e:
            raise CliError(f"cannot read {e.filename if isinstance(e, OSError) else 'the files'}: {e}", ExitCode.USAGE) from e
        with Api() as api:
            d = api.request("PUT", f"/domains/{name}/certificate", json={"cert_pem": cert_pem, "key_pem": key_pem})
        if json:
            o.emit_json(d)
        else:
            o.out.print(f"{name}: certificate installed ({_cert_text(d)}); routers serve it on their next poll.")

    run(body)


def register(app: typer.Typer) -> None:
    app.add_typer(domains_app, name="domains")
    app.add_typer(certs_app, name="certs")

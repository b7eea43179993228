"""Certificates from an ACME CA (RFC 8555, HTTP-01), obtained when a domain is added and renewed
at two thirds of their lifetime, with certbot's ``acme`` library doing the protocol.

Configuration (environment of ``conveyor server`` / ``conveyor up``; ACME is off without a directory):

* ``CONVEYOR_ACME_DIRECTORY``: ``letsencrypt``, ``letsencrypt-staging`` or a directory URL
  (any RFC 8555 CA, e.g. pebble in the tests);
* ``CONVEYOR_ACME_EMAIL``: the account's contact (optional);
* ``CONVEYOR_ACME_CA_BUNDLE``: a CA file to trust for the directory's own HTTPS (a private CA).

The loop is level-triggered (every 2 s and when poked on ``acme``): it reads the ACME
domains, asks the pure ``domain.certs.acme_action`` what each needs, and runs one order at a
time in a thread. An order: a fresh key and CSR, ``new_order``, for each authorization the
HTTP-01 challenge put in the routing table (routers answer ``/.well-known/acme-challenge/``
themselves), a wait until every live router holds that table, ``answer_challenge``,
``poll_and_finalize``; the chain is checked like a file certificate and replaces the old one.
A failed order leaves the previous certificate in place, sets the domain's status to
``failed`` with the CA's reason (``domains list``, the UI), records a ``certificate_failed``
event and retries with backoff. Only the orchestrator's leader runs it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.domain.certs import acme_action, acme_retry_delay, check_certificate
from conveyor.services.state import ControlPlane
from conveyor.store import domains as store
from conveyor.store import repo

log = logging.getLogger("conveyor.acme")

DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
ACCOUNT_KEY_FILE = "acme-account.pem"


@dataclass(frozen=True)
class AcmeSettings:
    directory: str
    email: str | None = None
    ca_bundle: str | None = None
    retry_base: float = 30.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> AcmeSettings | None:
        env = os.environ if environ is None else environ
        d = env.get("CONVEYOR_ACME_DIRECTORY", "").strip()
        if not d:
            return None
        return cls(
            directory=DIRECTORIES.get(d, d),
            email=env.get("CONVEYOR_ACME_EMAIL") or None,
            ca_bundle=env.get("CONVEYOR_ACME_CA_BUNDLE") or None,
            retry_base=float(env.get("CONVEYOR_ACME_RETRY_BASE", "30")),
        )


def enabled() -> bool:
    return AcmeSettings.from_env() is not None


class AcmeIssuer:
    """The control plane's ACME loop (see the module docstring)."""

    def __init__(self, cp: ControlPlane, settings: AcmeSettings) -> None:
        self.cp = cp
        self.settings = settings
        self._client: Any = None

    async def run(self) -> None:
        while True:
            try:
                leader = self.cp.orchestrator is None or self.cp.orchestrator.leader
                if leader:
                    await self.tick()
            except Exception:  # noqa: BLE001 - the loop must survive anything; the next tick retries
                log.exception("ACME loop failed")
            await self.cp.notifier.wait("acme", 2.0)

    async def tick(self) -> None:
        now = self.cp.clock()
        with self.cp.engine.connect() as conn:
            rows = store.acme_candidates(conn)
        for r in rows:
            action = acme_action(r["source"], r["not_before"], r["not_after"], r["next_attempt_at"], now)
            if action is not None:
                await self.order(r["name"], action, int(r["attempts"]))

    async def order(self, domain: str, action: str, attempts: int) -> None:
        with self.cp.engine.begin() as conn:
            store.set_status(conn, domain, "issuing" if action == "issue" else "renewing", "")
        try:
            fullchain, key_pem = await asyncio.to_thread(self._order_blocking, domain)
            info = check_certificate(fullchain.encode(), key_pem.encode(), domain, self.cp.clock())
        except Exception as e:  # noqa: BLE001 - every failure is recorded and retried
            reason = _reason(e)
            delay = acme_retry_delay(attempts + 1, self.settings.retry_base)
            with self.cp.engine.begin() as conn:
                store.clear_challenges(conn, domain)
                row = store.get(conn, domain)
                had = any(d["name"] == domain and d["fingerprint"] for d in store.listing(conn))
                store.set_status(conn, domain, "failed", reason, attempts=attempts + 1, next_attempt_at=self.cp.clock() + delay)
                repo.record_event(
                    conn, "certificate_failed",
                    f"ACME {action} for {domain} failed: {reason}; retrying in {delay:.0f}s"
                    + ("; the previous certificate stays in use" if had else ""),
                    app=row["app"] if row else None, env=row["env"] if row else None, actor="acme",
                    data={"domain": domain, "attempts": attempts + 1},
                )
            self.cp.notifier.poke("routing")
            log.warning("ACME %s for %s failed: %s", action, domain, reason)
            return
        from conveyor.services.domains import save_certificate  # domains imports this module

        with self.cp.engine.begin() as conn:
            store.clear_challenges(conn, domain)
            row = store.get(conn, domain)
            if row is None:
                return  # removed meanwhile
            save_certificate(self.cp, conn, domain, info, "acme", self.cp.clock())
            store.set_status(conn, domain, "ok", "", attempts=0, next_attempt_at=0.0)
            repo.record_event(
                conn, "certificate_issued" if action == "issue" else "certificate_renewed",
                f"certificate for {domain} {'issued' if action == 'issue' else 'renewed'} by ACME "
                f"(expires {time.strftime('%Y-%m-%d %H:%M', time.gmtime(info.not_after))} UTC)",
                app=row["app"], env=row["env"], actor="acme", data={"domain": domain, "fingerprint": info.fingerprint},
            )
        self.cp.notifier.poke("routing")

    # -- the protocol, in a thread -------------------------------------------

    def _account_key(self) -> Any:
        import josepy as jose
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        path = Path(self.cp.settings.data_dir) / ACCOUNT_KEY_FILE
        if not path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise RuntimeError(f"{path} is not an RSA key: delete it to have a new ACME account made")
        return jose.JWKRSA(key=loaded)

    def _acme(self) -> Any:
        if self._client is not None:
            return self._client
        from acme import client, errors, messages

        # verify_ssl goes to requests' ``verify``, which also takes a CA file (typed bool upstream).
        verify: Any = self.settings.ca_bundle or True
        net = client.ClientNetwork(self._account_key(), user_agent="conveyor", verify_ssl=verify)
        directory = client.ClientV2.get_directory(self.settings.directory, net)
        c = client.ClientV2(directory, net)
        reg = messages.NewRegistration.from_data(email=self.settings.email, terms_of_service_agreed=True)
        try:
            c.new_account(reg)
        except errors.ConflictError as e:  # the account exists: use it
            net.account = messages.RegistrationResource(uri=e.location, body=messages.Registration())
        self._client = c
        return c

    def _order_blocking(self, domain: str) -> tuple[str, str]:
        from acme import challenges, crypto_util
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        c = self._acme()
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        order = c.new_order(crypto_util.make_csr(key_pem, [domain]))
        answers = []
        for authz in order.authorizations:
            chall = next((ch for ch in authz.body.challenges if isinstance(ch.chall, challenges.HTTP01)), None)
            if chall is None:
                raise RuntimeError(f"the CA offers no HTTP-01 challenge for {domain}")
            response, validation = chall.response_and_validation(c.net.key)
            with self.cp.engine.begin() as conn:
                store.put_challenge(conn, domain, chall.chall.encode("token"), validation, self.cp.clock())
            answers.append((chall, response))
        self._publish_and_wait()
        for chall, response in answers:
            c.answer_challenge(chall, response)
        done = c.poll_and_finalize(order, dt.datetime.now() + dt.timedelta(seconds=90))
        return str(done.fullchain_pem), key_pem.decode()

    def _publish_and_wait(self, timeout: float = 10.0) -> None:
        """Poke the routing long-poll and wait until every live router holds the new table."""
        from conveyor.services import hosts  # hosts imports domains, which imports this module

        self.cp.notifier.poke("routing")
        deadline = time.monotonic() + timeout
        view = hosts.routers(self.cp)
        while time.monotonic() < deadline:
            if view.routers and view.synced:
                return
            time.sleep(0.05)
            view = hosts.routers(self.cp)
        log.warning("not every router holds routing table v%d after %.0fs; answering the ACME challenge anyway",
                    view.table_version, timeout)


def _reason(e: BaseException) -> str:
    """A failure's reason for a human: the CA's problem detail when there is one."""
    from acme import errors, messages

    if isinstance(e, errors.ValidationError):
        details = []
        for authz in e.failed_authzrs:
            for ch in authz.body.challenges:
                if ch.error is not None:
                    details.append(f"{ch.error.detail or ch.error.typ}")
        return "validation failed: " + ("; ".join(details) or "the CA could not validate the challenge")
    if isinstance(e, messages.Error):
        return f"the CA refused: {e.detail or e.typ}"
    if isinstance(e, errors.TimeoutError):
        return "the CA did not finish the order in time"
    text = str(e) or type(e).__name__
    return text.splitlines()[0][:300]


async def start(cp: ControlPlane) -> None:
    """Start-up hook: run the ACME loop when a directory is configured."""
    settings = AcmeSettings.from_env()
    if settings is None:
        return
    issuer = AcmeIssuer(cp, settings)
    cp.tasks.append(asyncio.create_task(issuer.run(), name="acme"))

"""Domains on the app page and its JSON twin, and the domains API's answers to bad input (in process)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tls_certs import TestCA
from web_site import ADMIN, VIEWER, Site

from conveyor.services import config, domains
from conveyor.store.sealing import ENV_VAR, KEY_FILE, Sealer, SealingError
from conveyor.store.tables import certificates

AUTH = {"Authorization": f"Bearer {ADMIN}"}


def test_app_page_and_twin_show_domains_and_their_certificates(web: Site) -> None:
    a = web.add_image("hello", "a")
    web.finish(web.deploy("hello", "production", a)["id"])
    c = web.client
    r = c.post("/api/v1/apps/hello/domains", json={"name": "Shop.Example.ORG"}, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "shop.example.org" and r.json()["status"] == "none"
    assert c.post("/api/v1/apps/hello/domains", json={"name": "www.example.org"}, headers=AUTH).status_code == 201
    # Bad input: 422 with the reason, 409 naming the owner, 404 for an unknown domain or app.
    r = c.post("/api/v1/apps/hello/domains", json={"name": "a_b.example.org"}, headers=AUTH)
    assert r.status_code == 422 and "label 'a_b'" in r.json()["detail"]
    r = c.post("/api/v1/apps/hello/domains", json={"name": "shop.example.org", "env": "staging"}, headers=AUTH)
    assert r.status_code == 409 and "already belongs to hello/production" in r.json()["detail"]
    assert c.post("/api/v1/apps/nope/domains", json={"name": "x.example.org"}, headers=AUTH).status_code == 404
    ca = TestCA()
    good, other = ca.issue(["shop.example.org"]), ca.issue(["shop.example.org"])
    r = c.put("/api/v1/domains/unknown.example.org/certificate", json={"cert_pem": good.cert_pem, "key_pem": good.key_pem}, headers=AUTH)
    assert r.status_code == 404 and "add it first" in r.json()["detail"]
    r = c.put("/api/v1/domains/shop.example.org/certificate", json={"cert_pem": good.cert_pem, "key_pem": other.key_pem}, headers=AUTH)
    assert r.status_code == 422 and "does not match" in r.json()["detail"]
    r = c.put("/api/v1/domains/shop.example.org/certificate", json={"cert_pem": good.cert_pem, "key_pem": good.key_pem}, headers=AUTH)
    assert r.status_code == 200 and r.json()["certificate"]["fingerprint"] == good.fingerprint
    assert "PRIVATE KEY" not in r.text

    page = c.get("/apps/hello")
    assert page.status_code == 200
    assert "shop.example.org" in page.text and "https" in page.text
    assert "www.example.org" in page.text and "http only" in page.text
    twin = c.get("/api/v1/apps/hello/summary").json()
    shown = {d["name"]: d for d in twin["domains"]}
    assert shown["shop.example.org"]["status"] == "ok" and shown["www.example.org"]["status"] == "none"
    prod = next(e for e in twin["environments"] if e["name"] == "production")
    assert [d["name"] for d in prod["domains"]] == ["shop.example.org", "www.example.org"]

    # The routing table carries the domains, their HTTPS settings and the certificate (key decrypted).
    table = c.get("/api/v1/routing", headers=AUTH).json()
    env = next(e for e in table["environments"] if e["app"] == "hello" and e["env"] == "production")
    assert {"shop.example.org", "www.example.org"} <= set(env["hosts"])
    assert [(x["names"], x["fingerprint"]) for x in table["certificates"]] == [(["shop.example.org"], good.fingerprint)]
    assert table["certificates"][0]["key_pem"] == good.key_pem
    assert {h["host"] for h in table["https"]} == {"shop.example.org", "www.example.org"}
    # A viewer's token reads the table without the key (only routers, with the admin token, get it).
    seen = c.get("/api/v1/routing", headers={"Authorization": f"Bearer {VIEWER}"})
    assert seen.status_code == 200 and seen.json()["certificates"][0]["key_pem"] == "(redacted)"
    assert seen.json()["version"] == table["version"]  # the same content: redacting bumps no version
    assert c.get("/api/v1/routing", headers=AUTH).json()["version"] == table["version"]
    assert "PRIVATE KEY" not in seen.text

    assert c.delete("/api/v1/apps/hello/domains/www.example.org", headers=AUTH).status_code == 204
    assert c.delete("/api/v1/apps/hello/domains/www.example.org", headers=AUTH).status_code == 404
    assert [d["name"] for d in c.get("/api/v1/domains", headers=AUTH).json()] == ["shop.example.org"]


def test_certificate_keys_are_sealed_with_the_one_key_ring_and_survive_a_rotation(
    web: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    c = web.client
    data_dir = web.cp.settings.data_dir
    assert c.post("/api/v1/apps/hello/domains", json={"name": "shop.example.org"}, headers=AUTH).status_code == 201
    # No certificate yet: reading the routing table needs no key ring, so no key file is made.
    assert c.get("/api/v1/routing", headers=AUTH).status_code == 200
    assert not (data_dir / KEY_FILE).exists()

    issued = TestCA().issue(["shop.example.org"])
    r = c.put("/api/v1/domains/shop.example.org/certificate", json={"cert_pem": issued.cert_pem, "key_pem": issued.key_pem},
              headers=AUTH)
    assert r.status_code == 200, r.text
    with web.cp.engine.connect() as conn:
        (sealed,) = conn.execute(select(certificates.c.key_sealed)).one()
    assert "PRIVATE KEY" not in sealed
    # The same ring config secrets use: secrets.key in the data dir (0600) opens it.
    assert (data_dir / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert Sealer.for_data_dir(data_dir).open(sealed.encode()).decode() == issued.key_pem

    # `conveyor secrets rotate-key` re-seals the certificate keys too, so forgetting the old key loses nothing.
    ring = web.cp.sealer()
    assert config.rotate_key(web.cp)["resealed"] >= 1
    assert ring.key_count == 1
    with pytest.raises(SealingError):
        ring.open(sealed.encode())  # the old token no longer opens...
    table = c.get("/api/v1/routing", headers=AUTH).json()
    assert table["certificates"][0]["key_pem"] == issued.key_pem  # ...but the re-sealed key does

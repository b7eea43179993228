"""Config vars and secrets: `conveyor config set/unset/list/get` and `conveyor secrets rotate-key`.

Why a change is a release: config is part of what runs, so a new value ships
like new code — a new release of the *same image* with the new config, deployed
with the environment's strategy (canaried, judged, rolled back) — and a rollback
restores image and config together, because each release keeps the config it ran
with (``releases.config``: ``environment`` for plain values, ``secrets`` sealed,
``vars`` the snapshot of what was set).

Secrets are sealed (``store/sealing.py``) before they touch the database and
opened only to build an agent's desired state (``secret_environment``). Nothing
here returns, logs or records a secret's value: views carry ``value=None`` and
events carry key names.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection

from conveyor.domain.manifest import parse_manifest
from conveyor.services import deployments, domains
from conveyor.services.schemas import ConfigChange, ConfigVar
from conveyor.services.state import ControlPlane
from conveyor.store import config_vars, repo
from conveyor.store import hooks as hook_rows
from conveyor.store import notifications as notify_rows
from conveyor.store.repo import Conflict, NotFound

KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
#: The largest value a var may have (Heroku's limit for all of them together is 32 kB; ours is per var).
MAX_VALUE = 32 * 1024
#: Names the platform sets itself; a user var must not shadow them.
RESERVED = ("PORT", "HOST")
RESERVED_PREFIX = "CONVEYOR_"


def check_var(key: str, value: str) -> None:
    """Raise ``ValueError`` naming what to fix for a key or value that cannot be an environment variable.

    The message never contains the value (it may be a secret)."""
    if not KEY_RE.match(key):
        raise ValueError(
            f"config key {key!r} is not a valid environment variable name: use letters, digits and '_', "
            "not starting with a digit (at most 100 characters)"
        )
    if key in RESERVED or key.startswith(RESERVED_PREFIX):
        raise ValueError(f"config key {key!r} is set by Conveyor itself (PORT, HOST, CONVEYOR_*): choose another name")
    if "\x00" in value:
        raise ValueError(f"the value of {key} contains a NUL byte, which no environment variable can hold")
    if len(value.encode()) > MAX_VALUE:
        raise ValueError(f"the value of {key} is {len(value.encode())} bytes; the limit is {MAX_VALUE} (32 kB)")


def _env(conn: Connection, app: str, env: str, *, create: bool) -> tuple[Any, Any]:
    app_row = repo.get_app(conn, app)
    return app_row, repo.get_env(conn, app_row["id"], env, create=create)


def _ship(conn: Connection, app: str, env_row: Any, changes: dict[str, Any], actor: str,
          origin: str) -> dict[str, Any] | None:
    """Queue a new release of the environment's current image with its current config, or None before
    the first deploy (the change then applies at the first deploy)."""
    current = env_row["current_release"]
    if current is None:
        return None
    image = repo.get_release(conn, env_row["id"], current)["image_digest"]
    return deployments.queue_deploy(conn, app, env_row["name"], image, actor=actor, origin=origin, changes=changes)


def set_vars(cp: ControlPlane, app: str, env: str, values: dict[str, str], *, secret: bool = False,
             deploy: bool = True, actor: str = "", origin: str = "") -> ConfigChange:
    """Set vars (sealed when ``secret``); with ``deploy``, ship them as a new release at once."""
    if not values:
        raise ValueError("give at least one KEY=VALUE to set")
    for k, v in values.items():
        check_var(k, v)
    ring = cp.sealer() if secret else None
    now = repo.now()
    with cp.engine.begin() as conn:
        _, env_row = _env(conn, app, env, create=True)
        for k, v in values.items():
            if ring is not None:
                config_vars.put(conn, env_row["id"], k, secret=True, value=None,
                                sealed=ring.seal(v.encode()).decode(), actor=actor, now=now)
            else:
                config_vars.put(conn, env_row["id"], k, secret=False, value=v, sealed=None, actor=actor, now=now)
        keys = sorted(values)
        changes = {"set": keys, "unset": [], "secret": secret, "by": actor or "someone"}
        repo.record_event(conn, "config_changed",
                          f"config of {app}/{env}: {'secret ' if secret else ''}{', '.join(keys)} set by {actor or 'someone'}",
                          app=app, env=env, actor=actor, origin=origin, data={"set": keys, "secret": secret})
        dep = _ship(conn, app, env_row, changes, actor, origin) if deploy else None
    if dep is not None:
        cp.notifier.poke("orchestrator", "deployments")
    return ConfigChange(app=app, env=env, set=keys, unset=[], deployment=dep["id"] if dep else None,
                        release=dep["release"] if dep else None, staged=dep is None)


def unset_vars(cp: ControlPlane, app: str, env: str, keys: list[str], *, deploy: bool = True, actor: str = "",
               origin: str = "") -> ConfigChange:
    """Remove set vars (a manifest default with the same name applies again); unknown keys change nothing."""
    if not keys:
        raise ValueError("give at least one KEY to unset")
    with cp.engine.begin() as conn:
        _, env_row = _env(conn, app, env, create=False)
        present = {r["key"] for r in config_vars.of_env(conn, env_row["id"])}
        missing = sorted(set(keys) - present)
        if missing:
            raise NotFound(f"{', '.join(missing)} not set in {app}/{env}; see `conveyor config list {app} --env {env}`")
        for k in keys:
            config_vars.remove(conn, env_row["id"], k)
        gone = sorted(set(keys))
        changes = {"set": [], "unset": gone, "secret": False, "by": actor or "someone"}
        repo.record_event(conn, "config_changed", f"config of {app}/{env}: {', '.join(gone)} unset by {actor or 'someone'}",
                          app=app, env=env, actor=actor, origin=origin, data={"unset": gone})
        dep = _ship(conn, app, env_row, changes, actor, origin) if deploy else None
    if dep is not None:
        cp.notifier.poke("orchestrator", "deployments")
    return ConfigChange(app=app, env=env, set=[], unset=gone, deployment=dep["id"] if dep else None,
                        release=dep["release"] if dep else None, staged=dep is None)


def list_vars(cp: ControlPlane, app: str, env: str, *, reveal: bool) -> list[ConfigVar]:
    """The environment's vars: set ones and the manifest defaults of its current release.

    Secret values are never included; plain values only when ``reveal`` (a token that may deploy)."""
    with cp.engine.connect() as conn:
        app_row, env_row = _env(conn, app, env, create=False)
        out: dict[str, ConfigVar] = {}
        if env_row["current_release"] is not None:
            rel = repo.get_release(conn, env_row["id"], env_row["current_release"])
            image = repo.get_image(conn, app_row["id"], rel["image_digest"])
            defaults = parse_manifest(image["app_manifest"]).environment(env).vars
            for k, v in defaults.items():
                out[k] = ConfigVar(key=k, secret=False, source="manifest", value=v if reveal else None)
        for r in config_vars.of_env(conn, env_row["id"]):
            out[r["key"]] = ConfigVar(key=r["key"], secret=bool(r["secret"]), source="set",
                                      value=r["value"] if (reveal and not r["secret"]) else None,
                                      updated_at=r["updated_at"], updated_by=r["updated_by"])
    return [out[k] for k in sorted(out)]


def get_var(cp: ControlPlane, app: str, env: str, key: str, *, reveal: bool) -> ConfigVar:
    """One var; a secret's value cannot be read back (409, saying so), a viewer gets no value (403 at the door)."""
    for v in list_vars(cp, app, env, reveal=reveal):
        if v.key == key:
            if v.secret:
                raise Conflict(f"{key} is a secret: its value cannot be read back, only replaced "
                               f"(`conveyor config set {app} --secret {key}=…`)")
            return v
    raise NotFound(f"{key} is not set in {app}/{env}; see `conveyor config list {app} --env {env}`")


def secret_environment(cp: ControlPlane, release_config: dict[str, Any]) -> dict[str, str]:
    """A release's secrets in clear, for the desired state of a host that runs it (and nothing else)."""
    sealed: dict[str, str] = release_config.get("secrets") or {}
    if not sealed:
        return {}
    ring = cp.sealer()
    return {k: ring.open(v.encode()).decode() for k, v in sealed.items()}


def rotate_key(cp: ControlPlane, actor: str = "", origin: str = "") -> dict[str, int]:
    """Seal every secret (set vars and every release's snapshot) with a new key, then forget the old ones.

    The new key is written first and the old ones still open, so a crash half-way leaves every value
    readable; the old keys go only after the re-sealing transaction committed."""
    ring = cp.sealer()
    ring.rotate()
    resealed = 0
    with cp.engine.begin() as conn:
        for r in config_vars.all_sealed(conn):
            config_vars.set_sealed(conn, r["env_id"], r["key"], ring.seal(ring.open(r["sealed"].encode())).decode())
            resealed += 1
        for env_id, number, cfg in repo.all_release_configs(conn):
            changed = False
            secrets = dict(cfg.get("secrets") or {})
            for k, v in secrets.items():
                secrets[k] = ring.seal(ring.open(v.encode())).decode()
                changed = True
            snap = []
            for row in cfg.get("vars") or []:
                row = dict(row)
                if row.get("sealed"):
                    row["sealed"] = ring.seal(ring.open(row["sealed"].encode())).decode()
                    changed = True
                snap.append(row)
            if changed:
                repo.set_release_config(conn, env_id, number, {**cfg, "secrets": secrets, "vars": snap})
                resealed += 1
        resealed += domains.reseal_keys(conn, ring)  # certificates' private keys share the ring
        resealed += hook_rows.reseal(conn, ring) + notify_rows.reseal(conn, ring)  # webhook and notification secrets
        repo.record_event(conn, "secrets_key_rotated", f"secrets key rotated by {actor or 'someone'}; "
                          f"{resealed} sealed values re-sealed", actor=actor, origin=origin, data={"resealed": resealed})
    ring.forget_old()
    return {"resealed": resealed, "keys": ring.key_count}


def public_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A release's config as anyone may see it: var *names* only (values of plain vars may be private
    too: database URLs), the secrets' names, what the release changed."""
    out = {k: v for k, v in cfg.items() if k not in ("environment", "secrets", "vars")}
    out["env_keys"] = sorted(cfg.get("environment") or {})
    out["secret_keys"] = sorted(cfg.get("secrets") or {})
    return out


def redact_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """An app manifest (``conveyor.toml``) with every ``[env.X] vars`` value replaced by ``"(hidden)"``."""
    if not manifest.get("env"):
        return manifest
    envs = {}
    for name, section in (manifest.get("env") or {}).items():
        section = dict(section or {})
        if section.get("vars"):
            section["vars"] = {k: "(hidden)" for k in section["vars"]}
        envs[name] = section
    return {**manifest, "env": envs}

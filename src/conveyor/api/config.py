"""Config vars and secrets: thin over ``services/config.py``.

A secret's value goes in (``PUT``) and never comes out: no route returns it, and
``GET …/config/{key}`` of a secret answers 409 saying so. Plain values are shown
to tokens that may deploy; a read-only token sees names only.
"""

from __future__ import annotations

from fastapi import APIRouter

from conveyor.api.deps import CP, Reader, Writer
from conveyor.services import config
from conveyor.services.schemas import ConfigChange, ConfigSet, ConfigUnset, ConfigVar

router = APIRouter(tags=["config"])


@router.put("/apps/{app}/config", response_model=ConfigChange,
            summary="Set config vars or secrets; ships a new release of the same image unless deploy=false")
def set_config(app: str, body: ConfigSet, cp: CP, p: Writer) -> ConfigChange:
    return config.set_vars(cp, app, body.env, body.values, secret=body.secret, deploy=body.deploy,
                           actor=p.name, origin=p.origin)


@router.post("/apps/{app}/config/unset", response_model=ConfigChange, summary="Remove config vars")
def unset_config(app: str, body: ConfigUnset, cp: CP, p: Writer) -> ConfigChange:
    return config.unset_vars(cp, app, body.env, body.keys, deploy=body.deploy, actor=p.name, origin=p.origin)


@router.get("/apps/{app}/config", response_model=list[ConfigVar],
            summary="An environment's config vars (secret values never; plain values to tokens that may deploy)")
def list_config(app: str, cp: CP, p: Reader, env: str = "production") -> list[ConfigVar]:
    return config.list_vars(cp, app, env, reveal=p.can_write)


@router.get("/apps/{app}/config/{key}", response_model=ConfigVar, summary="One config var (409 for a secret)")
def get_config(app: str, key: str, cp: CP, p: Reader, env: str = "production") -> ConfigVar:
    return config.get_var(cp, app, env, key, reveal=p.can_write)


@router.post("/secrets/rotate-key", summary="Re-seal every secret with a new key, then forget the old ones")
def rotate_key(cp: CP, p: Writer) -> dict[str, int]:
    return config.rotate_key(cp, actor=p.name, origin=p.origin)

"""Scoped tokens and hosts' join tokens: create (shown once), list, revoke; ``/whoami``.

Only an admin manages tokens. A created token is in the response of its
``POST`` and nowhere else, ever: the control plane keeps its hash.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from conveyor.api.deps import CP, Admin, AnyCaller
from conveyor.domain.access import new_token_problem, parse_duration
from conveyor.store import tokens as token_store

router = APIRouter(tags=["tokens"])


class TokenCreate(BaseModel):
    role: str = Field(description="admin, deployer or viewer")
    name: str = Field(description="who or what holds it (shown in the audit log)")
    app: str | None = Field(None, description="scope: only this app")
    team: str | None = Field(None, description="scope: only this team's apps")
    expires: str | None = Field(None, description="lifetime, e.g. 12h, 30d, 2w (default: never)")


class JoinTokenCreate(BaseModel):
    role: Literal["agent", "router"] = "agent"
    expires: str | None = None


class TokenView(BaseModel):
    id: str
    name: str
    role: str
    scope_app: str | None = None
    scope_team: str | None = None
    host: str | None = None
    created_at: float
    created_by: str
    expires_at: float | None = None
    revoked_at: float | None = None


class NewToken(TokenView):
    token: str = Field(description="the credential: shown this once, never stored in clear")


def _make(cp: Any, p: Any, *, role: str, name: str, app: str | None, team: str | None, host: str | None,
          expires: str | None) -> NewToken:
    problem = new_token_problem(role, name=name, app=app, team=team, host=host)
    if problem:
        raise HTTPException(422, problem)
    now = time.time()
    try:
        expires_at = now + parse_duration(expires, "expires") if expires else None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    view, token = token_store.create(cp.engine, name=name, role=role, now=now, created_by=p.name, scope_app=app,
                                     scope_team=team, host=host, expires_at=expires_at)
    return NewToken(**view, token=token)


@router.post("/tokens", status_code=201, response_model=NewToken, summary="Create a scoped token (shown once)")
def create_token(body: TokenCreate, cp: CP, p: Admin) -> NewToken:
    if body.role not in ("admin", "deployer", "viewer"):
        raise HTTPException(422, f"unknown role {body.role!r}: use admin, deployer or viewer "
                                 "(agents and routers get join tokens: POST /hosts/{host}/join-tokens)")
    return _make(cp, p, role=body.role, name=body.name, app=body.app, team=body.team, host=None, expires=body.expires)


@router.get("/tokens", response_model=list[TokenView], summary="Tokens (never their secrets)")
def list_tokens(cp: CP, _p: Admin, revoked: bool = False) -> list[TokenView]:
    return [TokenView(**t) for t in token_store.list_all(cp.engine, include_revoked=revoked)]


@router.delete("/tokens/{ref}", response_model=list[TokenView], summary="Revoke a token by id or name")
def revoke_token(ref: str, cp: CP, _p: Admin) -> list[TokenView]:
    rows = token_store.revoke(cp.engine, ref, time.time())
    cp.auth.forget()
    return [TokenView(**t) for t in rows]


@router.post("/hosts/{host}/join-tokens", status_code=201, response_model=NewToken,
             summary="A host's join token: an agent's or a router's own credential")
def create_join_token(host: str, body: JoinTokenCreate, cp: CP, p: Admin) -> NewToken:
    return _make(cp, p, role=body.role, name=f"{body.role}@{host}", app=None, team=None, host=host, expires=body.expires)


class WhoAmI(BaseModel):
    name: str
    role: str
    scope_app: str | None = None
    scope_team: str | None = None
    host: str | None = None
    token_id: str | None = None


@router.get("/whoami", response_model=WhoAmI, summary="Who the presented credential is")
def whoami(request: Request, p: AnyCaller) -> WhoAmI:
    return WhoAmI(name=p.name, role=p.role, scope_app=p.scope_app, scope_team=p.scope_team, host=p.host, token_id=p.token_id)

"""Scoped tokens and hosts' join tokens: create (shown once), list, revoke; ``/whoami``.

Only an admin manages tokens (``services.auth``). A created token is in the
response of its ``POST`` and nowhere else, ever: the control plane keeps its hash.
"""

from __future__ import annotations

from fastapi import APIRouter, Path

from conveyor.api.deps import CP, Admin, AnyCaller
from conveyor.domain.access import NAME_PATTERN
from conveyor.services import auth
from conveyor.services.schemas import JoinTokenCreate, NewToken, TokenCreate, TokenView, WhoAmI

router = APIRouter(tags=["tokens"])


@router.post("/tokens", status_code=201, response_model=NewToken, summary="Create a scoped token (shown once)")
def create_token(body: TokenCreate, cp: CP, p: Admin) -> NewToken:
    return NewToken(**auth.create_token(cp, p, role=body.role, name=body.name, app=body.app, team=body.team,
                                        expires=body.expires))


@router.get("/tokens", response_model=list[TokenView], summary="Tokens (never their secrets)")
def list_tokens(cp: CP, p: Admin, revoked: bool = False) -> list[TokenView]:
    return [TokenView(**t) for t in auth.list_tokens(cp, p, include_revoked=revoked)]


@router.delete("/tokens/{ref}", response_model=list[TokenView], summary="Revoke a token by id or name")
def revoke_token(ref: str, cp: CP, p: Admin) -> list[TokenView]:
    return [TokenView(**t) for t in auth.revoke_token(cp, p, ref)]


@router.post("/hosts/{host}/join-tokens", status_code=201, response_model=NewToken,
             summary="A host's join token: an agent's or a router's own credential")
def create_join_token(body: JoinTokenCreate, cp: CP, p: Admin,
                      host: str = Path(description="the host's (or router's) name", pattern=NAME_PATTERN)) -> NewToken:
    return NewToken(**auth.create_join_token(cp, p, host, role=body.role, expires=body.expires))


@router.get("/whoami", response_model=WhoAmI, summary="Who the presented credential is")
def whoami(p: AnyCaller) -> WhoAmI:
    return WhoAmI(name=p.name, role=p.role, scope_app=p.scope_app, scope_team=p.scope_team, host=p.host,
                  token_id=p.token_id)

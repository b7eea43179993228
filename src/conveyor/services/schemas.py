"""Request and response bodies of the user-facing API (they make the OpenAPI contract).

The services return these models and the API routes declare them; the web pages
render their JSON form, so the UI and its JSON twins say the same thing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AppCreate(_Body):
    name: str = Field(description="1-40 lower-case letters, digits and '-', starting with a letter", examples=["hello"])
    team: str | None = Field(None, description="the owning team (DORA keys can be shown per team)")


class AppUpdate(_Body):
    team: str | None = Field(description="the owning team, or null for none")


class App(BaseModel):
    name: str
    team: str | None = None
    created_at: float
    created_by: str = ""
    environments: list[str] = Field(default_factory=list)


class DeployRequest(_Body):
    env: str = Field("production", description="target environment; created on first deploy")
    image: str | None = Field(None, description="image digest or a unique prefix (≥ 7 hex digits)")
    from_env: str | None = Field(
        None, description="promote: deploy the image that this environment currently runs (no rebuild)"
    )
    strategy: Literal["bluegreen", "rolling", "canary"] | None = Field(
        None, description="override the manifest's strategy for this deployment"
    )
    skip_release_phase: bool = Field(False, description="do not run [release] command for this deployment (audited)")


class CommandRequest(_Body):
    full: bool = Field(False, description="promote: skip the remaining steps and go to 100%")


class RollbackRequest(_Body):
    env: str = "production"
    release: int | None = Field(None, description="target release; default: the previous live release")


class Deployment(BaseModel):
    id: int
    app: str
    env: str
    kind: Literal["deploy", "rollback"]
    strategy: str
    state: str
    from_release: int | None
    release: int | None
    image: str | None
    reason: str
    command: dict[str, Any] | None = Field(None, description="a user's command waiting for the orchestrator")
    progress: dict[str, Any]
    params: dict[str, Any]
    queue_position: int | None = Field(None, description="deployments ahead of this one (queued only)")
    created_by: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    verdicts: list[dict[str, Any]] = Field(default_factory=list)
    release_output: str | None = Field(None, description="the output of the release's [release] command, if it ran")


class InstanceView(BaseModel):
    id: str
    release: int
    role: str
    host: str
    state: str
    port: int | None = None
    address: str | None = None
    restarts: int = 0
    message: str = ""


class EnvironmentStatus(BaseModel):
    name: str
    release: int | None
    image: str | None
    commit: dict[str, Any] | None = None
    routes: dict[str, int]
    url: str | None = None
    instances: list[InstanceView]
    deploying: Deployment | None = None


class AppStatus(BaseModel):
    app: str
    environments: list[EnvironmentStatus]


class Release(BaseModel):
    env: str
    number: int
    image: str
    status: str
    created_by: str
    created_at: float
    live_at: float | None
    retired_at: float | None
    commit: dict[str, Any] | None = None
    config: dict[str, Any]


class EventView(BaseModel):
    id: int
    at: float
    app: str | None
    env: str | None
    kind: str
    actor: str
    origin: str
    message: str
    data: dict[str, Any]


class RouterView(BaseModel):
    id: str
    table_version: int = Field(description="the routing table version this router holds")
    seconds_since_poll: float
    synced: bool = Field(description="holds the current table (or a newer one)")


class RoutersView(BaseModel):
    """The live routers (long-polled in the last 70 s) and whether they all hold the current table."""

    table_version: int = Field(description="the control plane's current routing table version")
    synced: bool = Field(description="every live router holds the current table")
    routers: list[RouterView]


class ConfigSet(_Body):
    env: str = Field("production", description="the environment (created if new)")
    values: dict[str, str] = Field(description="KEY → VALUE; a secret's value is sealed at once and never returned")
    secret: bool = Field(False, description="seal the values: they can be replaced, never read back")
    deploy: bool = Field(True, description="ship the change now as a new release; false: stage it for the next deploy")


class ConfigUnset(_Body):
    env: str = "production"
    keys: list[str]
    deploy: bool = True


class ConfigChange(BaseModel):
    """What a config change did: the keys (never values) and the release that ships it, if any."""

    app: str
    env: str
    set: list[str]
    unset: list[str]
    deployment: int | None = Field(None, description="the deployment shipping the change (None: staged)")
    release: int | None = None
    staged: bool = Field(description="true: applies at the next deploy (--no-deploy, or nothing deployed yet)")


class ConfigVar(BaseModel):
    key: str
    secret: bool
    source: Literal["set", "manifest"]
    value: str | None = Field(None, description="null for a secret (never returned) or for a token that may only read")
    updated_at: float | None = None
    updated_by: str = ""

"""Request and response bodies of the user-facing API (they make the OpenAPI contract).

The services return these models and the API routes declare them; the web pages
render their JSON form, so the UI and its JSON twins say the same thing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from conveyor.domain.manifest import APP_NAME_RE, ENV_NAME_RE
from conveyor.domain.wire import INT64_MAX

#: A row id in a URL path (a deployment, a build): out of SQL's range is a 422, not a driver overflow.
RowId = Annotated[int, Path(ge=1, le=INT64_MAX, description="a positive id below 2^63")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: Names as the OpenAPI document states them. Stated in the schema only (``json_schema_extra``):
#: the services enforce them with messages that say what to fix, which Pydantic's would not.
NAME = APP_NAME_RE.pattern
ENV = ENV_NAME_RE.pattern
#: An image: a full digest or a unique prefix of at least 7 hex digits.
IMAGE_REF = r"^(sha256:)?[0-9a-f]{7,64}$"


class AppCreate(_Body):
    name: str = Field(description="1-40 lower-case letters, digits and '-', starting with a letter", examples=["hello"],
                      json_schema_extra={"pattern": NAME})
    team: str | None = Field(None, description="the owning team (DORA keys can be shown per team)", json_schema_extra={"pattern": NAME})


class AppUpdate(_Body):
    team: str | None = Field(description="the owning team, or null for none", json_schema_extra={"pattern": NAME})


class App(BaseModel):
    name: str
    team: str | None = None
    created_at: float
    created_by: str = ""
    environments: list[str] = Field(default_factory=list)


class DeployRequest(_Body):
    """Give ``image`` or ``from_env``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["image"], "properties": {"image": {"type": "string"}}},
        {"required": ["from_env"], "properties": {"from_env": {"type": "string"}}},
    ]})

    env: str = Field("production", description="target environment; created on first deploy", json_schema_extra={"pattern": ENV})
    image: str | None = Field(None, description="image digest or a unique prefix (≥ 7 hex digits)", json_schema_extra={"pattern": IMAGE_REF})
    from_env: str | None = Field(
        None, description="promote: deploy the image that this environment currently runs (no rebuild)", pattern=ENV
    )
    strategy: Literal["bluegreen", "rolling", "canary"] | None = Field(
        None, description="override the manifest's strategy for this deployment"
    )
    skip_release_phase: bool = Field(False, description="do not run [release] command for this deployment (audited)")


class CommandRequest(_Body):
    full: bool = Field(False, description="promote: skip the remaining steps and go to 100%")


class RollbackRequest(_Body):
    env: str = Field("production", json_schema_extra={"pattern": ENV})
    release: int | None = Field(None, ge=1, le=INT64_MAX, description="target release; default: the previous live release")


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


class ReleaseOutput(BaseModel):
    """A slice of a deployment's release-command output, for following it live."""

    data: str = Field(description="output lines as the command printed them (its agent's notes included)")
    next: int = Field(description="the offset to ask from next")
    over: bool = Field(description="the release phase is over (the deployment left queued/releasing)")
    done: bool = Field(description="over, and all of the command's output has been returned")


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


#: A config var's name: what an environment variable may be called (``services/config.check_var`` says
#: what to fix, and refuses the names Conveyor sets itself: PORT, HOST, CONVEYOR_*).
CONFIG_KEY = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
#: A value an environment variable can hold: no NUL byte (at most 32 kB, checked in bytes by the service).
CONFIG_VALUE = r"^[^\x00]*$"


class ConfigSet(_Body):
    env: str = Field("production", description="the environment (created if new)", json_schema_extra={"pattern": ENV})
    values: dict[str, str] = Field(
        description="KEY → VALUE; a secret's value is sealed at once and never returned",
        json_schema_extra={"minProperties": 1, "propertyNames": {"pattern": CONFIG_KEY},
                           "additionalProperties": {"type": "string", "pattern": CONFIG_VALUE}},
    )
    secret: bool = Field(False, description="seal the values: they can be replaced, never read back")
    deploy: bool = Field(True, description="ship the change now as a new release; false: stage it for the next deploy")


class ConfigUnset(_Body):
    env: str = Field("production", json_schema_extra={"pattern": ENV})
    keys: list[str] = Field(description="the names to remove (each must be set)",
                            json_schema_extra={"minItems": 1, "items": {"type": "string", "pattern": CONFIG_KEY}})
    deploy: bool = True


class ScaleRequest(_Body):
    env: str = Field("production", json_schema_extra={"pattern": ENV})
    counts: list[str] = Field(description='TYPE=COUNT pairs, e.g. ["web=3", "worker=2"]',
                              json_schema_extra={"minItems": 1})


class RestartRequest(_Body):
    env: str = Field("production", json_schema_extra={"pattern": ENV})
    process: str | None = Field(None, description="one process type (default: every one)")


class RunRequest(_Body):
    env: str = Field("production", json_schema_extra={"pattern": ENV})
    command: str = Field(description="a shell command line, run in the current release's image and config",
                         json_schema_extra={"pattern": r"\S"})


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

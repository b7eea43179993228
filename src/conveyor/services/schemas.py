"""Request and response bodies of the user-facing API (they make the OpenAPI contract).

The services return these models and the API routes declare them; the web pages
render their JSON form, so the UI and its JSON twins say the same thing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from conveyor.domain.access import DURATION_PATTERN, NAME_PATTERN
from conveyor.domain.gitpush import BRANCH_PATTERN
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
    locks: list[LockView] = Field(default_factory=list, description="its deploy locks (who, why, since when)")


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
    force: bool = Field(False, description="deploy although the environment is locked or frozen (recorded on the "
                                           "deployment and in the audit log)")


class CommandRequest(_Body):
    full: bool = Field(False, description="promote: skip the remaining steps and go to 100%")


class ApprovalRequest(_Body):
    reason: str = Field("", max_length=500, description="why (shown on the deployment and in the audit log)")


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
    approval: dict[str, Any] | None = Field(
        None, description="a pipeline promotion's approval: state pending|approved|rejected, from_env, "
                          "from_deployment, by, at, reason")
    pipeline: list[PipelineStage] = Field(default_factory=list,
                                          description="the image's pipeline: each stage and where this image is")
    train: TrainRef | None = Field(None, description="the deploy train this deployment is a canary of, if any")


class PipelineStage(BaseModel):
    """One environment of a pipeline, as it stands for one image."""

    env: str
    after: str | None = Field(None, description="the stage it follows")
    approval: bool = Field(False, description="promotions into it wait for `conveyor approve`")
    deployment: int | None = Field(None, description="its newest deployment of the image")
    state: str | None = Field(None, description="that deployment's state")
    waiting: str = Field("", description="what it waits for, if anything")


class LockIn(_Body):
    env: str | None = Field(None, description="the environment to lock; none: every environment of the app",
                            json_schema_extra={"pattern": ENV})
    reason: str = Field(min_length=1, max_length=500, description="why: shown wherever the lock stops a deploy",
                        json_schema_extra={"pattern": r"\S"})


class LockView(BaseModel):
    app: str
    env: str | None = Field(description="None: every environment")
    kind: str = Field(description="manual (`conveyor lock`), or rollback (an automatic rollback: stops automatic "
                                  "deploys only)")
    reason: str
    by: str
    since: float
    deployment: int | None = Field(None, description="rollback locks: the deployment that rolled back")


#: A freeze window as the document states it (``domain/gate.py`` also checks the end comes after the
#: start, the date exists and the zone is known, which a pattern cannot say).
_DAY = "(?:[Mm]on|[Tt]ue|[Ww]ed|[Tt]hu|[Ff]ri|[Ss]at|[Ss]un)[a-z]*"
_HM = "(?:[01]?[0-9]|2[0-3]):[0-5][0-9]"
_DT = "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}"
FREEZE_WINDOW = rf"^\s*(?:{_DAY}\s+{_HM}\s*(?:->|→)\s*{_DAY}\s+{_HM}|{_DT}\s*(?:->|→)\s*{_DT})\s*$"


class FreezeIn(_Body):
    env: str | None = Field(None, description="the environment; none: every environment of the app",
                            json_schema_extra={"pattern": ENV})
    window: str = Field(max_length=100, description="'Fri 16:00 -> Mon 08:00' (weekly) or "
                                                    "'2026-12-24T00:00 -> 2027-01-02T08:00' (once), local times in tz",
                        json_schema_extra={"pattern": FREEZE_WINDOW})
    tz: str = Field("UTC", max_length=64, description="an IANA time zone, e.g. Europe/Paris")
    reason: str = Field("", max_length=500)


class FreezeView(BaseModel):
    id: int
    app: str
    env: str | None
    window: str
    tz: str
    reason: str
    by: str
    created_at: float
    active: bool = Field(description="in force now")


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
    locks: list[LockView] = Field(default_factory=list, description="locks that apply to it (its own, app-wide)")
    frozen: list[FreezeView] = Field(default_factory=list, description="freeze windows in force now")
    awaiting_approval: list[int] = Field(default_factory=list, description="deployments waiting for approval")


class AppStatus(BaseModel):
    app: str
    environments: list[EnvironmentStatus]
    locks: list[LockView] = Field(default_factory=list, description="every lock of the app")


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


#: A DNS hostname as the OpenAPI document states it (``domain.certs.check_hostname`` enforces it
#: with a message that names the bad label): two labels at least, the last not all digits.
HOSTNAME = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"


class CertificateView(BaseModel):
    """A domain's certificate as anyone may see it: its facts, never its key."""

    source: str = Field(description="'file' (conveyor certs add) or 'acme'")
    names: list[str]
    issuer: str
    fingerprint: str = Field(description="sha256 of the leaf certificate (DER), hex")
    not_before: float
    not_after: float
    renew_at: float = Field(description="two thirds of its lifetime")
    days_left: float


class DomainView(BaseModel):
    name: str
    app: str
    env: str
    redirect: bool = Field(description="plain HTTP answered with 308 to HTTPS (once a certificate covers it)")
    hsts_max_age: int
    acme: bool = Field(description="its certificate comes from ACME (off once a file certificate is added)")
    status: str = Field(description="'none' (no certificate: HTTP only), 'pending', 'issuing', 'renewing', 'ok', 'expired', or 'failed'")
    error: str = ""
    certificate: CertificateView | None = None
    created_at: float
    created_by: str = ""


class DomainIn(_Body):
    name: str = Field(description="a hostname you own, e.g. app.example.com", max_length=253,
                      json_schema_extra={"pattern": HOSTNAME})
    env: str = Field("production", description="the environment it serves; created if new", json_schema_extra={"pattern": ENV})
    redirect: bool = True
    hsts_max_age: int = Field(default=0, ge=0, le=2 * 365 * 86400, description="Strict-Transport-Security max-age (0: none)")
    acme: bool = Field(default=True, description="obtain and renew its certificate by ACME (when the server has an ACME directory)")


class CertificateIn(_Body):
    cert_pem: str = Field(description="the certificate, then its chain (PEM)")
    key_pem: str = Field(description="its private key (PEM, unencrypted); stored sealed")


# -- tokens and the audit trail (issue 15) -----------------------------------------

#: ``since``: a duration ago (1h, 7d) or epoch seconds.
SINCE_PATTERN = r"^(\s*0*[1-9]\d{0,11}(\.\d{1,6})?\s*[smhdw]\s*|\d{1,12}(\.\d{1,6})?)$"


class TokenCreate(_Body):
    role: str = Field(description="admin, deployer or viewer", json_schema_extra={"enum": ["admin", "deployer", "viewer"]})
    name: str = Field(description="who or what holds it (shown in the audit trail)", examples=["ci"],
                      json_schema_extra={"pattern": NAME_PATTERN})
    app: str | None = Field(None, description="scope: only this app", json_schema_extra={"pattern": NAME})
    team: str | None = Field(None, description="scope: only this team's apps", json_schema_extra={"pattern": NAME})
    expires: str | None = Field(None, description="lifetime, e.g. 12h, 30d, 2w (default: never)",
                                json_schema_extra={"pattern": DURATION_PATTERN})


class JoinTokenCreate(_Body):
    role: str = Field("agent", description="agent or router", json_schema_extra={"enum": ["agent", "router"]})
    expires: str | None = Field(None, description="lifetime, e.g. 1h (default: never)",
                                json_schema_extra={"pattern": DURATION_PATTERN})


class EnrolTokenCreate(_Body):
    expires: str | None = Field(None, description="lifetime, e.g. 30m (default: 1h)",
                                json_schema_extra={"pattern": DURATION_PATTERN})


class HostJoin(_Body):
    host: str = Field(description="the joining host's name (unique among hosts)", json_schema_extra={"pattern": NAME_PATTERN})


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


class WhoAmI(BaseModel):
    name: str
    role: str
    scope_app: str | None = None
    scope_team: str | None = None
    host: str | None = None
    token_id: str | None = None


class AuditEntry(BaseModel):
    id: int
    at: float
    actor: str
    role: str
    action: str
    app: str | None = None
    target: str
    origin: str
    status: int
    outcome: str = Field(description="ok, denied (401, 403, 429) or failed")


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


class AutoscaleRequest(_Body):
    """`conveyor autoscale`: HPA's algorithm with its parameters (domain/autoscale.py)."""

    env: str = Field("production", json_schema_extra={"pattern": ENV})
    process: str = Field("web", description="the process type to scale", json_schema_extra={"pattern": r"^[a-z][a-z0-9_-]{0,39}$"})
    min: int = Field(ge=0, le=1000, description="fewest instances")
    max: int = Field(ge=1, le=1000, description="most instances")
    metric: Literal["inflight", "rps", "p95"] = Field(description="requests in flight per instance, requests/s per "
                                                                  "instance, or p95 latency (ms)")
    target: float = Field(gt=0, le=1e9, description="the metric's target value")
    tolerance: float = Field(0.1, ge=0, lt=1, description="no change while the metric is within ±tolerance of the target")
    window: float = Field(10.0, ge=1, le=3600, description="seconds of metrics each decision reads")
    up_step: int = Field(4, ge=1, le=1000, description="scale up by at most max(up_step, up_percent) a step")
    up_percent: float = Field(100.0, ge=0, le=10000)
    up_period: float = Field(5.0, ge=0, le=86400, description="seconds between two scale-ups")
    down_window: float = Field(60.0, ge=0, le=86400, description="stabilisation window before a scale-down (seconds)")
    down_step: int = Field(1, ge=1, le=1000, description="scale down by at most this many instances a step")
    down_period: float = Field(10.0, ge=0, le=86400, description="seconds between two scale-downs")
    period: float = Field(1.0, ge=1, le=86400, description="seconds between two decisions (HPA's sync loop: 15)")
    up_sigma: float = Field(2.0, ge=0, le=10, description="a rate's scale-up needs its count above the band by more "
                            "than this many standard deviations (Poisson noise at low rates; 0: HPA's rule)")
    up_window: float = Field(5.0, ge=0, le=86400, description="a rate's scale-up also reads the last this many "
                             "seconds when they say more than the window (0: the window only, HPA's rule)")
# --- deploy trains (services/trains.py) ---------------------------------------------------


class TrainCommitIn(_Body):
    """A commit to ship; only ``sha`` is required (the rest is read back from git)."""

    sha: str = Field(description="the commit's sha (7 to 40 hex digits)", min_length=7, max_length=40,
                     json_schema_extra={"pattern": r"^[0-9a-f]{7,40}$"})
    time: float | None = Field(None, description="commit time, Unix seconds (informative)")
    author: str | None = Field(None, max_length=200)
    message: str | None = Field(None, max_length=2000)


class TrainEnqueue(_Body):
    repo: str = Field(description="the git repository the builds fetch (a local path or a URL)", min_length=1,
                      max_length=2000, examples=["/srv/git/hello.git"])
    commits: list[TrainCommitIn] = Field(description="new commits, oldest first, on one line of history",
                                         min_length=1, max_length=1000)
    env: str = Field("production", description="target environment", json_schema_extra={"pattern": ENV})
    trigger: str = Field("api", description="what sent them (push, api, cli)", max_length=100)


class TrainCommit(BaseModel):
    position: int = Field(description="0 = the train's oldest commit")
    sha: str
    author: str | None = None
    message: str | None = None
    time: float | None = None
    status: str = Field(description="waiting, in train, shipped, culprit, blocked (contains the culprit) or not shipped")


class TrainStep(BaseModel):
    """One try of one commit: its build, then its canary deployment."""

    position: int
    sha: str
    reverted: bool = Field(False, description="this try is the commit at `position` with the culprit's change "
                           "reverted (built in a scratch clone, not a commit of the repository)")
    build_id: int | None
    image: str | None
    deployment_id: int | None
    outcome: str | None = Field(description="pass, fail, build_failed, test_failed, inconclusive; null while it runs")
    reason: str
    created_at: float
    finished_at: float | None = Field(description="when its outcome was known (build failed, canary ended)")


class TrainCulprit(BaseModel):
    position: int
    sha: str
    author: str | None = None
    message: str | None = None
    outcome: str = Field(description="fail (its canary), build_failed or test_failed")
    verdict: str = Field(description="why: the canary's or the build's own words")
    deployment_id: int | None = None
    revert: str | None = Field(None, description="the try of the newest commit with the culprit reverted: pass "
                               "(every other commit shipped, the culprit not), build_failed / test_failed (the "
                               "revert conflicts or does not build: the later commits stay blocked), fail, "
                               "inconclusive; null: not tried (nothing follows the culprit) or still running")
    revert_reason: str = ""


class Train(BaseModel):
    id: int
    app: str
    env: str
    repo: str
    state: Literal["collecting", "running", "shipped", "blocked", "halted"]
    trigger: str
    max_commits: int
    commits: list[TrainCommit]
    shipped: int = Field(description="position of the newest commit live through this train (-1: none)")
    shipped_sha: str | None
    culprit: TrainCulprit | None
    reason: str
    canaries: int = Field(description="canary deployments spent")
    steps: list[TrainStep]
    created_by: str
    created_at: float
    started_at: float | None
    finished_at: float | None


class TrainRef(BaseModel):
    """The train a deployment belongs to (a bisection canary), on the deployment's page."""

    id: int
    state: str
    position: int
    sha: str
    reverted: bool = Field(False, description="the deployment's image is `sha` with the culprit's change reverted")
    outcome: str | None
    culprit: TrainCulprit | None


Deployment.model_rebuild()


# -- webhooks in, notifications out (issue 14) ---------------------------------------

#: A repository URL (``services.hooks`` checks it against this, with its own message).
REPO_URL = r"^((https?|ssh|git|file)://[!-~]+|/[!-~]*|[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:[!-~]+)$"
#: A branch name: segments of letters, digits and '_' joined by '.', '/' or '-' (no '..', no leading '-').
BRANCH = r"^[A-Za-z0-9_]+([./-][A-Za-z0-9_]+)*$"
#: A notification URL: http(s), a host (no user:password@), an optional port and path.
NOTIFY_URL = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[!-~]*)?$"


class RepoIn(_Body):
    url: str = Field(description="the git repository the app builds from (https://, ssh://, git@host:path, or a "
                                 "local path / file:// URL)", min_length=1, max_length=2000,
                     json_schema_extra={"pattern": REPO_URL})
    branch: str = Field("main", description="pushes to this branch are built and deployed", min_length=1, max_length=200,
                        json_schema_extra={"pattern": BRANCH})
    env: str = Field("production", description="the environment pushes deploy to", json_schema_extra={"pattern": ENV})


class HookDelivery(BaseModel):
    delivery: str
    provider: str
    event: str
    sha: str = ""
    outcome: str = Field(description="pong, ignored, refused, building, deploying or failed")
    reason: str = ""
    build_id: int | None = None
    deployment_id: int | None = None
    at: float


class RepoView(BaseModel):
    app: str
    url: str
    branch: str
    env: str
    webhook_url: str = Field(description="where GitHub or GitLab sends push events (Content type application/json)")
    secret: str | None = Field(None, description="the webhook's shared secret: only in the answer that made it")
    created_at: float
    created_by: str = ""
    deliveries: list[HookDelivery] = Field(default_factory=list, description="the newest deliveries received")


class HookAnswer(BaseModel):
    """What the webhook endpoint answers a signed delivery."""

    outcome: str = Field(description="pong (a ping), ignored (not for the deploy branch), or building")
    reason: str
    delivery: str


class NotifyIn(_Body):
    url: str = Field(description="an http:// or https:// URL (redirects are not followed)", min_length=1, max_length=2000,
                     json_schema_extra={"pattern": NOTIFY_URL})
    kind: Literal["json", "slack"] = Field("json", description="json: signed JSON; slack: an incoming-webhook message")
    events: list[str] = Field(default_factory=list, description="groups to send (empty: all)", max_length=10,
                              json_schema_extra={"items": {"type": "string", "enum": [
                                  "build", "deploy", "verdict", "rollback", "approval", "webhook"]}})


class NotifyTarget(BaseModel):
    id: int
    app: str
    kind: str
    url: str = Field(description="scheme, host and the first path segment (the rest may be a secret)")
    events: list[str]
    secret: str | None = Field(None, description="the signing secret (json targets): only in the answer that made it")
    created_at: float
    created_by: str = ""


class NotificationView(BaseModel):
    id: int
    target_id: int
    target: str = Field(description="the target's kind and shown URL")
    kind: str = Field(description="the event kind")
    event_id: int
    status: str = Field(description="pending, retrying, delivered or failed")
    attempts: int
    status_code: int | None = Field(None, description="the receiver's last HTTP status")
    error: str = ""
    next_at: float | None = Field(None, description="when the next attempt is due (retrying)")
    created_at: float
    last_at: float | None = None


# -- git push (services/continuous.py, services/gitremote.py) -----------------------------

OID = r"^([0-9a-f]{40}|[0-9a-f]{64})$"


class GitCommit(_Body):
    sha: str = Field(json_schema_extra={"pattern": OID}, pattern=OID)
    time: float = Field(description="commit time, Unix seconds (lead time runs from it)", ge=0, le=1e11)
    author: str = Field("", max_length=200)
    message: str = Field("", max_length=1000, description="the subject line")


class _PushBase(_Body):
    ref: str = Field(max_length=200, description="the full ref name, e.g. refs/heads/main",
                     pattern=r"^refs/[\x21-\x7e]{1,195}$")
    old: str = Field(pattern=OID)
    new: str = Field(pattern=OID)
    commits: list[GitCommit] = Field(default_factory=list, max_length=1000, description="newest first")


class DeployPushIn(_PushBase):
    """The deploy branch moved: ship the build of ``new``."""

    action: Literal["deploy"]
    build: int = Field(ge=1, le=INT64_MAX, description="the build of `new`")
    detach: bool = Field(False, description="the hook did not wait for the build: ship it when it ends")
    received: bool = Field(False, description="the build passed: accept the push and ship it once the branch has "
                                              "moved (the post-receive hook asks: POST /apps/{app}/pushes/received)")


class PushReceived(_Body):
    """The post-receive hook: the deploy branch has moved to ``new``; ship the push that brought it."""

    ref: str = Field(max_length=200, pattern=r"^refs/[\x21-\x7e]{1,195}$")
    new: str = Field(pattern=OID)


class StorePushIn(_PushBase):
    """Another branch or a tag: recorded, not deployed."""

    action: Literal["store"]


#: What the pre-receive hook hands over for one ref update.
GitPushIn = Annotated[DeployPushIn | StorePushIn, Field(discriminator="action")]


class GitPushView(BaseModel):
    id: int
    ref: str
    old: str
    new: str
    commits: int
    action: str
    state: str = Field(description="building, shipped, failed (deploy) or stored")
    detach: bool
    build: int | None
    deployment: int | None
    detail: str
    pushed_by: str
    created_at: float
    finished_at: float | None


class GitRemoteIn(_Body):
    deploy_branch: str = Field(description="the branch whose pushes deploy (a short name)", examples=["main"],
                               min_length=1, max_length=180, json_schema_extra={"pattern": BRANCH_PATTERN})


class GitRemoteView(BaseModel):
    app: str
    url: str = Field(description="the git remote: push to it with a deployer token as the password")
    deploy_branch: str
    pushes: list[GitPushView]

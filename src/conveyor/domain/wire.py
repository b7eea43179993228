"""The wire contracts between the control plane, the agents and the routers.

These Pydantic models are the only types the three processes share. The agent
and the router import this module and the API client, never control-plane code,
so that one host's data plane keeps working when the control plane is down and
so that each side can be tested alone against canned JSON.

Every document here is *declarative and versioned*: the control plane publishes
the whole desired state (not a diff), with a monotonically increasing
``version``; consumers long-poll with ``after=<version they hold>`` and apply
the whole document atomically. Nothing is lost when a poll is missed.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

API_PREFIX = "/api/v1"
#: The largest integer SQL stores (a signed 64-bit column): ids and versions beyond it are refused
#: as bad input (422) instead of overflowing the database driver (500).
INT64_MAX = 2**63 - 1

#: The header that pins a request to one release of an environment (for testing
#: a canary by hand). The value is the release number.
PIN_HEADER = "X-Conveyor-Release"
#: The cookie with the same meaning as :data:`PIN_HEADER`.
PIN_COOKIE = "conveyor-release"


#: What an agent writes to disk instead of a secret's value; a NUL byte, so it can never be a real
#: environment value (no environment variable can hold one).
WITHHELD = "\x00withheld"


def baseline_route(release: int) -> int:
    """The routing-table and metrics id of a canary's *baseline*: fresh instances of the stable
    release ``release``, routed and measured apart from the stable ones (Kayenta's practice), so
    canary and baseline are compared like for like. Encoded as ``-release``: release numbers
    themselves are always positive, and routers treat the id as opaque."""
    return -release


def deployment_fingerprint(state: str, verdicts: int, progress: dict[str, object]) -> str:
    """What a deployment watcher has seen: the long-poll ``seen=`` value (changes when anything shown does)."""
    import json

    return f"{state}:{verdicts}:{json.dumps(progress, sort_keys=True, default=str)}"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False)


# ---------------------------------------------------------------------------
# Routing: control plane -> router
# ---------------------------------------------------------------------------


class RouteInstance(_Wire):
    """One ready instance the router may send requests to."""

    id: str
    address: str = Field(description="host:port reachable from the router, e.g. 127.0.0.1:41234")


class RouteRelease(_Wire):
    """A release of an environment and its share of the environment's traffic.

    ``weight`` is relative to the other releases of the same environment that
    have at least one instance (weights 95/5 mean 95% and 5%). A release with
    weight 0 gets no unpinned traffic but can still be reached by pinning.
    """

    release: int
    weight: int = Field(ge=0, le=100_000)
    instances: list[RouteInstance] = Field(default_factory=list)


class RouteEnvironment(_Wire):
    """An environment of an app as the router sees it: hostnames and releases."""

    app: str
    env: str
    hosts: list[str] = Field(description="lower-case Host header values, without port")
    releases: list[RouteRelease] = Field(default_factory=list)
    sticky: bool = Field(
        default=False,
        description="keep a client on one release for the whole rollout (cookie based)",
    )


class RouteCertificate(_Wire):
    """A certificate the routers serve over TLS, for the names it covers (SNI picks it).

    The routing table is the only way a private key leaves the control plane in
    plain text (it is stored sealed there), and only to routers; routers keep
    it in their 0600 state file and never show it (``/table`` redacts it).
    """

    names: list[str] = Field(description="DNS names it serves, lower case; '*.example.com' covers one label")
    cert_pem: str = Field(description="the leaf certificate, then its chain (PEM)")
    key_pem: str = Field(repr=False, description="the private key (PEM, unencrypted)")
    fingerprint: str = Field(default="", description="sha256 of the leaf certificate (DER), hex: changes on renewal")


class RouteHttps(_Wire):
    """HTTPS settings of one domain: redirect plain HTTP to it (308), HSTS."""

    host: str
    redirect: bool = Field(default=True, description="answer plain HTTP with 308 to https:// when a certificate covers the host")
    hsts_max_age: int = Field(default=0, ge=0, description="Strict-Transport-Security max-age in seconds; 0 = no header")


class AcmeChallenge(_Wire):
    """An ACME HTTP-01 challenge: routers answer ``GET /.well-known/acme-challenge/{token}`` over
    plain HTTP with ``key_authorization`` (RFC 8555 §8.3), for any host."""

    token: str
    key_authorization: str


class RoutingTable(_Wire):
    """The whole routing table. Applied atomically by every router."""

    version: int = 0
    environments: list[RouteEnvironment] = Field(default_factory=list)
    certificates: list[RouteCertificate] = Field(default_factory=list)
    https: list[RouteHttps] = Field(default_factory=list)
    acme_challenges: list[AcmeChallenge] = Field(default_factory=list)


# ---------------------------------------------------------------------------
# Desired state: control plane -> agent
# ---------------------------------------------------------------------------


class HealthCheck(_Wire):
    path: str = "/"
    timeout_s: float = 2.0
    interval_s: float = 1.0


class ResourceLimits(_Wire):
    """An instance's cgroup limits (``[limits]`` of ``conveyor.toml``); None = unlimited."""

    memory: int | None = Field(None, description="bytes")
    cpu: float | None = Field(None, description="cores")
    pids: int | None = None


class InstanceUsage(_Wire):
    """What an instance uses now, from its cgroups."""

    memory_bytes: int | None = None
    cpu_seconds: float | None = None
    pids: int | None = None


class DesiredInstance(_Wire):
    """One process the agent must keep running.

    The agent picks the port, sets ``PORT`` (and ``HOST=127.0.0.1`` or the
    host's address) in the environment, runs ``command`` through the shell in
    the unpacked image, and reports readiness from ``health``.
    """

    id: str
    app: str
    env: str
    release: int
    image: str = Field(description="image digest, sha256:<64 hex>")
    command: str
    environment: dict[str, str] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="secret environment variables, in clear for this host only: the agent keeps them in "
        "memory and never writes them to disk (its state file holds WITHHELD instead)",
    )
    health: HealthCheck = Field(default_factory=HealthCheck)
    limits: ResourceLimits | None = Field(None, description="None: the agent's defaults")
    once: bool = Field(False, description="run once and report EXITED with the exit code; never restarted (the release command)")
    interrupts: int = Field(
        0, ge=0, le=INT64_MAX,
        description="times a one-off command was interrupted (Ctrl-C of `conveyor run`): the agent sends SIGINT "
        "to its process group once per increment; not part of what the process is (no restart)",
    )

    def withheld(self) -> bool:
        """Whether this spec came from the agent's state file without its secrets' values."""
        return any(v == WITHHELD for v in self.secrets.values())

    def without_secrets(self) -> DesiredInstance:
        """This spec with every secret value replaced by :data:`WITHHELD` (what may go to disk)."""
        return self.model_copy(update={"secrets": {k: WITHHELD for k in self.secrets}})


class DesiredState(_Wire):
    """Everything one host should run. Instances absent here must be stopped."""

    version: int = 0
    host: str
    instances: list[DesiredInstance] = Field(default_factory=list)


# ---------------------------------------------------------------------------
# Actual state: agent -> control plane
# ---------------------------------------------------------------------------


class InstanceState(StrEnum):
    PENDING = "pending"  # known, not started yet (image being fetched)
    STARTING = "starting"  # process running, readiness not passed yet
    READY = "ready"  # readiness passed; routable
    UNHEALTHY = "unhealthy"  # was ready, liveness failing now
    CRASHED = "crashed"  # exited; will be restarted after a backoff
    CRASHLOOP = "crashloop"  # restarted too often in a short time; still retried, slowly
    FAILED = "failed"  # cannot run at all (bad image, fetch failed)
    STOPPING = "stopping"  # being stopped because it is no longer desired
    EXITED = "exited"  # a run-once process (release command) ended; see exit_code


class InstanceStatus(_Wire):
    id: str
    state: InstanceState
    port: int | None = None
    pid: int | None = None
    restarts: int = 0
    exit_code: int | None = None
    message: str = ""
    started_at: float | None = None
    ready_at: float | None = None
    usage: InstanceUsage | None = None
    limits: ResourceLimits | None = None
    sandbox: str = Field("", description="how it is isolated: 'bubblewrap' or why not")


class AgentStatus(_Wire):
    """The report an agent sends after every change and at least every few seconds."""

    host: str
    address: str = Field(description="IP the routers use to reach this host's instances")
    desired_version: int = Field(ge=0, le=INT64_MAX, description="version of the DesiredState this report reflects")
    instances: list[InstanceStatus] = Field(default_factory=list)
    agent_version: str = ""
    sandbox: str = Field("", description="'bubblewrap', or why instances on this host are not sandboxed")
    labels: dict[str, str] = Field(default_factory=dict, max_length=64,
                                   description="the host's labels (`conveyor agent --label k=v`): environments select hosts by them")
    capacity: int | None = Field(None, ge=0, le=100_000,
                                 description="most instances this host runs (`--capacity`); null: no limit")
    memory: int | None = Field(None, ge=0, le=INT64_MAX,
                               description="bytes of memory this host offers to instances' limits (`--memory`); null: not counted")


class LogChunk(_Wire):
    """Output of one instance, shipped by the agent (at-least-once, deduplicated by offset)."""

    instance: str
    offset: int = Field(ge=0, description="byte offset of ``data`` in the instance's log")
    data: str


class LogBatch(_Wire):
    host: str
    chunks: list[LogChunk] = Field(default_factory=list)


# ---------------------------------------------------------------------------
# Images: control plane (artifact store) -> agent
# ---------------------------------------------------------------------------


class LayerRef(_Wire):
    digest: str = Field(description="sha256:<hex> of the layer archive (tar.gz) bytes")
    size: int
    role: str = Field(description="'deps' (third-party dependencies) or 'app' (the app's files)")


class ImageConfig(_Wire):
    processes: dict[str, str] = Field(default_factory=dict, description="process type -> command, e.g. web")
    python: str | None = Field(default=None, description="'3.11' when the image carries Python deps")
    env: dict[str, str] = Field(default_factory=dict)


class ImageManifest(_Wire):
    """An image: an ordered list of layers and how to run it.

    The image's digest is the sha256 of this manifest's canonical JSON
    (``canonical_json``), so equal content gives an equal digest.
    """

    schema_version: int = 1
    layers: list[LayerRef]
    config: ImageConfig = Field(default_factory=ImageConfig)

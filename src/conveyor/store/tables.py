"""The SQL schema (SQLAlchemy Core). Alembic migrations in ``migrations/`` create it.

Portable by construction: only types both SQLite and PostgreSQL have (JSON is
SQLAlchemy's JSON type; times are UTC epoch seconds as floats, so no timezone
handling differs between backends). Every change to this file needs a migration.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    PrimaryKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

apps = Table(
    "apps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(40), nullable=False, unique=True),
    Column("team", String(40), nullable=True, index=True),  # who owns it: DORA keys per team
    Column("created_at", Float, nullable=False),
    Column("created_by", String(100), nullable=False, default=""),
)

environments = Table(
    "environments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("app_id", Integer, ForeignKey("apps.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(40), nullable=False),
    # The release the environment serves (None before the first deploy).
    Column("current_release", Integer, nullable=True),
    # Routing weights: {"<release>": weight}. Routed = releases listed here.
    Column("routes", JSON, nullable=False, default=dict),
    Column("sticky", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("app_id", "name", name="uq_environments_app_name"),
)

# An image is content-addressed, so the same digest can belong to several apps
# (or be built from several commits): the row is per (app, digest).
images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest", String(80), nullable=False, index=True),
    Column("app_id", Integer, ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("manifest", JSON, nullable=False),  # wire.ImageManifest
    Column("app_manifest", JSON, nullable=False),  # the validated conveyor.toml
    Column("size", Integer, nullable=False, default=0),
    Column("test_status", String(16), nullable=False, default="none"),  # passed|failed|none
    Column("commit", JSON, nullable=True),  # {sha, author, message, time, dirty}
    Column("build_id", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("app_id", "digest", name="uq_images_app_digest"),
)

builds = Table(
    "builds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("app_id", Integer, ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("state", String(16), nullable=False),  # queued|running|succeeded|failed
    Column("source", JSON, nullable=False),  # how it was obtained: {"kind": "upload"} / {"kind": "git", ...}
    Column("image_digest", String(80), nullable=True),
    Column("error", Text, nullable=True),
    Column("created_by", String(100), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
)

releases = Table(
    "releases",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("env_id", Integer, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("image_digest", String(80), nullable=False),
    # How instances of this release run: command, environment, health, instances.
    Column("config", JSON, nullable=False),
    # pending (being deployed) | live | superseded | failed | rolled_back
    Column("status", String(16), nullable=False),
    Column("created_by", String(100), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("live_at", Float, nullable=True),
    # When it stopped taking traffic (superseded or rolled back): its instances
    # are kept warm until retired_at + bake, for an instant rollback.
    Column("retired_at", Float, nullable=True),
    UniqueConstraint("env_id", "number", name="uq_releases_env_number"),
)

deployments = Table(
    "deployments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("env_id", Integer, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # deploy | rollback
    Column("strategy", String(16), nullable=False),
    Column("state", String(20), nullable=False),
    Column("from_release", Integer, nullable=True),
    Column("to_release", Integer, nullable=True),
    Column("image_digest", String(80), nullable=True),
    Column("params", JSON, nullable=False, default=dict),  # strategy settings, frozen at creation
    Column("progress", JSON, nullable=False, default=dict),  # state-machine memory (step, timers)
    Column("reason", Text, nullable=False, default=""),
    # A user's command (promote, pause, resume, abort) waiting for the orchestrator;
    # only the API sets it and only the orchestrator clears it, so neither
    # overwrites the other's writes to ``progress``.
    Column("command", JSON, nullable=True),
    # A pipeline promotion waiting for a person (migration 0008_pipelines): {"state": "pending" |
    # "approved" | "rejected", "from_env", "from_deployment", "by", "at", "reason"}; None: no approval.
    Column("approval", JSON, nullable=True),
    Column("created_by", String(100), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    # Row lease for several control-plane replicas: who drives it, until when.
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Float, nullable=True),
)

instances = Table(
    "instances",
    metadata,
    Column("id", String(120), primary_key=True),
    Column("env_id", Integer, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("release", Integer, nullable=False),
    Column("host", String(100), nullable=False, index=True),
    Column("role", String(16), nullable=False, default="main"),  # main | canary | baseline | worker
    # The process type it runs ([run] / Procfile): "web" is routed and health-checked; any other
    # (role "worker") runs beside it, unrouted.
    Column("process", String(40), nullable=False, default="web", server_default="web"),
    # A one-off command (`conveyor run`, process "run"): what it runs instead of a process type's.
    Column("command", Text, nullable=True),
    # How many times that command was interrupted (Ctrl-C of `conveyor run`): the agent sends SIGINT
    # to it once per increment (a count, not a flag, so the desired state stays declarative).
    Column("interrupts", Integer, nullable=False, default=0, server_default="0"),
    Column("created_at", Float, nullable=False),
    # Set when the instance is to go: it leaves the routing table at once (the
    # router drains its in-flight requests) and the row, hence the process, is
    # deleted only after the release's drain timeout.
    Column("draining_since", Float, nullable=True),
)

hosts = Table(
    "hosts",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("address", String(100), nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("desired_version", Integer, nullable=False, default=0),
    Column("status", JSON, nullable=False),  # the last wire.AgentStatus
    Column("drained_at", Float, nullable=True),  # `conveyor hosts drain`: no new instances, the old move away
    Column("drained_by", String(100), nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Float, nullable=False, index=True),
    Column("app", String(40), nullable=True, index=True),
    Column("env", String(40), nullable=True),
    Column("kind", String(40), nullable=False),
    Column("actor", String(100), nullable=False, default=""),
    Column("origin", String(100), nullable=False, default=""),
    Column("message", Text, nullable=False),
    Column("data", JSON, nullable=False, default=dict),
)

verdicts = Table(
    "verdicts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("deployment_id", Integer, ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("step", Integer, nullable=False),
    Column("judge", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("numbers", JSON, nullable=False, default=dict),
)

counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Integer, nullable=False),
    Column("note", Text, nullable=False, default=""),
)

# Per-release request series scraped from the routers: 1 s points for the last
# hour, 60 s points for 30 days (``resolution``). ``latency`` is a Histogram JSON.
metric_points = Table(
    "metric_points",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("env_id", Integer, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
    Column("release", Integer, nullable=False),
    Column("resolution", Integer, nullable=False),
    Column("t", Float, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("latency", JSON, nullable=False),
    # Requests that arrived (completions + the change of the routers' in-flight gauge): the
    # autoscaler's load. NULL in points stored before migration 0013 (read as ``requests``).
    Column("arrivals", Integer, nullable=True),
    UniqueConstraint("env_id", "release", "resolution", "t", name="uq_metric_points_key"),
)

# Web UI sessions (conveyor.web.session_store): SHA-256 of the session id (the cookie) and of the
# token it signs in with, never either in clear, so a copy of the database signs nobody in.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False),
    Column("started_at", Float, nullable=False, index=True),
    # The token sealed with a key stream derived from the session id (migration 0004): a scoped
    # ``cvt_`` token cannot be found again from its hash, and the id is stored only as a hash.
    Column("token_sealed", Text, nullable=True),
)

# Leader leases between control-plane replicas sharing one database (repo.take_lease). Migration
# 0003 creates the row "orchestrator": only its holder's orchestrator acts.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", Float, nullable=False),
)

# Domains users give their environments (store/domains.py, services/domains.py). A name belongs
# to one environment. ``redirect``: plain HTTP gets a 308 to HTTPS once a certificate covers it;
# ``hsts_max_age`` > 0 adds Strict-Transport-Security over HTTPS. ``cert_status`` and
# ``cert_error`` say where its certificate stands ("none", "ok", "failed: ..."), for
# `conveyor domains list` and the UI.
domains = Table(
    "domains",
    metadata,
    Column("name", String(253), primary_key=True),
    Column("env_id", Integer, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("redirect", Boolean, nullable=False, default=True),
    Column("hsts_max_age", Integer, nullable=False, default=0),
    Column("cert_status", String(32), nullable=False, default="none"),
    Column("cert_error", Text, nullable=False, default=""),
    # ACME (services/acme.py): certificates obtained and renewed automatically, unless a file
    # certificate was added; failed orders are retried with backoff from ``next_attempt_at``.
    Column("acme", Boolean, nullable=False, default=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False, default=0.0),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(100), nullable=False, default=""),
)

# The certificate a domain serves (one per domain, replaced on renewal). The private key is
# sealed at rest (store/sealing.py, the key ring config secrets use too): only routers get it in
# plain text, in the routing table.
certificates = Table(
    "certificates",
    metadata,
    Column("domain", String(253), ForeignKey("domains.name", ondelete="CASCADE"), primary_key=True),
    Column("source", String(16), nullable=False),  # "file" (conveyor certs add) or "acme"
    Column("cert_pem", Text, nullable=False),  # leaf first, then the chain
    Column("key_sealed", Text, nullable=False),  # Sealer.seal(PEM key): a Fernet token
    Column("fingerprint", String(64), nullable=False),
    Column("names", JSON, nullable=False),
    Column("issuer", Text, nullable=False),
    Column("not_before", Float, nullable=False),
    Column("not_after", Float, nullable=False),
    Column("added_at", Float, nullable=False),
)

# HTTP-01 challenges of ACME orders in progress: routers answer
# GET /.well-known/acme-challenge/{token} with ``key_authorization`` (routing table).
acme_challenges = Table(
    "acme_challenges",
    metadata,
    Column("token", String(200), primary_key=True),
    Column("domain", String(253), ForeignKey("domains.name", ondelete="CASCADE"), nullable=False),
    Column("key_authorization", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# Scoped API credentials (store/tokens.py). The secret is never stored: ``secret_hash`` is the
# SHA-256 of the token's random part (a 32-byte random value needs no slow hash), found by ``id``
# (the token's public prefix) and compared in constant time. ``role``: admin | deployer | viewer
# for people and scripts, agent | router for a host's join token (``host`` says which).
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("role", String(16), nullable=False),
    Column("scope_app", String(40), nullable=True),
    Column("scope_team", String(40), nullable=True),
    Column("host", String(100), nullable=True),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(100), nullable=False, default=""),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
)

# Every mutating call (store/audit.py): who, what, on what, from where, with what outcome. The API
# has no way to change or delete a row (append-only); ``app`` is set when the target is an app's.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Float, nullable=False, index=True),
    Column("actor", String(100), nullable=False),
    Column("role", String(16), nullable=False),
    Column("action", String(200), nullable=False),
    Column("app", String(40), nullable=True, index=True),
    Column("target", String(300), nullable=False, default=""),
    Column("origin", String(100), nullable=False, default=""),
    Column("status", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
)

# An environment's config vars as set with `conveyor config set` (manifest ``vars`` are the defaults;
# these win). A secret's value is only ever stored sealed (``store/sealing.py``): ``value`` is NULL
# and ``sealed`` holds the Fernet token; a plain var has ``value`` and no ``sealed``. Each release
# snapshots the vars it ran with in its ``config``, so a rollback restores them with the image.
config_vars = Table(
    "config_vars",
    metadata,
    Column("env_id", Integer, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(100), nullable=False),
    Column("secret", Boolean, nullable=False, default=False),
    Column("value", Text, nullable=True),
    Column("sealed", Text, nullable=True),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(100), nullable=False, default=""),
    PrimaryKeyConstraint("env_id", "key", name="pk_config_vars"),
)

# How many instances of each process type an environment runs (`conveyor scale`): overrides the
# manifest's ``instances`` (for ``web``) and 1 (for other process types) without a new release.
#: `conveyor autoscale`: the policy per environment and process type (domain/autoscale.Policy), and
#: the last decision (shown by `conveyor autoscale APP`).
autoscalers = Table(
    "autoscalers",
    metadata,
    Column("env_id", Integer, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
    Column("process", String(40), nullable=False),
    Column("policy", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(100), nullable=False, default=""),
    Column("decided_at", Float, nullable=True),
    Column("decision", JSON, nullable=True),
    PrimaryKeyConstraint("env_id", "process", name="pk_autoscalers"),
)

process_counts = Table(
    "process_counts",
    metadata,
    Column("env_id", Integer, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
    Column("process", String(40), nullable=False),
    Column("count", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(100), nullable=False, default=""),
    PrimaryKeyConstraint("env_id", "process", name="pk_process_counts"),
)

# A rolling restart in progress (`conveyor restart`): the instances of ``process`` created before
# ``requested_at`` are replaced one at a time (a new one ready, then an old one drains); ``count`` is
# how many there were. The row goes when none is left (domain/processes.restart_plan).
restarts = Table(
    "restarts",
    metadata,
    Column("env_id", Integer, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
    Column("process", String(40), nullable=False),
    Column("requested_at", Float, nullable=False),
    Column("count", Integer, nullable=False),
    Column("requested_by", String(100), nullable=False, default=""),
    PrimaryKeyConstraint("env_id", "process", name="pk_restarts"),
)


#: Deploy locks (migration 0008_pipelines; domain/gate.py). ``env`` "" locks every environment of the app.
#: ``kind`` "manual" (`conveyor lock`) stops every deploy but a forced one; "rollback" (set by an
#: automatic rollback) stops automatic deploys only. One of each kind per app and environment.
locks = Table(
    "locks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("app_id", Integer, ForeignKey("apps.id", ondelete="CASCADE"), nullable=False),
    Column("env", String(40), nullable=False, default=""),
    Column("kind", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(100), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("deployment_id", Integer, nullable=True),
    UniqueConstraint("app_id", "env", "kind", name="uq_locks_app_env_kind"),
)

#: Freeze windows (migration 0008_pipelines; domain/gate.py parses ``spec`` in time zone ``tz``).
freezes = Table(
    "freezes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("app_id", Integer, ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("env", String(40), nullable=False, default=""),
    Column("spec", String(100), nullable=False),
    Column("tz", String(64), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("created_by", String(100), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
)

# A deploy train: a batch of commits of one git repository (oldest first, ``commits``: [{sha, time,
# author, message}]) deployed to one environment. ``collecting`` takes new commits (up to
# ``max_commits``) until the environment is free; ``running`` tries them (domain/bisection.py);
# ``shipped`` (all good), ``blocked`` (``culprit`` found: {position, sha, outcome, reason}; commits after
# it wait for a fix), ``halted`` (no answer; ``reason`` says why). ``shipped``: the position of the newest
# commit live through this train (-1: none).
trains = Table(
    "trains",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("env_id", Integer, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("repo_url", Text, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("commits", JSON, nullable=False),
    Column("max_commits", Integer, nullable=False),
    Column("trigger", String(100), nullable=False, default=""),
    Column("culprit", JSON, nullable=True),
    Column("shipped", Integer, nullable=False, default=-1),
    Column("reason", Text, nullable=False, default=""),
    Column("created_by", String(100), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
)

# One try of one commit of a train: its build, then its canary deployment; ``outcome`` (a
# domain.bisection outcome) once either ended. The runner fills the ids as it goes, each in the
# transaction that made the thing, so a killed runner resumes from the row.
train_steps = Table(
    "train_steps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("train_id", Integer, ForeignKey("trains.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("build_id", Integer, nullable=True),
    Column("image_digest", String(80), nullable=True),
    Column("deployment_id", Integer, nullable=True, index=True),
    Column("outcome", String(16), nullable=True),
    Column("reason", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
)

# The git repository an app builds from when its forge sends a push webhook (`conveyor repo set`):
# pushes to ``branch`` build that commit and deploy it to ``env``. The shared secret that signs the
# webhooks is sealed (``store/sealing.py``), like config secrets.
app_repos = Table(
    "app_repos",
    metadata,
    Column("app_id", Integer, ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("branch", String(200), nullable=False),
    Column("env", String(40), nullable=False),
    Column("secret_sealed", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(100), nullable=False, default=""),
)

# Every signed webhook delivery an app received, by the forge's delivery id: a second delivery with
# the same id is a replay and is refused. What became of it (build, deployment, reason) is its log.
hook_deliveries = Table(
    "hook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("app_id", Integer, ForeignKey("apps.id", ondelete="CASCADE"), nullable=False),
    Column("delivery", String(100), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("event", String(40), nullable=False),
    Column("sha", String(64), nullable=False, default=""),
    Column("outcome", String(16), nullable=False),  # pong|ignored|refused|building|deploying|failed
    Column("reason", Text, nullable=False, default=""),
    Column("build_id", Integer, nullable=True),
    Column("deployment_id", Integer, nullable=True),
    Column("at", Float, nullable=False),
    UniqueConstraint("app_id", "delivery", name="uq_hook_deliveries_app_delivery"),
)

# Where an app's events are sent (`conveyor notify add`): a signed JSON webhook or a Slack incoming
# webhook. The URL (a Slack one is its own secret) and the signing secret are sealed. ``cursor`` is the
# last event id fanned out to the outbox for it: a new target starts at the newest event.
notify_targets = Table(
    "notify_targets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("app_id", Integer, ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # json | slack
    Column("url_sealed", Text, nullable=False),
    Column("url_shown", String(2000), nullable=False),
    Column("secret_sealed", Text, nullable=True),
    Column("events", JSON, nullable=False, default=list),  # groups; empty = all
    Column("cursor", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(100), nullable=False, default=""),
)

# One notification to send (the outbox): written from the event log by the sender loop, then sent,
# retried with backoff and kept as the delivery log (`conveyor notifications log`).
notify_outbox = Table(
    "notify_outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("target_id", Integer, ForeignKey("notify_targets.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("event_id", Integer, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # pending|retrying|delivered|failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=True, index=True),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("last_at", Float, nullable=True),
    UniqueConstraint("target_id", "event_id", name="uq_notify_outbox_target_event"),
)

# `git push conveyor main` (services/gitremote.py, services/continuous.py): each app's git settings
# (the branch whose pushes deploy) and every push with the commits it carried (DORA's lead time
# counts each of them, not only the image's head commit).
git_remotes = Table(
    "git_remotes",
    metadata,
    Column("app_id", Integer, ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True),
    Column("deploy_branch", String(200), nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(100), nullable=False, default=""),
)

git_pushes = Table(
    "git_pushes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("app_id", Integer, ForeignKey("apps.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("ref", String(200), nullable=False),
    Column("old_sha", String(64), nullable=False),
    Column("new_sha", String(64), nullable=False),
    Column("commits", JSON, nullable=False, default=list),  # [{sha, time, author, message}], newest first
    Column("action", String(16), nullable=False),  # deploy | store
    # received → building → shipped | failed (deploy); stored (store)
    Column("state", String(16), nullable=False),
    Column("detach", Boolean, nullable=False, default=False),
    Column("build_id", Integer, nullable=True),
    Column("deployment_id", Integer, nullable=True, index=True),
    Column("detail", Text, nullable=False, default=""),
    Column("pushed_by", String(100), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
)

# How many instances of each process type were ready, and the count in force (`conveyor scale` or
# the autoscaler's), over time: a row when either changes (a step function, so one row may hold
# for hours), sampled once a second by the orchestrator; pruned after 30 days like the 60 s series.
# The metrics page graphs it against the load (migration 0012_instance_counts).
instance_counts = Table(
    "instance_counts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("env_id", Integer, ForeignKey("environments.id", ondelete="CASCADE"), nullable=False),
    Column("process", String(40), nullable=False),
    Column("t", Float, nullable=False),
    Column("ready", Integer, nullable=False),
    Column("count", Integer, nullable=False),
    UniqueConstraint("env_id", "process", "t", name="uq_instance_counts_key"),
)

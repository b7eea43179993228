"""The app manifest, ``conveyor.toml``: parsing and validation (no I/O beyond reading it).

Why Pydantic under a thin layer: the models give exact types and defaults for
free; the layer turns Pydantic's error locations into messages a developer can
act on, naming the file, the key and what is expected, e.g.
``conveyor.toml: [health] timeout: expected a duration like "2s" or "500ms", got "soon"``.

A Procfile ``web:`` line is accepted when ``[run]`` is absent (Heroku habit).
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from conveyor.domain.autoscale import Policy, PolicyError, check_policy
from conveyor.domain.bisection import DEFAULT_MAX_COMMITS, MAX_COMMITS, MIN_COMMITS
from conveyor.domain.limits import Capacity, LimitError, Limits, parse_limits
from conveyor.domain.placement import SelectorError, parse_selector

MANIFEST_NAME = "conveyor.toml"
APP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
ENV_NAME_RE = APP_NAME_RE
_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*(ms|s|m|h))+\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
#: The longest duration any setting accepts (30 days). Why a ceiling: a duration feeds deadlines
#: (``now + bake``); NaN or infinity (TOML has ``nan`` and ``inf``; a 400-digit number overflows to
#: ``inf``) makes every comparison false, so a release would never be stopped.
MAX_DURATION = 30 * 86400.0
#: The most instances, surge or unavailable instances a setting accepts.
MAX_INSTANCES = 100


class ManifestError(ValueError):
    """A manifest is malformed. The message names the file, the key and what is expected."""


def parse_duration(value: object) -> float:
    """``"2s"``, ``"500ms"``, ``"1m30s"``, ``"1h"`` or a number of seconds → seconds.

    Only finite durations of at most :data:`MAX_DURATION` pass (see there why).
    """
    if isinstance(value, bool):
        raise ValueError(f'expected a duration like "2s" or "500ms", got {value!r}')
    if isinstance(value, int | float):
        seconds = _finite_seconds(value)
        if seconds < 0:
            raise ValueError(f"expected a positive duration, got {value}")
    elif isinstance(value, str) and len(value) <= 64 and _DURATION_RE.match(value):
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(value))
    else:
        raise ValueError(f'expected a duration like "2s" or "500ms", got {_short(value)}')
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError(f"expected a duration of at most 30 days (2592000 s), got {_short(value)}")
    return seconds


def _finite_seconds(value: int | float) -> float:
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        seconds = math.inf if value > 0 else -math.inf
    if math.isnan(seconds):
        raise ValueError(f"expected a duration, got {value}")
    return seconds


def _short(value: object) -> str:
    """``repr(value)``, cut to 60 characters: an error message must stay readable."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _host_selector(value: str) -> str:
    """A label selector (``"role=web,zone!=b"``), checked here so a typo fails at deploy time, not when
    nothing gets placed."""
    try:
        return str(parse_selector(value))
    except SelectorError as exc:
        raise ValueError(str(exc)) from None


HostSelector = Annotated[str, AfterValidator(_host_selector)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AppSection(_Section):
    name: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not APP_NAME_RE.match(v):
            raise ValueError(
                f"expected a lower-case name of letters, digits and '-', starting with a letter, got {v!r}"
            )
        return v


def _no_nul(v: str | None) -> str | None:
    if v is not None and "\x00" in v:
        raise ValueError("expected text without NUL characters (\\0), which no process argument can hold")
    return v


Text = Annotated[str, AfterValidator(_no_nul)]


def _var_name(name: str) -> str:
    """An environment variable's name: what ``execve`` can pass (no ``=``, no NUL, not empty)."""
    if not name or "=" in name or "\x00" in name:
        raise ValueError(f"expected a variable name without '=' or NUL characters, got {_short(name)}")
    return name


VarName = Annotated[str, AfterValidator(_var_name)]


class BuildSection(_Section):
    command: Text | None = None


class TestSection(_Section):
    command: Text | None = None
    timeout: Duration = 300.0


class ReleaseSection(_Section):
    """``[release] command``: run once per new release, before any of its instances takes traffic
    (database migrations); a non-zero exit or a timeout fails the deployment with nothing moved."""

    command: str | None = None
    timeout: Duration = 600.0


class HealthSection(_Section):
    path: Text = "/"
    timeout: Duration = 2.0
    interval: Duration = 1.0

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"expected a URL path starting with '/', got {v!r}")
        return v


class CanaryStep(_Section):
    weight: int = Field(ge=1, le=100)
    duration: Duration = Field(alias="for", default=30.0)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


Strategy = Literal["bluegreen", "rolling", "canary"]

#: Defaults of ``drain_timeout`` and ``bake`` (seconds); the orchestrator falls back to them for a
#: release whose stored config lacks the key.
DEFAULT_DRAIN_TIMEOUT = 10.0
DEFAULT_BAKE = 120.0


class DeploySection(_Section):
    strategy: Strategy = "bluegreen"
    #: how long new instances may take to become ready before the deployment fails
    ready_timeout: Duration = 60.0
    #: how long removed instances keep serving their in-flight requests
    drain_timeout: Duration = DEFAULT_DRAIN_TIMEOUT
    #: how long the previous release stays warm (instant rollback) after a switch
    bake: Duration = DEFAULT_BAKE
    max_surge: int = Field(default=1, ge=0, le=MAX_INSTANCES)
    max_unavailable: int = Field(default=0, ge=0, le=MAX_INSTANCES)
    steps: list[CanaryStep] = Field(default_factory=list)
    baseline: bool = False
    analysis: dict[str, Any] = Field(default_factory=dict)
    #: blue/green: judge the new release on pinned traffic for ``preview_for`` before the switch
    pre_promotion_analysis: bool = False
    preview_for: Duration = 60.0
    #: blue/green: switch by itself (after ``auto_promote_after``), or wait for `conveyor promote`
    auto_promote: bool = True
    auto_promote_after: Duration = 0.0
    #: the hosts this environment's instances may run on: a label selector, e.g. "role=web,zone!=b"
    hosts: HostSelector = ""
    #: deploy trains: at most this many commits per deployment (domain/bisection.py)
    max_commits: int = Field(default=DEFAULT_MAX_COMMITS, ge=MIN_COMMITS, le=MAX_COMMITS)


class AutoscaleSection(_Section):
    """``[env.NAME.autoscale.PROCESS]``: the policy `conveyor autoscale` sets, kept with the code. The
    same names and defaults as its options (durations as "10s", "5m"); exactly one target."""

    min: int = Field(ge=0, le=1000)
    max: int = Field(ge=1, le=1000)
    target_inflight: float | None = None
    target_rps: float | None = None
    target_p95: float | None = None
    tolerance: float = Policy.tolerance
    window: Duration = Policy.window
    up_step: int = Policy.up_step
    up_percent: float = Policy.up_percent
    up_period: Duration = Policy.up_period
    down_window: Duration = Policy.down_window
    down_step: int = Policy.down_step
    down_period: Duration = Policy.down_period
    period: Duration = Policy.period
    up_sigma: float = Policy.up_sigma
    up_window: Duration = Policy.up_window

    @model_validator(mode="after")
    def _a_policy_that_works(self) -> AutoscaleSection:
        self.policy()
        return self

    def policy(self) -> Policy:
        """The checked :class:`Policy` (ValueError naming what to fix)."""
        targets = {m: v for m, v in (("inflight", self.target_inflight), ("rps", self.target_rps),
                                     ("p95", self.target_p95)) if v is not None}
        if len(targets) != 1:
            raise ValueError("give exactly one of target_inflight, target_rps or target_p95 (ms), "
                             f"got {len(targets)}")
        [(metric, target)] = targets.items()
        fields = self.model_dump(exclude={"target_inflight", "target_rps", "target_p95"})
        try:
            return check_policy(Policy(metric=metric, target=target, **fields), name=str)  # type: ignore[arg-type]
        except PolicyError as exc:
            raise ValueError(str(exc)) from None


class EnvSection(DeploySection):
    """Per-environment settings; any deploy setting here overrides ``[deploy]``."""

    instances: int = Field(default=1, ge=0, le=MAX_INSTANCES)
    vars: dict[VarName, Text] = Field(default_factory=dict)
    #: pipeline (domain/pipeline.py): promote here what this environment ran once it succeeded and baked
    after: str | None = None
    #: pipeline: a promotion into this environment waits for `conveyor approve` (manual judgment)
    approval: bool = False
    strategy: Strategy | None = None  # type: ignore[assignment]
    ready_timeout: Duration | None = None  # type: ignore[assignment]
    drain_timeout: Duration | None = None  # type: ignore[assignment]
    bake: Duration | None = None  # type: ignore[assignment]
    max_surge: int | None = Field(default=None, ge=0, le=MAX_INSTANCES)  # type: ignore[assignment]
    max_unavailable: int | None = Field(default=None, ge=0, le=MAX_INSTANCES)  # type: ignore[assignment]
    steps: list[CanaryStep] | None = None  # type: ignore[assignment]
    baseline: bool | None = None  # type: ignore[assignment]
    analysis: dict[str, Any] | None = None  # type: ignore[assignment]
    pre_promotion_analysis: bool | None = None  # type: ignore[assignment]
    preview_for: Duration | None = None  # type: ignore[assignment]
    auto_promote: bool | None = None  # type: ignore[assignment]
    auto_promote_after: Duration | None = None  # type: ignore[assignment]
    hosts: HostSelector | None = None  # type: ignore[assignment]
    max_commits: int | None = Field(default=None, ge=MIN_COMMITS, le=MAX_COMMITS)  # type: ignore[assignment]
    #: autoscaling policies per process type, applied when a deployment of this manifest is queued
    autoscale: dict[str, AutoscaleSection] = Field(default_factory=dict)


class AppManifest(_Section):
    """A validated ``conveyor.toml``."""

    app: AppSection = Field(default_factory=AppSection)
    build: BuildSection = Field(default_factory=BuildSection)
    run: dict[str, Text] = Field(default_factory=dict)
    health: HealthSection = Field(default_factory=HealthSection)
    test: TestSection = Field(default_factory=TestSection)
    release: ReleaseSection = Field(default_factory=ReleaseSection)
    deploy: DeploySection = Field(default_factory=DeploySection)
    env: dict[str, EnvSection] = Field(default_factory=dict)
    limits: dict[str, Any] = Field(default_factory=dict)  # checked by conveyor.domain.limits

    @property
    def name(self) -> str | None:
        return self.app.name

    @property
    def build_command(self) -> str | None:
        return self.build.command

    @property
    def test_command(self) -> str | None:
        return self.test.command

    @property
    def processes(self) -> dict[str, str]:
        return dict(self.run)

    def limits_for(self, process: str) -> Limits:
        """The resource limits of one process type (``[limits]``, ``[limits.<type>]``, defaults)."""
        try:
            return parse_limits(self.limits, sorted({*self.run, process}))[process]
        except LimitError as exc:
            raise ManifestError(str(exc)) from None

    def pipeline(self) -> dict[str, str | None]:
        """{environment: the environment it follows, or None}: the pipeline (domain/pipeline.py)."""
        return {name: env.after for name, env in self.env.items()}

    def environment(self, env: str) -> EnvSection:
        """The settings of one environment, with ``[deploy]`` defaults filled in."""
        own = self.env.get(env) or EnvSection(instances=1)
        merged = self.deploy.model_dump()
        merged.update({k: v for k, v in own.model_dump().items() if v is not None})
        merged["instances"] = own.instances
        merged["vars"] = own.vars
        merged["after"] = own.after
        merged["approval"] = own.approval
        return EnvSection.model_validate(merged)


#: Var names that look like secrets (``*PASSWORD*``, ``*TOKEN*``, ``*SECRET*``, ``*_KEY``): a manifest is
#: committed to git and shown to every reader, so such a var gets a warning pointing to
#: `conveyor config set --secret`.
_SECRET_LOOKING = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|_KEY$|^KEY$", re.IGNORECASE)


def secret_looking(names: list[str]) -> list[str]:
    """The names among ``names`` that look like secrets, sorted."""
    return sorted(n for n in names if _SECRET_LOOKING.search(n))


def secret_var_warnings(manifest: AppManifest) -> list[str]:
    """One warning per manifest var whose name looks like a secret, saying what to do instead."""
    return [
        f"{MANIFEST_NAME}: [env.{env}] vars.{key} looks like a secret, but a manifest is committed to git and "
        f"shown to every reader: use `conveyor config set APP --env {env} --secret {key}=…` (or --stdin {key})"
        for env, section in sorted(manifest.env.items())
        for key in secret_looking(list(section.vars))
    ]


def _key_of(loc: tuple[int | str, ...]) -> str:
    """('health', 'timeout') → '[health] timeout'; ('env', 'production', 'instances') → '[env.production] instances'."""
    parts = [str(p) for p in loc]
    if not parts:
        return "(top level)"
    if parts[0] in {"env"} and len(parts) >= 3:
        return f"[env.{parts[1]}] {'.'.join(parts[2:])}"
    if len(parts) == 1:
        return f"[{parts[0]}]"
    return f"[{parts[0]}] {'.'.join(parts[1:])}"


def _describe(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the manifest reference in README.md)"
    if kind == "missing":
        return "this key is required"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    got = err.get("input")
    if kind == "literal_error":
        return f"expected {msg.removeprefix('Input should be ')}, got {got!r}"
    if kind.endswith("_type") or kind.startswith(("int_", "greater", "less", "string_")):
        return f"{msg[0].lower() + msg[1:]}, got {_short(got)}"
    return msg


def parse_manifest(data: dict[str, Any], *, source: str = MANIFEST_NAME) -> AppManifest:
    """Validate already-parsed TOML data. Raises ManifestError naming every problem."""
    try:
        manifest = AppManifest.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {_key_of(e['loc'])}: {_describe(dict(e))}" for e in exc.errors()]
        raise ManifestError("\n".join(lines)) from None
    for env_name in manifest.env:
        if not ENV_NAME_RE.match(env_name):
            raise ManifestError(
                f"{source}: [env.{env_name}]: expected an environment name of lower-case letters, digits and '-'"
            )
    from conveyor.domain import pipeline

    problems = pipeline.check({name: env.after for name, env in manifest.env.items()}, source=source)
    for name, env in sorted(manifest.env.items()):
        if env.approval and env.after is None:
            problems.append(f"{source}: [env.{name}] approval: only a pipeline stage waits for approval; "
                            f"add after = \"ENV\" (the environment it follows) or remove approval")
    if problems:
        raise ManifestError("\n".join(problems))
    for proc, command in manifest.run.items():
        if not command.strip():
            raise ManifestError(f"{source}: [run] {proc}: expected a command, got an empty string")
    for name, env in sorted(manifest.env.items()):
        for proc in sorted(env.autoscale):
            if manifest.run and proc not in manifest.run:
                raise ManifestError(f"{source}: [env.{name}.autoscale.{proc}]: no process type {proc!r} in [run] "
                                    f"(it has {', '.join(sorted(manifest.run))})")
    problems = _analysis_problems(manifest, source)
    if problems:
        raise ManifestError("\n".join(problems))
    _check_limits(manifest, source, None)
    return manifest


#: A canary without ``steps`` runs these step durations (domain/strategies.py DEFAULT_STEPS).
_DEFAULT_STEP_SECONDS = (30.0, 30.0)


def _analysis_problems(manifest: AppManifest, source: str) -> list[str]:
    """``[deploy.analysis]`` and each ``[env.<name>.analysis]``: valid settings, and a warm-up shorter
    than every analysed window it applies to (each canary step, the blue/green preview).

    Why here and not only at deploy time: the CLI validates the manifest before it uploads a
    build, so a typo or an impossible setting is refused before anything is built. The analysis
    models live in ``conveyor.domain.analysis_config`` (imported here lazily: that module imports this
    one for durations).
    """
    from conveyor.domain.analysis_config import analysis_config_problems, parse_analysis_config

    problems = [f"{source}: [deploy.analysis] {key or '(table)'}: {msg}" for key, msg in analysis_config_problems(manifest.deploy.analysis)]
    # (where the warm-up is set, the table, the settings whose windows it is cut from)
    checks: list[tuple[str, dict[str, Any], DeploySection]] = []
    if not problems:
        checks.append(("[deploy.analysis] warmup", manifest.deploy.analysis, manifest.deploy))
    for env_name, env in manifest.env.items():
        if env.analysis is not None:
            found = analysis_config_problems(env.analysis)
            problems += [f"{source}: [env.{env_name}.analysis] {key or '(table)'}: {msg}" for key, msg in found]
            if not found:
                checks.append((f"[env.{env_name}.analysis] warmup", env.analysis, manifest.environment(env_name)))
        elif not problems:
            checks.append((f"[deploy.analysis] warmup (as used by [env.{env_name}])", manifest.deploy.analysis,
                           manifest.environment(env_name)))
    for where, table, settings in checks:
        config = parse_analysis_config(table)
        if config.warmup is None:
            continue
        windows: list[tuple[str, float]] = []
        if settings.strategy == "canary":
            steps = settings.steps or []
            windows += [(f"step {k + 1}", s.duration) for k, s in enumerate(steps)] or [
                (f"default step {k + 1}", d) for k, d in enumerate(_DEFAULT_STEP_SECONDS)
            ]
        if settings.pre_promotion_analysis and settings.preview_for is not None:
            windows.append(("preview_for", settings.preview_for))
        for label, seconds in windows:
            if config.warmup >= seconds:
                problems.append(
                    f"{source}: {where}: the warm-up ({config.warmup:g} s) must be shorter than the window "
                    f"it is cut from, but {label} lasts {seconds:g} s; shorten warmup or lengthen the step"
                )
                break
    return problems


def check_app_name(manifest: AppManifest, app: str, *, source: str = MANIFEST_NAME) -> None:
    """Refuse a source whose ``[app] name`` names another app than the one it is built for."""
    if manifest.name is not None and manifest.name != app:
        raise ManifestError(
            f"{source}: [app] name: this source is the app {manifest.name!r}, not {app!r}; "
            f"build it for {manifest.name!r}, or change [app] name (or remove it)"
        )


def loads_toml(text: str, *, source: str = MANIFEST_NAME) -> dict[str, Any]:
    """Parse TOML text into a ManifestError on any failure, including nesting so deep (a few hundred
    levels of arrays or inline tables) that the recursive parser runs out of stack."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ManifestError(f"{source}: nests too deeply to read; flatten the file") from None


def _check_limits(manifest: AppManifest, source: str, capacity: Capacity | None) -> None:
    """``[limits]`` and ``[limits.<type>]`` parse, and (with ``capacity``) fit the host."""
    try:
        parse_limits(manifest.limits, sorted({*manifest.run, "web"}), capacity, source)
    except LimitError as exc:
        raise ManifestError(str(exc)) from None


def host_capacity() -> Capacity:
    """This machine's memory and CPUs (what a limit may not exceed)."""
    import os

    return Capacity(memory=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), cpus=os.cpu_count() or 1)




def _procfile_processes(path: Path) -> dict[str, str]:
    processes: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise ManifestError(f"{path.name}:{n}: expected 'TYPE: command', got {raw!r}")
        processes[name.strip()] = command.strip()
    return processes


def load_manifest(app_dir: Path, *, app: str | None = None) -> AppManifest:
    """Read ``conveyor.toml`` (and a Procfile when ``[run]`` is absent) from an app's root.

    With ``app``, also refuse a manifest whose ``[app] name`` is another app's.
    """
    path = app_dir / MANIFEST_NAME
    data: dict[str, Any] = {}
    if path.exists() and not path.is_file():
        raise ManifestError(f"{MANIFEST_NAME}: expected a file, found a directory (or a link to one); "
                            f"make {MANIFEST_NAME} a regular file")
    if path.exists():
        try:
            data = loads_toml(path.read_text())
        except UnicodeDecodeError:
            raise ManifestError(f"{MANIFEST_NAME}: not valid UTF-8 text") from None
    manifest = parse_manifest(data)
    if app is not None:
        check_app_name(manifest, app)
    if not manifest.run:
        procfile = app_dir / "Procfile"
        if procfile.exists():
            manifest.run.update(_procfile_processes(procfile))
    if "web" not in manifest.run:
        raise ManifestError(
            f"{MANIFEST_NAME}: [run] web: expected the command that starts the web process "
            '(it must listen on 127.0.0.1:$PORT), e.g. web = "python app.py"; or a Procfile with a web: line'
        )
    _check_limits(manifest, MANIFEST_NAME, host_capacity())
    return manifest

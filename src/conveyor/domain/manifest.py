"""The app manifest, ``conveyor.toml``: parsing and validation (no I/O beyond reading it).

Why Pydantic under a thin layer: the models give exact types and defaults for
free; the layer turns Pydantic's error locations into messages a developer can
act on, naming the file, the key and what is expected, e.g.
``conveyor.toml: [health] timeout: expected a duration like "2s" or "500ms", got "soon"``.

A Procfile ``web:`` line is accepted when ``[run]`` is absent (Heroku habit).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

MANIFEST_NAME = "conveyor.toml"
APP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
ENV_NAME_RE = APP_NAME_RE
_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*(ms|s|m|h))+\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ManifestError(ValueError):
    """A manifest is malformed. The message names the file, the key and what is expected."""


def parse_duration(value: object) -> float:
    """``"2s"``, ``"500ms"``, ``"1m30s"``, ``"1h"`` or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError(f'expected a duration like "2s" or "500ms", got {value!r}')
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a positive duration, got {value}")
        return float(value)
    if isinstance(value, str) and _DURATION_RE.match(value):
        return sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(value))
    raise ValueError(f'expected a duration like "2s" or "500ms", got {value!r}')


Duration = Annotated[float, BeforeValidator(parse_duration)]


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


class BuildSection(_Section):
    command: str | None = None


class TestSection(_Section):
    command: str | None = None
    timeout: Duration = 300.0


class ReleaseSection(_Section):
    """``[release] command``: run once per new release, before any of its instances takes traffic
    (database migrations); a non-zero exit or a timeout fails the deployment with nothing moved."""

    command: str | None = None
    timeout: Duration = 600.0


class HealthSection(_Section):
    path: str = "/"
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
    max_surge: int = Field(default=1, ge=0)
    max_unavailable: int = Field(default=0, ge=0)
    steps: list[CanaryStep] = Field(default_factory=list)
    baseline: bool = False
    analysis: dict[str, Any] = Field(default_factory=dict)
    #: blue/green: judge the new release on pinned traffic for ``preview_for`` before the switch
    pre_promotion_analysis: bool = False
    preview_for: Duration = 60.0
    #: blue/green: switch by itself (after ``auto_promote_after``), or wait for `conveyor promote`
    auto_promote: bool = True
    auto_promote_after: Duration = 0.0


class EnvSection(DeploySection):
    """Per-environment settings; any deploy setting here overrides ``[deploy]``."""

    instances: int = Field(default=1, ge=0, le=100)
    vars: dict[str, str] = Field(default_factory=dict)
    strategy: Strategy | None = None  # type: ignore[assignment]
    ready_timeout: Duration | None = None  # type: ignore[assignment]
    drain_timeout: Duration | None = None  # type: ignore[assignment]
    bake: Duration | None = None  # type: ignore[assignment]
    max_surge: int | None = Field(default=None, ge=0)  # type: ignore[assignment]
    max_unavailable: int | None = Field(default=None, ge=0)  # type: ignore[assignment]
    steps: list[CanaryStep] | None = None  # type: ignore[assignment]
    baseline: bool | None = None  # type: ignore[assignment]
    analysis: dict[str, Any] | None = None  # type: ignore[assignment]
    pre_promotion_analysis: bool | None = None  # type: ignore[assignment]
    preview_for: Duration | None = None  # type: ignore[assignment]
    auto_promote: bool | None = None  # type: ignore[assignment]
    auto_promote_after: Duration | None = None  # type: ignore[assignment]


class AppManifest(_Section):
    """A validated ``conveyor.toml``."""

    app: AppSection = Field(default_factory=AppSection)
    build: BuildSection = Field(default_factory=BuildSection)
    run: dict[str, str] = Field(default_factory=dict)
    health: HealthSection = Field(default_factory=HealthSection)
    test: TestSection = Field(default_factory=TestSection)
    release: ReleaseSection = Field(default_factory=ReleaseSection)
    deploy: DeploySection = Field(default_factory=DeploySection)
    env: dict[str, EnvSection] = Field(default_factory=dict)

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

    def environment(self, env: str) -> EnvSection:
        """The settings of one environment, with ``[deploy]`` defaults filled in."""
        own = self.env.get(env) or EnvSection(instances=1)
        merged = self.deploy.model_dump()
        merged.update({k: v for k, v in own.model_dump().items() if v is not None})
        merged["instances"] = own.instances
        merged["vars"] = own.vars
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
        return f"{msg[0].lower() + msg[1:]}, got {got!r}"
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
    for proc, command in manifest.run.items():
        if not command.strip():
            raise ManifestError(f"{source}: [run] {proc}: expected a command, got an empty string")
    return manifest


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


def load_manifest(app_dir: Path) -> AppManifest:
    """Read ``conveyor.toml`` (and a Procfile when ``[run]`` is absent) from an app's root."""
    path = app_dir / MANIFEST_NAME
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ManifestError(f"{MANIFEST_NAME}: not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ManifestError(f"{MANIFEST_NAME}: not valid UTF-8 text") from None
    manifest = parse_manifest(data)
    if not manifest.run:
        procfile = app_dir / "Procfile"
        if procfile.exists():
            manifest.run.update(_procfile_processes(procfile))
    if "web" not in manifest.run:
        raise ManifestError(
            f"{MANIFEST_NAME}: [run] web: expected the command that starts the web process "
            '(it must listen on 127.0.0.1:$PORT), e.g. web = "python app.py"; or a Procfile with a web: line'
        )
    return manifest

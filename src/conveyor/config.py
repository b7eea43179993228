"""Where things live on disk, and the local client configuration.

``conveyor up`` writes ``client.json`` (URL + admin token) in the user's config
directory so that the CLI on the same machine needs no configuration; the
environment variables ``CONVEYOR_URL`` and ``CONVEYOR_TOKEN`` take precedence.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from conveyor import logfile

DEFAULT_API_PORT = 7700
DEFAULT_ROUTER_PORT = 7780


def default_data_dir() -> Path:
    return Path(os.environ.get("CONVEYOR_DATA_DIR") or platformdirs.user_data_dir("conveyor"))


def client_config_path() -> Path:
    return Path(os.environ.get("CONVEYOR_CONFIG") or Path(platformdirs.user_config_dir("conveyor")) / "client.json")


@dataclass
class ServerSettings:
    """Everything ``conveyor server`` needs. Paths are derived from ``data_dir``."""

    data_dir: Path
    admin_token: str
    database_url: str | None = None
    domain: str = "localhost"
    host: str = "127.0.0.1"
    port: int = DEFAULT_API_PORT
    build_workers: int = 2
    #: Run each build's own commands ([build], [test]) in bubblewrap as an unprivileged user, the data
    #: dir masked (conveyor.sandbox); where the host cannot, every build log says so.
    build_sandbox: bool = True
    keep_images: int = 10  # per app, besides every image a live or recent release uses
    viewer_tokens: list[str] = field(default_factory=list)  # may read, not change
    router_url: str | None = None  # shown to users ("open http://hello.localhost:7780")
    #: Most bytes of output kept per instance ($CONVEYOR_LOG_MAX_BYTES, default 8 MiB; see conveyor.logfile).
    log_max_bytes: int = field(default_factory=logfile.default_max_bytes)
    #: A host silent this long is lost (``domain.healing``; ``--host-lost-after``).
    host_lost_after: float = 15.0
    #: Log streams one token may follow at once ($CONVEYOR_LOG_FOLLOWERS_PER_TOKEN).
    log_followers_per_token: int = field(default_factory=lambda: int(os.environ.get("CONVEYOR_LOG_FOLLOWERS_PER_TOKEN") or 8))
    #: The control plane's URL as others reach it ($CONVEYOR_PUBLIC_URL): webhook URLs and the links in
    #: notifications point there. Default: http://HOST:PORT.
    public_url: str | None = field(default_factory=lambda: os.environ.get("CONVEYOR_PUBLIC_URL") or None)

    @property
    def base_url(self) -> str:
        """Where people and forges reach this control plane (``public_url``, else its listening address)."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'conveyor.db'}"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700: only the platform's user may enter.

    The control plane's data dir holds the database, the admin token and the image
    store; an app or another user on the host must not even list it.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` created 0600 from its first byte (no window where it is readable)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_or_create_token(data_dir: Path, given: str | None) -> str:
    """The admin token: the one given, else the one saved in the data dir, else a new one."""
    from conveyor.domain.access import MIN_TOKEN_LENGTH, token_shape_problem

    path = data_dir / "admin-token"
    private_dir(data_dir)
    if given:
        problem = token_shape_problem(given) or (
            f"too short ({len(given)} characters): use at least {MIN_TOKEN_LENGTH}" if len(given) < MIN_TOKEN_LENGTH else None)
        if problem:
            raise ValueError(f"--admin-token: {problem}")
        if not path.exists() or path.read_text().strip() != given:
            write_private(path, given)
        return given
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return path.read_text().strip()
    token = "cvy_" + secrets.token_urlsafe(24)
    write_private(path, token)
    return token


@dataclass
class ClientConfig:
    url: str
    token: str | None
    router_url: str | None = None
    #: Where each setting came from, for `conveyor context` and error messages.
    source: str = ""  # the client config file read ("" when none)
    url_source: str = "default"
    token_source: str = "none"


def save_client_config(url: str, token: str, router_url: str | None, *, replace: bool = False) -> tuple[Path, str]:
    """Save the URL and token for the CLI on this machine; never silently replace another platform's.

    Returns ``(path, what happened)``: ``"written"``, ``"unchanged"``, or ``"kept"`` when
    the file names another control plane or token and ``replace`` is False (the caller says so).
    """
    path = client_config_path()
    private_dir(path.parent)
    doc = {"url": url, "token": token, "router_url": router_url}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if old == doc:
            return path, "unchanged"
        if old is not None and not replace:
            return path, "kept"
    write_private(path, json.dumps(doc, indent=2))
    return path, "written"


def load_client_config() -> ClientConfig:
    """The CLI's control plane: ``$CONVEYOR_URL``/``$CONVEYOR_TOKEN`` over the saved client config
    (``$CONVEYOR_CONFIG`` or the user's config dir), over the default URL."""
    saved: dict[str, str | None] = {}
    path = client_config_path()
    source = ""
    if path.exists():
        try:
            saved = json.loads(path.read_text())
            source = str(path)
        except (OSError, ValueError):
            saved = {}
    env_url, env_token = os.environ.get("CONVEYOR_URL"), os.environ.get("CONVEYOR_TOKEN")
    url = env_url or saved.get("url") or f"http://127.0.0.1:{DEFAULT_API_PORT}"
    token = env_token or saved.get("token")
    return ClientConfig(
        url=url.rstrip("/"), token=token, router_url=saved.get("router_url"), source=source,
        url_source="CONVEYOR_URL" if env_url else (source if saved.get("url") else "default"),
        token_source="CONVEYOR_TOKEN" if env_token else (source if saved.get("token") else "none"),
    )

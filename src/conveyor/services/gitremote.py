"""Each app as a git remote: bare repositories under the data dir, served by Git's own
``git http-backend`` (run as a CGI subprocess), with Conveyor's pre-receive hook.

Why Git's own backend: the smart HTTP protocol (capabilities, side-band, push options,
quarantine, fsck) is Git's to get right; we only authenticate, pick the repository and
pass bytes both ways, streaming (the hook's progress reaches the pusher as it happens).

Safety, because a pushed repository's content is hostile:

* the bare repositories (``DATA_DIR/git/APP.git``, the directory 0700) are created by us
  from an empty template, and every git process here runs with
  ``core.hooksPath=DATA_DIR/git-hooks`` (ours only: a push carries objects and refs,
  never hooks or config; a committed ``.git/hooks`` or ``.gitconfig`` is just a blob);
  no system or global git config is read (``GIT_CONFIG_NOSYSTEM``, ``GIT_CONFIG_GLOBAL``);
* ``receive.fsckObjects`` checks every object, ``receive.maxInputSize`` and the request
  body limit bound a push, ref names are checked by the hook (``domain/gitpush.py``);
* only the smart protocol's three paths are served (no raw files of the repository);
* the pusher's token reaches the hook through the CGI environment (its API calls act as
  the pusher), never a command line.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from conveyor.build.proc import signal_group
from conveyor.domain.gitpush import branch_problem
from conveyor.services import auth
from conveyor.services.continuous import pushes_of
from conveyor.services.errors import Forbidden
from conveyor.services.schemas import GitRemoteView
from conveyor.services.state import ControlPlane
from conveyor.store import gitpushes, repo

log = logging.getLogger("conveyor.git")

#: The largest request body (a pack) accepted, and git's own limit on a pushed pack.
MAX_PUSH_BYTES = 200 * 1024 * 1024
HOOK_MODULE = "conveyor.cli.githook"


def repos_dir(cp: ControlPlane) -> Path:
    return cp.settings.data_dir / "git"


def hooks_dir(cp: ControlPlane) -> Path:
    return cp.settings.data_dir / "git-hooks"


def remote_url(base_url: str, app: str) -> str:
    return f"{base_url.rstrip('/')}/git/{app}.git"


def api_url(cp: ControlPlane) -> str:
    """How the hook (a child of this process, on this machine) reaches the control plane's API."""
    host = cp.settings.host
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cp.settings.port}"


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def install_hook(cp: ControlPlane) -> Path:
    """Write our hooks (the only ones git will run for these repositories): pre-receive builds and
    tests a push (and may reject it); post-receive, once the branch has moved, ships it or puts it
    in the next deploy train."""
    hooks = _private_dir(hooks_dir(cp))
    for name, arg in (("pre-receive", ""), ("post-receive", " post-receive")):
        hook = hooks / name
        script = (f"#!/bin/sh\n# Conveyor's {name} hook (services/gitremote.py writes it)\n"
                  f"exec '{sys.executable}' -m {HOOK_MODULE}{arg}\n")
        if not hook.exists() or hook.read_text() != script:
            tmp = hooks / f".{name}.{uuid.uuid4().hex}"
            tmp.write_text(script)
            os.chmod(tmp, 0o700)
            os.replace(tmp, hook)
    return hooks


def repo_path(cp: ControlPlane, app: str) -> Path:
    """Where the app's bare repository is (``ensure_repo`` makes it)."""
    return repos_dir(cp) / f"{app}.git"


def ensure_repo(cp: ControlPlane, app: str, branch: str) -> Path:
    """The app's bare repository, created on first use (from an empty template: no sample hooks)."""
    root = _private_dir(repos_dir(cp))
    path = root / f"{app}.git"
    if (path / "HEAD").exists():
        return path
    template = _private_dir(root / ".empty-template")
    tmp = root / f".{app}.{uuid.uuid4().hex}.tmp"
    subprocess.run(["git", "init", "--bare", "-q", f"--template={template}", f"--initial-branch={branch}", str(tmp)],
                   check=True, env=git_env(cp), capture_output=True, timeout=30)
    try:
        os.rename(tmp, path)
    except OSError:  # another request made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def git_env(cp: ControlPlane) -> dict[str, str]:
    """The environment of every git process here: no system/global config, our hooks, safe receive."""
    config = {
        "core.hooksPath": str(hooks_dir(cp)),
        "receive.advertisePushOptions": "true",
        "receive.fsckObjects": "true",
        "receive.maxInputSize": str(MAX_PUSH_BYTES),
        "http.receivepack": "true",
        "core.fsmonitor": "false",
        "uploadpack.allowAnySHA1InWant": "false",
    }
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(hooks_dir(cp)),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_COUNT": str(len(config)),
    }
    if os.environ.get("PYTHONPATH"):  # the hooks import the same conveyor as this process
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    for i, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


# -- who may fetch or push --------------------------------------------------------


class GitRefused(Exception):
    """A git request refused before git runs: HTTP status and a sentence git shows as ``remote: …``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def token_of(authorization: str) -> str | None:
    """The token in ``Authorization: Basic`` (the password; the user name when the password is empty)
    or ``Bearer``."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return password or user or None


def authorize(cp: ControlPlane, authorization: str, origin: str, app: str, writes: bool) -> auth.Principal:
    """The principal of a git request, or :class:`GitRefused` (401 no/bad token, 403, 404 unknown app)."""
    basic = {"WWW-Authenticate": 'Basic realm="Conveyor"'}
    token = token_of(authorization)
    if not token:
        raise GitRefused(401, "Conveyor needs a token: use a deployer token as the password "
                              "(`conveyor git-remote APP --add` sets this up)", basic)
    try:
        p = auth.authenticate(cp, token, origin)
    except auth.SignInRefused as exc:
        raise GitRefused(exc.status, f"Conveyor refused the token: {exc.message}", basic) from None
    with cp.engine.connect() as conn:
        if not _app_exists(conn, app):
            raise GitRefused(404, f"app {app!r} not found: create it with `conveyor apps create {app}`")
    try:
        auth.person(p)
        if writes:
            auth.write_check(cp, p, app=app)
    except Forbidden as exc:
        raise GitRefused(403, f"Conveyor refused the push: {exc}") from None
    return p


def _app_exists(conn: Connection, app: str) -> bool:
    try:
        repo.get_app(conn, app)
    except repo.NotFound:
        return False
    return True


# -- running git http-backend -----------------------------------------------------


@dataclass
class CgiResponse:
    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]


def _parse_cgi_head(head: bytes) -> tuple[int, dict[str, str]]:
    status, headers = 200, {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if not name:
            continue
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers[name.strip()] = value.strip()
    return status, headers


def _prepare(cp: ControlPlane, app: str) -> str:
    """Our hook and the app's repository in place; the app's deploy branch."""
    with cp.engine.connect() as conn:
        branch = gitpushes.deploy_branch(conn, int(repo.get_app(conn, app)["id"]))
    install_hook(cp)
    ensure_repo(cp, app, branch)
    return branch


async def serve(cp: ControlPlane, p: auth.Principal, token: str, app: str, path_info: str, method: str,
                query: str, headers: dict[str, str], body: AsyncIterator[bytes]) -> CgiResponse:
    """Run ``git http-backend`` for one request; its response as it streams out."""
    branch = await asyncio.to_thread(_prepare, cp, app)
    env = git_env(cp) | {
        "GIT_PROJECT_ROOT": str(repos_dir(cp)),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": path_info,
        "REQUEST_METHOD": method,
        "QUERY_STRING": query,
        "CONTENT_TYPE": headers.get("content-type", ""),
        "REMOTE_USER": p.name,
        "REMOTE_ADDR": p.origin,
        # what the hook needs: where the API is, who pushes (the token acts as the pusher), which branch deploys
        "CONVEYOR_GIT_API": api_url(cp),
        "CONVEYOR_GIT_TOKEN": token,
        "CONVEYOR_GIT_APP": app,
        "CONVEYOR_GIT_BRANCH": branch,
        "CONVEYOR_GIT_PUSHER": p.name,
        "PYTHONUNBUFFERED": "1",
    }
    for header, var in (("content-encoding", "HTTP_CONTENT_ENCODING"), ("git-protocol", "GIT_PROTOCOL"),
                        ("content-length", "CONTENT_LENGTH")):
        if headers.get(header):
            env[var] = headers[header]
    proc = await asyncio.create_subprocess_exec(
        "git", "http-backend", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=str(repos_dir(cp)), start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr

    async def feed() -> None:
        sent = 0
        try:
            async for chunk in body:
                sent += len(chunk)
                if sent > MAX_PUSH_BYTES:
                    log.warning("git push to %s by %s: request body over %d bytes, stopped", app, p.name,
                                MAX_PUSH_BYTES)
                    break
                stdin.write(chunk)
                await stdin.drain()
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            stdin.close()

    async def drain_stderr() -> None:
        kept = b""
        while chunk := await stderr.read(64 * 1024):  # read it all (a full pipe would stall git), keep the start
            kept = (kept + chunk)[:2000]
        if kept.strip():
            log.info("git http-backend (%s, %s): %s", app, p.name, kept.decode(errors="replace").strip())

    feeder = asyncio.create_task(feed())
    errors = asyncio.create_task(drain_stderr())
    head = b""
    while b"\r\n\r\n" not in head and b"\n\n" not in head:
        chunk = await stdout.read(4096)
        if not chunk:
            break
        head += chunk
        if len(head) > 64 * 1024:
            break
    sep = b"\r\n\r\n" if b"\r\n\r\n" in head else b"\n\n"
    raw_head, found, rest = head.partition(sep)
    status, out_headers = _parse_cgi_head(raw_head) if found else (502, {"Content-Type": "text/plain"})
    if not found:  # git http-backend died before answering: say so rather than pass garbage on
        log.warning("git http-backend for %s answered no CGI head: %r", app, head[:200])
        rest = b"Conveyor's git backend failed; try again, and tell the platform's operator if it persists\n"

    async def stream() -> AsyncIterator[bytes]:
        finished = False
        try:
            if rest:
                yield rest
            while found:
                chunk = await stdout.read(64 * 1024)
                if not chunk:
                    break
                yield chunk
            finished = True
        finally:
            if not finished:  # the pusher went away (Ctrl-C): stop git and our hook with it
                signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=30)
            except asyncio.TimeoutError:
                signal_group(proc.pid, signal.SIGTERM)
                await proc.wait()
            feeder.cancel()
            await asyncio.gather(feeder, errors, return_exceptions=True)

    return CgiResponse(status, out_headers, stream())


# -- settings as the API shows them -------------------------------------------------


def remote(cp: ControlPlane, app: str, base_url: str) -> GitRemoteView:
    with cp.engine.connect() as conn:
        branch = gitpushes.deploy_branch(conn, int(repo.get_app(conn, app)["id"]))
    return GitRemoteView(app=app, url=remote_url(base_url, app), deploy_branch=branch, pushes=pushes_of(cp, app, 20))


def summary(cp: ControlPlane, app: str) -> dict[str, Any]:
    """What the app page (and its JSON twin) shows of git: the remote's path, deploy branch, last pushes."""
    with cp.engine.connect() as conn:
        branch = gitpushes.deploy_branch(conn, int(repo.get_app(conn, app)["id"]))
    return {"path": f"/git/{app}.git", "deploy_branch": branch,
            "pushes": [v.model_dump(mode="json") for v in pushes_of(cp, app, 10)]}


def set_branch(cp: ControlPlane, app: str, branch: str, base_url: str, actor: str = "", origin: str = "") -> GitRemoteView:
    problem = branch_problem(branch)
    if problem:
        raise ValueError(problem)
    with cp.engine.begin() as conn:
        app_id = int(repo.get_app(conn, app)["id"])
        gitpushes.set_deploy_branch(conn, app_id, branch, cp.clock(), actor)
        repo.record_event(conn, "git_branch_set", f"pushes to {branch} deploy {app} (set by {actor or 'someone'})",
                          app=app, actor=actor, origin=origin, data={"deploy_branch": branch})
    return remote(cp, app, base_url)

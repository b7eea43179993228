"""The hooks of every app's git remote: pre-receive builds and tests a push, or rejects it;
post-receive ships it (or batches it into the next deploy train) once the branch has moved.

Git runs it (``python -m conveyor.cli.githook``, written by ``services/gitremote.py``) inside
``git receive-pack`` before any ref moves, with the pushed objects in quarantine
(``GIT_QUARANTINE_PATH``: ``git archive`` and ``git log`` see them). Everything it prints
reaches the pusher live as ``remote: …`` lines; exiting non-zero rejects the whole push, so
the remote never holds a commit of the deploy branch that did not build and pass its tests.
The deployment comes after git has moved the branch (post-receive, whose output the pusher
sees too): a push that arrives while its environment deploys rides in the next deploy train,
which a deployment inside pre-receive could not do (a second push's pre-receive would run
before the first one's branch had moved). It is a client of the control plane's own API, acting as the pusher: the token comes
from the environment the control plane gave ``git http-backend`` (never a command line).

With ``git push -o detach`` it returns as soon as the build is queued; the control plane
ships the image when the build ends (``services/continuous.py``).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conveyor.cli.client import Api, CliError
from conveyor.config import ClientConfig
from conveyor.domain.deploy_machine import TERMINAL
from conveyor.domain.gitpush import MAX_COMMITS, PushError, RefUpdate, parse_updates, plan, push_options
from conveyor.domain.manifest import MANIFEST_NAME

#: The largest source archive uploaded (the control plane has its own limits too).
MAX_ARCHIVE_BYTES = 100 * 1024 * 1024
_SEP = "\x1f"


def say(line: str = "") -> None:
    """One line to the pusher (stderr: git shows it as ``remote: …`` as soon as it is written)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def step(line: str) -> None:
    say(f"-----> {line}")


def indent(line: str) -> None:
    say(f"       {line}")


class Rejected(Exception):
    """The push is refused; the message says why and what to do."""


def git(*args: str, text: bool = True) -> Any:
    res = subprocess.run(["git", *args], capture_output=True, text=text, timeout=300)
    if res.returncode != 0:
        err = res.stderr if text else res.stderr.decode(errors="replace")
        raise Rejected(f"git {args[0]} failed: {err.strip()[:500]}")
    return res.stdout


def commits_of(update: RefUpdate) -> list[dict[str, Any]]:
    """The commits the update brings, newest first: ``old..new``; for a new branch, those on no ref yet.

    The first push to an empty remote brings the project's whole history, which was written before
    Conveyor shipped anything: only its head commit counts (else years-old commits would be
    "changes" with years of lead time)."""
    if update.created and not git("for-each-ref", "--count=1").strip():
        span = ["--max-count=1", update.new]
    else:
        span = [update.new, "--not", "--all"] if update.created else [f"{update.old}..{update.new}"]
    out = git("log", f"--max-count={MAX_COMMITS}", f"--format=%H{_SEP}%ct{_SEP}%an{_SEP}%s", *span)
    commits = []
    for line in out.splitlines():
        sha, ctime, author, subject = (line.split(_SEP) + ["", "", ""])[:4]
        commits.append({"sha": sha, "time": float(ctime), "author": author[:200], "message": subject[:1000]})
    return commits


def has_manifest(sha: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{sha}:{MANIFEST_NAME}"], capture_output=True).returncode == 0


def archive(sha: str) -> bytes:
    data: bytes = git("archive", "--format=tar.gz", sha, text=False)
    if len(data) > MAX_ARCHIVE_BYTES:
        raise Rejected(f"the source is {len(data) / 1e6:.0f} MB compressed; the limit is "
                       f"{MAX_ARCHIVE_BYTES / 1e6:.0f} MB (keep build output and data out of git)")
    return data


def build(api: Api, app: str, update: RefUpdate, commits: list[dict[str, Any]]) -> dict[str, Any]:
    head = commits[0] if commits else {"sha": update.new, "time": None, "author": None, "message": None}
    info = {"sha": update.new, "author": head["author"], "message": head["message"], "time": head["time"],
            "dirty": False, "ref": update.ref, "repository": f"git push to {app}"}
    data = archive(update.new)
    return api.post(f"/apps/{app}/builds", content=data, headers={"Content-Type": "application/gzip"},
                    params={"commit": json.dumps(info)})  # type: ignore[no-any-return]


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def follow_build(api: Api, build_id: int) -> dict[str, Any]:
    """Stream the build's log to the pusher; the finished build (Rejected when it or its tests failed)."""
    step(f"Building #{build_id}…")
    for line in api.stream_lines(f"/builds/{build_id}/log", follow=True):
        indent(line)
    b: dict[str, Any] = api.get(f"/builds/{build_id}")
    if b["state"] != "succeeded":
        raise Rejected(f"build {build_id} failed: {b.get('error') or 'see the log above'}")
    image = b["image"] or {}
    step(f"Building… done, {megabytes(int(image.get('size') or 0))}, image {image.get('digest', '')[7:19]}")
    if image.get("test_status") == "failed":
        raise Rejected(f"the tests failed (see above): image {image['digest'][7:19]} is kept but not deployed")
    step(f"Tests: {image.get('test_status')}")
    return b


def follow_deployment(api: Api, dep_id: int) -> dict[str, Any]:
    seen = {"verdicts": 0, "line": ""}

    def show(d: dict[str, Any]) -> None:
        for v in d.get("verdicts", [])[seen["verdicts"]:]:
            where = "bake" if (v.get("step") or 0) < 0 else f"step {(v.get('step') or 0) + 1}"
            indent(f"analysis {where} {v['judge']}: {v['outcome']} — {v['reason']}")
        seen["verdicts"] = len(d.get("verdicts", []))
        weights = (d.get("progress") or {}).get("weights")
        line = f"#{d['id']} {d['state']}" + (
            " (traffic " + ", ".join(f"r{k} {w}%" for k, w in weights.items()) + ")" if weights else "")
        if line != seen["line"]:
            indent(line)
            seen["line"] = line

    return api.wait_deployment(dep_id, on_change=show)


def app_url(api: Api, app: str, env: str) -> str | None:
    status = api.get(f"/apps/{app}")
    found = next((e for e in status.get("environments", []) if e["name"] == env), None)
    return found.get("url") if found else None


def run(env: Mapping[str, str], stdin: str) -> int:
    app, branch = env["CONVEYOR_GIT_APP"], env.get("CONVEYOR_GIT_BRANCH", "main")
    try:
        updates = parse_updates(stdin)
        options = push_options(env)
    except PushError as exc:
        say(f"error: {exc}")
        return 1
    decisions = plan(updates, branch)
    refused = [d for d in decisions if d.action == "reject"]
    if refused:
        for d in refused:
            say(f"error: {d.reason}")
        return 1
    config = ClientConfig(url=env["CONVEYOR_GIT_API"], token=env["CONVEYOR_GIT_TOKEN"], source="git push",
                          url_source="the control plane", token_source="the pusher's token")
    started = time.monotonic()
    try:
        with Api(config, timeout=120) as api:
            for d in decisions:
                if d.action == "deploy":
                    ship(api, app, d.update, detach="detach" in options, started=started)
            for d in decisions:
                if d.action == "store":
                    commits = [] if d.update.deleted else commits_of(d.update)
                    api.post(f"/apps/{app}/pushes", json={"ref": d.update.ref, "old": d.update.old,
                                                          "new": d.update.new, "action": "store",
                                                          "commits": commits})
                    step(f"{d.update.ref}: {d.reason}")
    except Rejected as exc:
        say(f"error: {exc}")
        say("error: push rejected: the branch is unchanged on the remote")
        return 1
    except CliError as exc:
        say(f"error: {exc}")
        return 1
    return 0


@contextmanager
def deploy_lock(app: str, update: RefUpdate) -> Iterator[None]:
    """One push of the deploy branch at a time, and only from where the branch is now.

    Git checks a ref's old value only after the hook, so two racing pushes would both build and
    ship. Under this lock (a file in the repository, which is the hook's working directory) the
    second waits, then finds the branch moved and is refused before anything is built. Git moves
    the ref only after the hook has exited, so an accepted push hands the lock to a short-lived
    child that keeps it until the ref shows the new commit (at most ``HOLD_S``)."""
    with open(Path(os.environ.get("GIT_DIR", ".")) / "conveyor-deploy.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            step(f"Waiting for another push to {app} to finish…")
            fcntl.flock(f, fcntl.LOCK_EX)
        now = subprocess.run(["git", "rev-parse", "--verify", "-q", update.ref], capture_output=True, text=True)
        current = now.stdout.strip() if now.returncode == 0 else "0" * len(update.old)
        if current != update.old:
            raise Rejected(f"{update.ref.removeprefix('refs/heads/')} moved to {current[:10]} while you pushed: "
                           "pull, then push again")
        yield
        hold_until_moved(update)


#: How long an accepted push keeps the deploy lock after the hook, waiting for git to move the ref.
HOLD_S = 10.0


def hold_until_moved(update: RefUpdate) -> None:
    """Fork a child that keeps the (inherited) lock until ``update.ref`` is at ``update.new``.

    The child leaves the hook's session and closes its output: git waits for the hook's
    output to end, and must not wait for this child, which waits for git."""
    if os.fork() != 0:
        return
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        env = {k: v for k, v in os.environ.items()  # the quarantine goes once the push is in
               if k not in ("GIT_QUARANTINE_PATH", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES")}
        deadline = time.monotonic() + HOLD_S
        while time.monotonic() < deadline:
            now = subprocess.run(["git", "rev-parse", "-q", "--verify", update.ref], capture_output=True, text=True,
                                 env=env)
            if now.stdout.strip() == update.new:
                break
            time.sleep(0.02)
    finally:
        os._exit(0)


def ship(api: Api, app: str, update: RefUpdate, *, detach: bool, started: float) -> None:
    with deploy_lock(app, update):
        ship_locked(api, app, update, detach=detach, started=started)


def ship_locked(api: Api, app: str, update: RefUpdate, *, detach: bool, started: float) -> None:
    if not has_manifest(update.new):
        raise Rejected(f"commit {update.new[:10]} has no {MANIFEST_NAME} at its root: run `conveyor init` in "
                       f"your checkout, commit {MANIFEST_NAME} and push again")
    commits = commits_of(update)
    step(f"Conveyor: {update.ref.removeprefix('refs/heads/')} of {app}, {len(commits)} new commit(s), "
         f"up to {update.new[:10]}")
    b = build(api, app, update, commits)
    body = {"ref": update.ref, "old": update.old, "new": update.new, "action": "deploy", "build": b["id"],
            "commits": commits, "detach": detach}
    if detach:
        push = api.post(f"/apps/{app}/pushes", json=body)
        step(f"Build #{b['id']} queued (push #{push['id']}, detached): it ships when it succeeds. "
             f"Follow it with `conveyor deployments {app}` or GET /api/v1/pushes/{push['id']}")
        return
    follow_build(api, int(b["id"]))
    push = api.post(f"/apps/{app}/pushes", json=body | {"received": True})
    if push["state"] == "failed":
        raise Rejected(f"not shipped: {push['detail']}")
    step(f"Accepted (push #{push['id']}): it ships as soon as the branch has moved")


def ship_received(api: Api, app: str, update: RefUpdate, *, started: float) -> None:
    """Post-receive: the branch has moved; the control plane ships the push (or puts it in the next
    deploy train when its environment is deploying), and this follows it for the pusher. It can no
    longer reject the push (the commits built and passed their tests): a failed deployment is said."""
    push = api.post(f"/apps/{app}/pushes/received", json={"ref": update.ref, "new": update.new})
    if push["state"] == "batched":
        step(push["detail"])
        return
    if push["deployment"] is None:
        say(f"error: not shipped: {push['detail']}")
        return
    dep_id = int(push["deployment"])
    env = str(api.get(f"/deployments/{dep_id}").get("env") or "production")
    step(f"Deploying as deployment #{dep_id} to {env}…")
    d = follow_deployment(api, dep_id)
    if d["state"] not in TERMINAL:  # paused: a person decides
        step(f"Deployment #{dep_id} is {d['state']}, waiting for a person: `conveyor promote {app}` or "
             f"`conveyor abort {app}`.")
        return
    if d["state"] != "succeeded":
        say(f"error: deployment #{dep_id} {d['state']}: {d.get('reason') or 'see above'}")
        return
    url = app_url(api, app, env)
    step(f"Released v{d['release']} to {env} in {time.monotonic() - started:.1f} s"
         + (f": {url}" if url else ""))
    for stage in d.get("pipeline") or []:  # the stages after this one: promoted after the bake, or approved
        if stage.get("env") != env and stage.get("waiting"):
            step(f"{stage['env']}: {stage['waiting']}")


def run_post(env: Mapping[str, str], stdin: str) -> int:
    """The post-receive hook: ship each accepted update of the deploy branch (exit status is ignored by git)."""
    app, branch = env["CONVEYOR_GIT_APP"], env.get("CONVEYOR_GIT_BRANCH", "main")
    try:
        updates = parse_updates(stdin)
        options = push_options(env)
    except PushError:
        return 0
    if "detach" in options:
        return 0  # the control plane ships a detached push when its build ends
    config = ClientConfig(url=env["CONVEYOR_GIT_API"], token=env["CONVEYOR_GIT_TOKEN"], source="git push",
                          url_source="the control plane", token_source="the pusher's token")
    started = time.monotonic()
    try:
        with Api(config, timeout=120) as api:
            for d in plan(updates, branch):
                if d.action == "deploy":
                    ship_received(api, app, d.update, started=started)
    except CliError as exc:
        say(f"error: {exc}")
        return 1
    return 0


def main() -> None:
    if sys.argv[1:] == ["post-receive"]:
        sys.exit(run_post(os.environ, sys.stdin.read()))
    sys.exit(run(os.environ, sys.stdin.read()))


if __name__ == "__main__":
    main()

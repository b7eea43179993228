"""One-off commands: `conveyor run APP -- CMD` in the current release's image and config.

A run is an instance row of process type ``run`` carrying its command: the host's agent runs it
once (``DesiredInstance.once``: never restarted, never routed, reported EXITED with its exit code),
with the release's environment and secrets, and ships its output like any instance's. The CLI
follows it (``output`` by byte offset, then the exit code). Ctrl-C is forwarded (``interrupt``: the
agent sends SIGINT, the command handles it and exits with its own code); a second Ctrl-C or the
timeout stops it (``stop``: the row goes, the agent sends SIGTERM, then SIGKILL). Starting,
interrupting and stopping are in the audit log.
"""

from __future__ import annotations

import secrets
from typing import Any

from conveyor import logfile
from conveyor.domain.placement import parse_selector, place
from conveyor.services import logs
from conveyor.services.state import ControlPlane
from conveyor.store import hosts, instances, repo
from conveyor.store.repo import Conflict, NotFound

#: The longest a run may last; the orchestrator-independent default of the CLI is one hour.
MAX_TIMEOUT = 24 * 3600.0
#: The agent's own lines in a log (start banner, exit note): not the command's output.
AGENT_PREFIX = "--- conveyor agent: "
#: Most bytes of output one poll returns.
OUTPUT_CHUNK = 256 * 1024


def start(cp: ControlPlane, app: str, env: str, command: str, actor: str = "", origin: str = "") -> dict[str, Any]:
    """Queue ``command`` on a live host, in the environment's current release; the run's id and host."""
    if not command.strip():
        raise ValueError("give the command to run after `--`, e.g. `conveyor run APP -- python manage.py migrate`")
    now = cp.clock()
    with cp.engine.begin() as conn:
        env_row = repo.get_env(conn, repo.get_app(conn, app)["id"], env)
        release = env_row["current_release"]
        if release is None:
            raise Conflict(f"{app}/{env} has no release to run a command in: deploy it first")
        cfg = repo.get_release(conn, env_row["id"], release)["config"] or {}
        placed = place(hosts.fleet(conn, now), 1, selector=parse_selector(cfg.get("hosts") or ""))
        if not placed.hosts:
            raise Conflict(f"no host can run it: {placed.reason} (`conveyor hosts`)")
        chosen = placed.hosts
        iid = f"{app}-{env}-r{release}-run-{secrets.token_hex(3)}"
        instances.add(conn, iid, env_row["id"], release, chosen[0], "run", now, "run", command)
        repo.bump_counter(conn, "desired")
        repo.record_event(conn, "run_started", f"{actor or 'someone'} ran {command!r} in release {release} on {chosen[0]}",
                          app=app, env=env, actor=actor, origin=origin,
                          data={"run": iid, "release": release, "host": chosen[0], "command": command})
    cp.notifier.poke("desired")
    return {"id": iid, "app": app, "env": env, "release": release, "host": chosen[0]}


def output(cp: ControlPlane, run_id: str, offset: int = 0) -> dict[str, Any]:
    """The run's state, exit code and output from byte ``offset`` (``next``: where to ask from next).
    ``done``: it exited and its whole output has arrived (the agent's exit note is in)."""
    with cp.engine.connect() as conn:
        row = instances.get(conn, run_id)
        if row is None or row["process"] != "run":
            raise NotFound(f"run {run_id!r} not found (it was stopped, or never existed)")
        _, st = hosts.instance_status_map(conn, cp.clock(), cp.started_at).get(run_id, (None, {}))
    path = cp.settings.logs_dir / f"{run_id}.log"
    log = logfile.SegmentedLog(path, cp.settings.log_max_bytes)
    state = st.get("state", "pending")
    exited = state == "exited"
    # the agent's exit note is the log's last line: once it is in, the output is complete
    complete = exited and any(logfile.split_stamp(line)[1].startswith(AGENT_PREFIX + f"{run_id} ") for line in log.tail(3))
    text, nxt = logs.output_from(path, offset, OUTPUT_CHUNK, final=complete, log_max_bytes=cp.settings.log_max_bytes)
    return {"id": run_id, "state": state, "exit_code": st.get("exit_code") if exited else None,
            "message": st.get("message", ""), "data": text, "next": nxt, "done": complete and nxt >= log.end()}


def interrupt(cp: ControlPlane, run_id: str, actor: str = "", origin: str = "") -> dict[str, Any]:
    """Forward a Ctrl-C: the agent sends the command SIGINT (once per call) and it goes on running until it
    exits by itself, as it would in a terminal. ``stop`` is the way to end it whatever it does."""
    with cp.engine.begin() as conn:
        row = instances.get(conn, run_id)
        if row is None or row["process"] != "run":
            raise NotFound(f"run {run_id!r} not found (it was stopped, or never existed)")
        count = instances.interrupt(conn, run_id)
        repo.bump_counter(conn, "desired")
        app, env = repo.app_env_names(conn, row["env_id"])
        repo.record_event(conn, "run_interrupted", f"run {run_id} interrupted (SIGINT) by {actor or 'someone'}",
                          app=app, env=env, actor=actor, origin=origin, data={"run": run_id, "interrupts": count})
    cp.notifier.poke("desired")
    return {"id": run_id, "interrupts": count}


def stop(cp: ControlPlane, run_id: str, reason: str, actor: str = "", origin: str = "") -> None:
    """End a run (Ctrl-C, its timeout, or it is done): the row goes and the agent stops the process."""
    with cp.engine.begin() as conn:
        row = instances.get(conn, run_id)
        if row is None or row["process"] != "run":
            return
        instances.delete_ids(conn, [run_id])
        repo.bump_counter(conn, "desired")
        app, env = repo.app_env_names(conn, row["env_id"])
        if reason != "done":
            repo.record_event(conn, "run_stopped", f"run {run_id} stopped: {reason}", app=app, env=env, actor=actor,
                              origin=origin, data={"run": run_id, "reason": reason})
    cp.notifier.poke("desired")

"""``{data_dir}/agent-state.json``: what a restarted agent needs to adopt its instances.

The agent writes this file (atomically: temporary file, fsync, rename) each
time an instance process starts or goes away, when the desired state changes
and when log offsets advance. A restarted agent reads it, keeps the records
whose process is still the same live process (pid *and* start time), and
supervises those instead of starting duplicates. The last desired state is
kept too, so instances are supervised (and restarted if they crash) even when
the agent restarts while the control plane is down.

A corrupt file is moved aside (``agent-state.json.corrupt-<time>``), never
silently overwritten, and the agent starts empty.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from conveyor.domain.wire import DesiredInstance, DesiredState

log = logging.getLogger("conveyor.agent")

FORMAT_VERSION = 1


@dataclass
class ProcessRecord:
    """One instance process as recorded on disk."""

    spec: DesiredInstance
    pid: int
    start_ticks: int
    port: int
    started_at: float
    restarts: int = 0
    ready_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec.without_secrets().model_dump(mode="json"),
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "port": self.port,
            "started_at": self.started_at,
            "restarts": self.restarts,
            "ready_at": self.ready_at,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ProcessRecord:
        return cls(
            spec=DesiredInstance.model_validate(raw["spec"]),
            pid=int(raw["pid"]),
            start_ticks=int(raw["start_ticks"]),
            port=int(raw["port"]),
            started_at=float(raw["started_at"]),
            restarts=int(raw.get("restarts", 0)),
            ready_at=None if raw.get("ready_at") is None else float(raw["ready_at"]),
        )


@dataclass
class AgentState:
    """The whole file."""

    desired: DesiredState | None = None
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    log_offsets: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "desired": None if self.desired is None else self.desired.model_copy(
                update={"instances": [i.without_secrets() for i in self.desired.instances]}).model_dump(mode="json"),
            "processes": {k: v.to_json() for k, v in sorted(self.processes.items())},
            "log_offsets": dict(sorted(self.log_offsets.items())),
        }


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # 0600 from creation: the state names every instance's pid and command (secrets' values are withheld).
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(path: Path, state: AgentState) -> None:
    write_atomic(path, json.dumps(state.to_json(), indent=1).encode())


def load(path: Path) -> AgentState:
    """Read the state file; a missing file is an empty state, a corrupt one is moved aside."""
    try:
        raw = json.loads(path.read_bytes())
        if not isinstance(raw, dict) or raw.get("format") != FORMAT_VERSION:
            raise ValueError(f"unknown format {raw.get('format') if isinstance(raw, dict) else type(raw).__name__!r}")
        desired = None if raw.get("desired") is None else DesiredState.model_validate(raw["desired"])
        processes = {str(k): ProcessRecord.from_json(v) for k, v in dict(raw.get("processes") or {}).items()}
        offsets = {str(k): int(v) for k, v in dict(raw.get("log_offsets") or {}).items()}
    except FileNotFoundError:
        return AgentState()
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        try:
            os.replace(path, aside)
        except OSError:
            aside = path
        log.error("agent state file %s is unreadable (%s); kept as %s, starting with no adopted instances", path, exc, aside)
        return AgentState()
    return AgentState(desired=desired, processes=processes, log_offsets=offsets)

"""agent-state.json: round trip, atomic replace, corrupt file kept aside."""

from __future__ import annotations

import json
from pathlib import Path

from conveyor.agent import statefile
from conveyor.domain.wire import DesiredInstance, DesiredState


def test_round_trip(tmp_path: Path) -> None:
    spec = DesiredInstance(id="a", app="hello", env="staging", release=2, image="sha256:" + "b" * 64, command="python app.py")
    state = statefile.AgentState(
        desired=DesiredState(version=7, host="h1", instances=[spec]),
        processes={"a": statefile.ProcessRecord(spec=spec, pid=123, start_ticks=456, port=40000, started_at=1.5, restarts=2, ready_at=2.5)},
        log_offsets={"a": 99},
    )
    path = tmp_path / "agent-state.json"
    statefile.save(path, state)
    loaded = statefile.load(path)
    assert loaded.desired == state.desired
    assert loaded.processes["a"] == state.processes["a"]
    assert loaded.log_offsets == {"a": 99}
    assert [p.name for p in tmp_path.iterdir()] == ["agent-state.json"]  # no temporary file left


def test_missing_file_is_empty(tmp_path: Path) -> None:
    loaded = statefile.load(tmp_path / "agent-state.json")
    assert loaded.desired is None and loaded.processes == {} and loaded.log_offsets == {}


def test_corrupt_file_is_moved_aside_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "agent-state.json"
    path.write_text('{"format": 1, "processes": {"a": {"pid": "x"')
    loaded = statefile.load(path)
    assert loaded.processes == {}
    aside = list(tmp_path.glob("agent-state.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text().startswith('{"format": 1')


def test_unknown_format_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "agent-state.json"
    path.write_text(json.dumps({"format": 99}))
    assert statefile.load(path).processes == {}
    assert list(tmp_path.glob("agent-state.json.corrupt-*"))

"""Secrets on the agent: in the instance's environment, never on disk; a spec read back from the
state file (secrets withheld) is the same spec and is not replaced, and cannot be started."""

from __future__ import annotations

import os
from pathlib import Path

from conveyor.agent import statefile
from conveyor.agent.process import build_env
from conveyor.agent.reconcile import Actual, Replace, plan, same_spec
from conveyor.domain.wire import WITHHELD, DesiredInstance, DesiredState

SECRET = "s3cr3t-value-that-must-not-touch-disk"


def _spec(**kw: object) -> DesiredInstance:
    base: dict[str, object] = dict(id="a", app="hello", env="production", release=2, image="sha256:" + "b" * 64,
                                   command="python app.py", environment={"PLAIN": "1"}, secrets={"DB_PASSWORD": SECRET})
    base.update(kw)
    return DesiredInstance(**base)  # type: ignore[arg-type]


def test_secret_is_in_the_process_environment(tmp_path: Path) -> None:
    env = build_env(_spec(), image_root=tmp_path, image_env={}, port=1234, address="127.0.0.1", home=str(tmp_path))
    assert env["DB_PASSWORD"] == SECRET and env["PLAIN"] == "1"


def test_state_file_never_holds_a_secret_and_is_0600(tmp_path: Path) -> None:
    spec = _spec()
    state = statefile.AgentState(
        desired=DesiredState(version=3, host="h", instances=[spec]),
        processes={"a": statefile.ProcessRecord(spec=spec, pid=1, start_ticks=2, port=3, started_at=4.0)},
    )
    path = tmp_path / "agent-state.json"
    statefile.save(path, state)
    raw = path.read_bytes()
    assert SECRET.encode() not in raw and b"DB_PASSWORD" in raw
    assert os.stat(path).st_mode & 0o777 == 0o600
    loaded = statefile.load(path)
    assert loaded.processes["a"].spec.withheld() and loaded.desired is not None and loaded.desired.instances[0].withheld()
    assert loaded.processes["a"].spec.secrets == {"DB_PASSWORD": WITHHELD}


def test_a_withheld_spec_is_the_same_spec_but_new_secret_names_are_not() -> None:
    fresh = _spec()
    saved = fresh.without_secrets()
    assert saved.withheld() and not fresh.withheld()
    assert same_spec(saved, fresh)
    assert plan([fresh], {"a": Actual(saved)}) == []  # an agent restart does not restart the instance
    other = _spec(secrets={"API_TOKEN": "x"})
    assert not same_spec(saved, other)
    assert plan([other], {"a": Actual(saved)}) == [Replace(other)]
    assert not same_spec(fresh, _spec(environment={"PLAIN": "2"}))


def test_an_interrupt_count_is_not_part_of_the_spec() -> None:
    """`conveyor run`'s Ctrl-C raises ``interrupts``: the agent signals the process, never restarts it."""
    running = _spec(once=True)
    interrupted = running.model_copy(update={"interrupts": 1})
    assert same_spec(running, interrupted)
    assert plan([interrupted], {"a": Actual(running)}) == []

"""Each host's desired state has a version of its own, by content: a change on one host leaves the
others' versions alone (so their agents are not answered), and a waiting agent's cheap check
(``desired_unchanged``) agrees with a fresh read."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, delete, insert, update

from conveyor.deploy.documents import desired_rows, desired_state, desired_unchanged
from conveyor.store.tables import instances
from store_world import T0, hello_world


def _engine(tmp_path: Path) -> Engine:
    return hello_world(tmp_path, {"command": "python app.py"}, [("i-a1", "a"), ("i-b1", "b")])


def _add(engine: Engine, iid: str, host: str) -> None:
    with engine.begin() as conn:
        conn.execute(insert(instances).values(id=iid, env_id=1, release=1, host=host, role="main", created_at=T0))


def test_a_hosts_version_moves_with_its_own_content_only(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    a1, b1 = desired_state(engine, "a"), desired_state(engine, "b")
    assert [i.id for i in a1.instances] == ["i-a1"] and a1.version >= 1
    assert desired_state(engine, "a").version == a1.version  # read again, unchanged: same version
    _add(engine, "i-a2", "a")
    a2 = desired_state(engine, "a")
    assert a2.version == a1.version + 1 and [i.id for i in a2.instances] == ["i-a1", "i-a2"]
    assert desired_state(engine, "b").version == b1.version  # not answered for a's change
    with engine.begin() as conn:
        conn.execute(delete(instances).where(instances.c.id == "i-a1"))
    assert desired_state(engine, "a").version == a2.version + 1
    with engine.begin() as conn:  # a one-off run's interrupt is content too (the agent forwards Ctrl-C)
        conn.execute(update(instances).where(instances.c.id == "i-b1").values(interrupts=1))
    assert desired_state(engine, "b").version == b1.version + 1
    assert desired_state(engine, "nobody").instances == []


def test_the_waiting_agents_check_agrees_with_a_fresh_read(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    a, b = desired_state(engine, "a"), desired_state(engine, "b")
    rows = desired_rows(engine)
    assert desired_unchanged("a", rows, a.version) and desired_unchanged("b", rows, b.version)
    assert not desired_unchanged("a", rows, a.version - 1)  # the agent holds an older one: answer it
    assert not desired_unchanged("nobody", rows, 1)  # never read: no version to hold
    _add(engine, "i-b2", "b")
    assert desired_unchanged("b", rows, b.version)  # rows read before the change: they cannot tell ...
    rows = desired_rows(engine)  # ... the read after its poke can
    assert not desired_unchanged("b", rows, b.version)
    assert desired_unchanged("a", rows, a.version)
    assert desired_state(engine, "b").version == b.version + 1

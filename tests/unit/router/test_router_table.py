"""Compiling routing tables: hosts, split, target identity across versions, the state file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.domain.wire import RouteEnvironment, RouteInstance, RouteRelease, RoutingTable
from conveyor.router.metrics import Metrics
from conveyor.router.table import TableFileError, compile_table, load_table_file, normalise_host, save_table_file


def table(version: int, releases: list[tuple[int, int, list[tuple[str, str]]]], sticky: bool = False) -> RoutingTable:
    return RoutingTable(
        version=version,
        environments=[
            RouteEnvironment(
                app="hello",
                env="production",
                hosts=["hello.localhost", "Hello.Example.COM"],
                sticky=sticky,
                releases=[
                    RouteRelease(release=r, weight=w, instances=[RouteInstance(id=i, address=a) for i, a in insts])
                    for r, w, insts in releases
                ],
            )
        ],
    )


@pytest.mark.parametrize(
    ("raw", "host"),
    [("hello.localhost", "hello.localhost"), ("HELLO.localhost:7780", "hello.localhost"), ("a.b.", "a.b"), ("[::1]:80", "[::1]"), (" x ", "x")],
)
def test_normalise_host(raw: str, host: str) -> None:
    assert normalise_host(raw) == host


def test_compile_hosts_and_split_newest_first() -> None:
    compiled, removed = compile_table(table(1, [(1, 90, [("a", "127.0.0.1:1")]), (2, 10, [("b", "127.0.0.1:2")]), (3, 50, [])]))
    assert removed == []
    env = compiled.hosts["hello.localhost"]
    assert compiled.hosts["hello.example.com"] is env
    assert [r.release for r in env.split] == [2, 1]  # release 3 has no instance
    assert env.cumulative == [10, 100] and env.total_weight == 100
    assert env.blame_release() is env.by_number[1]


def test_targets_survive_updates_and_removed_ones_are_returned() -> None:
    m = Metrics()
    c1, _ = compile_table(table(1, [(1, 100, [("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")])]), None, m.release, m.instance)
    ta = c1.targets[("a", "127.0.0.1:1")]
    ta.outstanding = 3
    c2, removed = compile_table(table(2, [(2, 100, [("a", "127.0.0.1:1")])]), c1, m.release, m.instance)
    assert c2.targets[("a", "127.0.0.1:1")] is ta and ta.outstanding == 3
    assert [t.id for t in removed] == ["b"]
    # Stats move with the release the instance now belongs to.
    assert ta.stats is m.releases[("hello", "production", 2)].instances["a"]
    # An instance re-appearing while draining is revived.
    tb = removed[0]
    tb.draining = True
    c3, _ = compile_table(table(3, [(2, 100, [("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")])]), c2)
    assert c3.targets[("b", "127.0.0.1:2")] is not None and not c3.targets[("b", "127.0.0.1:2")].draining


def test_duplicate_instance_listed_once() -> None:
    compiled, _ = compile_table(table(1, [(1, 100, [("a", "127.0.0.1:1"), ("a", "127.0.0.1:1")])]))
    assert len(compiled.hosts["hello.localhost"].by_number[1].targets) == 1


def test_state_file_roundtrip_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "state.json"
    assert load_table_file(p) is None
    t = table(7, [(1, 100, [("a", "127.0.0.1:1")])])
    save_table_file(p, t)
    assert load_table_file(p) == t
    assert [x.name for x in p.parent.iterdir()] == ["state.json"]  # no temp file left
    p.write_text("{broken")
    with pytest.raises(TableFileError, match="is not a routing table"):
        load_table_file(p)
    p.write_text(json.dumps({"version": "x"}))
    with pytest.raises(TableFileError, match=str(p)):
        load_table_file(p)

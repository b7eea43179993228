"""The deploy-throughput benchmark's pure parts, by direct call (the benchmark itself needs root,
network namespaces and minutes: it is run by hand, not by the suite)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "benchmarks")]

import deploy_throughput as bench  # noqa: E402
from rollback import Sample  # noqa: E402


def test_quantile_interpolates_and_handles_empty() -> None:
    assert bench.quantile([], 0.5) is None
    assert bench.quantile([3.0], 0.99) == 3.0
    assert bench.quantile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert bench.quantile([4.0, 1.0, 3.0, 2.0], 1.0) == 4.0


def test_apps_are_split_so_no_app_has_two_clients() -> None:
    groups = bench.assign_apps([f"a{i}" for i in range(10)], 4)
    assert groups == [["a0", "a4", "a8"], ["a1", "a5", "a9"], ["a2", "a6"], ["a3", "a7"]]
    assert bench.assign_apps(["a", "b"], 8) == [["a"], ["b"]]


def test_deploy_stats_count_only_successes_ending_in_the_window() -> None:
    rec = bench.DeployRecord
    records = [
        rec("a", 99.0, 100.5, "succeeded", 99.0, 99.1, 100.3, True),  # ended before the window
        rec("a", 100.0, 101.0, "succeeded", 100.0, 100.2, 100.8, True),  # so did this one
        rec("b", 100.0, 103.0, "succeeded", 100.0, 101.0, 102.5, False),
        rec("c", 101.0, 104.0, "failed", 101.0, 101.1, 104.0, None),
        rec("a", 159.0, 161.0, "succeeded", 159.0, 159.1, 160.8, True),  # ended after it
    ]
    s = bench.deploy_stats(records, 101.5, 160.8)
    assert s["deploys"] == 2 and s["succeeded"] == 1 and s["not_succeeded"] == {"failed": 1}
    assert s["deploys_per_minute"] == 1.0
    assert s["deploy_s"]["p50"] == 3.0
    assert s["split_s"]["queued"]["p50"] == 1.0 and s["split_s"]["start_to_switch"]["p50"] == 1.5
    assert s["split_s"]["switch_to_client"]["p50"] == 0.5
    assert s["routers_not_synced"] == 1


def test_proc_parsing() -> None:
    line = "1234 (python -m x) y) S 77 1234 1234 0 -1 4194560 100 0 0 0 250 30 5 6 20 0 3 0 99 0 0"
    assert bench.parse_stat(line) == (77, 280)
    assert bench.machine_busy("cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 1 2 3\n") == 161


def test_cpu_is_summed_per_family_from_the_process_tree() -> None:
    def sample(at: float, ticks: dict[int, int], busy: int) -> bench.ProcSample:
        parent = {10: 1, 11: 10, 12: 11, 13: 10, 20: 1, 30: 1, 99: 1}
        cmd = {12: "python app.py", 13: "python -m conveyor.logfile x.log", 11: "bwrap ...", 30: "someone else"}
        return bench.ProcSample(at, ticks, parent, cmd, busy)

    roots = {10: "agent h1", 20: "control plane"}
    first = sample(0.0, {10: 100, 11: 0, 12: 50, 20: 1000, 30: 0, 99: 0}, 10_000)
    middle = sample(1.0, {10: 150, 11: 1, 12: 80, 13: 10, 20: 1100, 30: 100, 99: 5}, 10_400)  # 13 born, dies next
    last = sample(2.0, {10: 200, 11: 2, 12: 100, 20: 1300, 30: 200, 99: 10}, 10_800)
    cpu = bench.cpu_by_family(first, last, [middle], roots, bench_pid=99, hz=100)
    assert cpu["control plane"] == 3.0
    assert cpu["agent h1"] == 1.0
    assert cpu["agent h1: app instances"] == 0.5  # the app and its sandbox wrapper
    assert cpu["agent h1: log writers"] == 0.1  # counted up to its last reading
    assert cpu["benchmark (clients + load)"] == 0.1
    assert cpu["other (not this benchmark's)"] == pytest.approx(8.0 - 4.7, abs=0.05)


def test_load_summary_counts_transport_errors_and_non_200() -> None:
    by_app = {"a": [Sample(1.0, 1.01, 200, "v1"), Sample(2.0, 2.5, 502, "")],
              "b": [Sample(1.0, 1.2, "IncompleteReadError", "")]}
    s = bench.load_summary(by_app, late=3)
    assert s["requests"] == 3 and s["failed_requests"] == 2 and s["transport_errors"] == 1
    assert s["failures_by_kind"] == {"a 502": 1, "b IncompleteReadError": 1}
    assert s["generator_late_sends"] == 3


def test_failure_context_is_relative_to_the_nearest_switch() -> None:
    records = [bench.DeployRecord("a", 0.0, 11.0, "succeeded", 0.0, 1.0, 10.0, True),
               bench.DeployRecord("a", 20.0, 31.0, "succeeded", 20.0, 21.0, 30.0, True)]
    out = bench.failure_context([("a", Sample(29.5, 29.6, 502, ""))], records)
    assert out == [{"app": "a", "status": 502, "sent": 29.5, "took_s": 0.1, "from_nearest_switch_s": -0.5}]


def test_profile_summary_shares() -> None:
    raw = "\n".join([
        "main (server.py:1);tick (conveyor/deploy/orchestrator.py:160);execute (sqlalchemy/engine/base.py:1) 6",
        "main (server.py:1);tick (conveyor/deploy/orchestrator.py:160);step (conveyor/domain/deploy_machine.py:9) 2",
        "run (uvicorn/server.py:1);record_report (conveyor/services/hosts.py:30) 2",
        "_bootstrap (threading.py:1);Condition.wait (threading.py:327) 5",
    ])
    s = bench.profile_summary(raw)
    assert s["samples"] == 10 and s["idle_samples"] == 5 and s["sql_share"] == 0.6
    assert s["areas"] == {"orchestrator tick": 0.8, "agents' reports and routers": 0.2}
    assert s["sql_by_area"] == {"orchestrator tick": 0.6}
    assert s["top_conveyor_frames"]["tick (deploy/orchestrator.py:160)"] == 0.6


def test_cpu_per_deploy() -> None:
    cpu = {"control plane": 4.0, "agent h1": 1.0, "agent h1: app instances": 2.0, "router": 1.0,
           "other (not this benchmark's)": 50.0}
    assert bench.per_deploy(cpu, 4) == {"ours": 2.0, "control_plane": 1.0, "agents": 0.25,
                                        "instances_and_log_writers": 0.5}
    assert bench.per_deploy(cpu, 0) is None

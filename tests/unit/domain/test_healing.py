"""Which instances a lost host takes with it that must be started elsewhere (pure)."""

from __future__ import annotations

import pytest

from conveyor.domain import healing
from conveyor.domain.healing import PlacedInstance, lost_instances, serving_releases


def test_serving_releases_are_the_current_one_and_any_with_weight() -> None:
    assert serving_releases(3, {3: 100}) == {3}
    assert serving_releases(3, {3: 80, 4: 20, 2: 0}) == {3, 4}
    assert serving_releases(None, {}) == set()


def test_only_serving_main_instances_on_lost_hosts_are_replaced() -> None:
    placed = [
        PlacedInstance("a", 3, "main", "h1"),
        PlacedInstance("b", 3, "main", "h2"),  # lost host, serving release: replace
        PlacedInstance("c", 2, "main", "h2"),  # warm previous release (no traffic): leave
        PlacedInstance("d", -3, "baseline", "h2"),  # a deployment's baseline: the deployment owns it
    ]
    assert lost_instances(placed, {3}, ["h1", "local"]) == [placed[1]]
    assert lost_instances(placed, {3}, ["h1", "h2"]) == []


def test_nothing_moves_when_no_host_is_alive() -> None:
    placed = [PlacedInstance("a", 1, "main", "h1")]
    assert lost_instances(placed, {1}, []) == []


def test_the_lost_host_deadline_is_at_least_two_agent_reports() -> None:
    """Agents report every 5 s: at a 5 s deadline a report a moment late made healthy hosts lost
    together (their instances drained with nowhere to go), so 10 s is the least accepted."""
    try:
        with pytest.raises(ValueError, match=r"between 10 s \(two agent reports"):
            healing.set_lost_after(9.9)
        healing.set_lost_after(10)
        assert healing.lost_after() == 10.0
        assert healing.alive_cutoff(100.0) == 90.0
    finally:
        healing.set_lost_after(healing.HOST_LOST_AFTER)

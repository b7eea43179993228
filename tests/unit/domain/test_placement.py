"""Where new instances go (pure): the least-loaded live host, ties by name."""

from __future__ import annotations

from conveyor.domain.placement import place


def test_each_goes_to_the_least_loaded_live_host_counting_the_ones_placed_before() -> None:
    # b (0) → b and c tie at 1, b by name → c (1) → all at 2, a by name
    assert place(["b", "a", "c"], {"a": 2, "b": 0, "c": 1}, 4) == ["b", "b", "c", "a"]
    assert place(["a", "b"], {}, 4) == ["a", "b", "a", "b"]
    assert place(["a", "b", "c"], {"a": 2, "b": 0, "c": 1}, 3) == ["b", "b", "c"]


def test_hosts_that_are_not_alive_are_ignored_and_none_alive_places_nothing() -> None:
    assert place(["b"], {"a": 0, "b": 5}, 2) == ["b", "b"]
    assert place([], {"a": 0}, 3) == []
    assert place(["a"], {}, 0) == []

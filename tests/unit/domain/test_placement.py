"""Where new instances go (pure): selectors, spread, capacity, memory, drained hosts, and the
sentence that says why an instance could not be placed."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from conveyor.domain.placement import Host, SelectorError, parse_label, parse_selector, place

MIB = 1024 * 1024


def test_spread_first_then_least_loaded_then_name() -> None:
    hosts = [Host("b", load=0), Host("a", load=2), Host("c", load=1)]
    # no instance of this release anywhere: b (load 0), c (1), a (2), then around again
    assert place(hosts, 4).hosts == ["b", "c", "a", "b"]
    # this release already has one on b and one on c: a first although it is the busiest
    assert place(hosts, 1, release_load={"b": 1, "c": 1}).hosts == ["a"]


def test_never_two_of_a_release_on_one_host_while_another_fits() -> None:
    """Exhaustive over small fleets: after placing, per-host counts of the release differ by at most
    one among the hosts that still had room."""
    for n_hosts, count, loads in itertools.product(range(1, 5), range(1, 9), [(0, 3, 1, 2), (5, 0, 0, 9)]):
        hosts = [Host(f"h{i}", load=loads[i]) for i in range(n_hosts)]
        got = Counter(place(hosts, count).hosts)
        per_host = [got.get(h.name, 0) for h in hosts]
        assert sum(per_host) == count
        assert max(per_host) - min(per_host) <= 1, (n_hosts, count, loads, per_host)


def test_selector_filters_hosts_and_says_so_when_none_matches() -> None:
    hosts = [Host("a", {"role": "web", "zone": "1"}), Host("b", {"role": "db"}), Host("c", {"role": "web", "zone": "2"})]
    assert sorted(place(hosts, 2, selector=parse_selector("role=web")).hosts) == ["a", "c"]
    assert place(hosts, 2, selector=parse_selector("role=web,zone!=1")).hosts == ["c", "c"]
    got = place(hosts, 1, selector=parse_selector("role=gpu"))
    assert got.hosts == [] and got.short == 1
    assert got.reason == "no online host has labels role=gpu (online: a [role=web,zone=1], b [role=db], c [role=web,zone=2])"


def test_capacity_is_respected_and_a_shortfall_names_the_full_hosts() -> None:
    hosts = [Host("a", capacity=2, load=1), Host("b", capacity=1, load=0)]
    got = place(hosts, 4)
    assert got.hosts == ["b", "a"]
    assert got.short == 2
    assert got.reason == ("placed 2 of 4 instance(s): the online hosts are full (a 2/2, b 1/1 instances): "
                          "raise --capacity or add a host")
    sel = place([Host("a", {"role": "web"}, capacity=0)], 1, selector=parse_selector("role=web"))
    assert "hosts matching role=web are full (a 0/0 instances)" in sel.reason


def test_memory_limits_are_counted_against_what_a_host_offers() -> None:
    hosts = [Host("a", memory=1024 * MIB, memory_used=768 * MIB), Host("b", memory=512 * MIB)]
    got = place(hosts, 3, memory=256 * MIB)
    assert sorted(got.hosts) == ["a", "b", "b"]
    got = place(hosts, 4, memory=256 * MIB)
    assert got.short == 1
    assert got.reason == ("placed 3 of 4 instance(s): the online hosts lack memory for a 256 MiB instance "
                          "(a 0 MiB free, b 0 MiB free): lower [limits] memory or add a host")
    # an instance without a memory limit is not counted against memory
    assert len(place(hosts, 5).hosts) == 5


def test_drained_hosts_take_nothing_new() -> None:
    hosts = [Host("a", drained=True), Host("b")]
    assert place(hosts, 2).hosts == ["b", "b"]
    got = place([Host("a", {"role": "web"}, drained=True)], 1, selector=parse_selector("role=web"))
    assert got.hosts == []
    assert got.reason == ("every online host matching role=web is drained (a): "
                          "conveyor hosts undrain HOST, or add a host")


def test_no_host_online_and_nothing_asked() -> None:
    assert place([], 3).reason.startswith("no host is online")
    assert place([Host("a")], 0).hosts == [] and place([Host("a")], 0).reason == ""


@pytest.mark.parametrize("text", ["role", "role=web,", " role = web ", "a/b=c", "zone!=1"])
def test_selectors_that_parse(text: str) -> None:
    if text == "role":
        with pytest.raises(SelectorError, match="is not key=value"):
            parse_selector(text)
    else:
        assert parse_selector(text)


@pytest.mark.parametrize("text", ["role=we b", "=web", "role=" + "x" * 64, "ro le=web"])
def test_selectors_that_do_not_parse_say_what_to_write(text: str) -> None:
    with pytest.raises(SelectorError, match="invalid key or value"):
        parse_selector(text)


def test_labels() -> None:
    assert parse_label("role=web") == ("role", "web")
    assert parse_label("empty=") == ("empty", "")
    for bad in ("role", "=x", "role=a b"):
        with pytest.raises(SelectorError, match="write key=value"):
            parse_label(bad)


def test_a_shortfall_names_the_drained_hosts_that_would_have_matched() -> None:
    hosts = [Host("a", {"role": "web"}, capacity=1), Host("b", {"role": "web"}, drained=True), Host("c")]
    got = place(hosts, 2, selector=parse_selector("role=web"))
    assert got.hosts == ["a"]
    assert got.reason == ("placed 1 of 2 instance(s): hosts matching role=web are full (a 1/1 instances): "
                          "raise --capacity or add a host (b drained)")

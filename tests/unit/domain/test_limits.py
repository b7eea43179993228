"""[limits] in conveyor.toml (conveyor.domain.limits and the manifest), by direct calls."""

from __future__ import annotations

import pytest

from conveyor.domain.limits import DEFAULTS, Capacity, LimitError, Limits, format_size, parse_limits
from conveyor.domain.manifest import ManifestError, parse_manifest


def test_defaults_and_overrides_per_process_type() -> None:
    out = parse_limits({"memory": "256M", "cpu": 0.5, "worker": {"memory": "1G", "pids": 64}}, ["web", "worker"])
    assert out["web"] == Limits(memory=256 * 2**20, cpu=0.5, pids=DEFAULTS.pids)
    assert out["worker"] == Limits(memory=2**30, cpu=0.5, pids=64)
    assert parse_limits({}, ["web"])["web"] == DEFAULTS
    assert format_size(512 * 2**20) == "512M" and format_size(2**30) == "1G"


@pytest.mark.parametrize(("section", "message"), [
    ({"memory": "lots"}, '[limits] memory: expected a size like "512M"'),
    ({"memory": "1K"}, "[limits] memory: '1K' is too little"),
    ({"cpu": 0}, "[limits] cpu: expected a positive number of cores"),
    ({"cpu": "fast"}, "[limits] cpu: expected a positive number"),
    ({"pids": 2}, "[limits] pids: expected a whole number of processes, at least 8"),
    ({"disk": "1G"}, "[limits] disk: unknown key"),
    ({"cron": {"memory": "1G"}}, "[limits.cron]: no process type 'cron' in [run]"),
    ({"web": {"memory": "many"}}, "[limits.web] memory: expected a size"),
])
def test_bad_limits_name_the_key(section: dict, message: str) -> None:
    with pytest.raises(LimitError) as err:
        parse_limits(section, ["web"])
    assert message in str(err.value) and "conveyor.toml" in str(err.value)


def test_a_limit_above_the_hosts_capacity_is_refused() -> None:
    cap = Capacity(memory=2 * 2**30, cpus=2)
    with pytest.raises(LimitError, match=r"\[limits\] memory: 4G is more than this host has \(2G\)"):
        parse_limits({"memory": "4G"}, ["web"], cap)
    with pytest.raises(LimitError, match=r"\[limits.web\] cpu: 8 cores is more than this host has \(2\)"):
        parse_limits({"web": {"cpu": 8}}, ["web"], cap)
    assert parse_limits({"memory": "1G", "cpu": 2}, ["web"], cap)["web"].memory == 2**30


def test_the_manifest_reports_a_bad_limit_as_a_manifest_error() -> None:
    with pytest.raises(ManifestError, match=r'conveyor.toml: \[limits\] memory: expected a size like "512M" or "1G", got \'lots\''):
        parse_manifest({"run": {"web": "python app.py"}, "limits": {"memory": "lots"}})
    m = parse_manifest({"run": {"web": "python app.py"}, "limits": {"memory": "64M", "pids": 32}})
    assert m.limits_for("web") == Limits(memory=64 * 2**20, cpu=DEFAULTS.cpu, pids=32)

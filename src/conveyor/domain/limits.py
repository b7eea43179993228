"""Resource limits of an app's processes: ``[limits]`` in ``conveyor.toml``, parsed and checked. No I/O.

::

    [limits]            # every process type
    memory = "512M"     # bytes, or with K/M/G (powers of 1024)
    cpu = 0.5           # cores
    pids = 256          # processes and threads

    [limits.worker]     # overrides for one process type
    memory = "1G"

Why defaults: an app that says nothing must still not be able to take the host
down (a leak, a fork bomb), so every instance gets ``DEFAULTS`` unless its
manifest says otherwise. A limit above the host's capacity is refused when the
manifest is read, naming the key, rather than accepted and never met.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

KEYS = ("memory", "cpu", "pids")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_MULT = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
MIN_MEMORY = 16 * 1024 * 1024  # an interpreter does not start in less


@dataclass(frozen=True)
class Limits:
    memory: int | None = None  # bytes
    cpu: float | None = None  # cores
    pids: int | None = None

    def memory_text(self) -> str:
        return format_size(self.memory) if self.memory is not None else "none"

    def to_json(self) -> dict[str, Any]:
        return {"memory": self.memory, "cpu": self.cpu, "pids": self.pids}

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> Limits:
        doc = doc or {}
        return cls(memory=doc.get("memory"), cpu=doc.get("cpu"), pids=doc.get("pids"))


DEFAULTS = Limits(memory=512 * 1024**2, cpu=1.0, pids=256)


@dataclass(frozen=True)
class Capacity:
    """What the host has (the caller measures it)."""

    memory: int
    cpus: int


class LimitError(ValueError):
    """A limit that does not parse or cannot be met; the message names the key."""


def format_size(n: int) -> str:
    for unit in ("G", "M", "K"):
        if n >= _MULT[unit] and n % _MULT[unit] == 0:
            return f"{n // _MULT[unit]}{unit}"
    return str(n)


def parse_size(value: object, key: str) -> int:
    if isinstance(value, bool):
        raise LimitError(f'{key}: expected a size like "512M" or "1G", got {value!r}')
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE.match(str(value)) if isinstance(value, str) else None
        if m is None:
            raise LimitError(f'{key}: expected a size like "512M" or "1G", got {value!r}')
        n = int(float(m.group(1)) * _MULT[m.group(2).upper()])
    if n < MIN_MEMORY:
        raise LimitError(f"{key}: {value!r} is too little to run a process: give at least {format_size(MIN_MEMORY)}")
    return n


def _one(table: dict[str, Any], where: str, base: Limits) -> Limits:
    memory, cpu, pids = base.memory, base.cpu, base.pids
    for k, v in table.items():
        key = f"{where} {k}"
        if k == "memory":
            memory = parse_size(v, key)
        elif k == "cpu":
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise LimitError(f"{key}: expected a positive number of cores like 0.5 or 2, got {v!r}")
            cpu = float(v)
        elif k == "pids":
            if isinstance(v, bool) or not isinstance(v, int) or v < 8:
                raise LimitError(f"{key}: expected a whole number of processes, at least 8, got {v!r}")
            pids = v
        else:
            raise LimitError(f"{key}: unknown key: use memory, cpu, pids, or a [limits.<process type>] table")
    return Limits(memory, cpu, pids)


def parse_limits(section: dict[str, Any], processes: list[str], capacity: Capacity | None = None,
                 source: str = "conveyor.toml") -> dict[str, Limits]:
    """``[limits]`` → {process type: Limits} for every type in ``processes``; raises LimitError naming the key."""
    common = {k: v for k, v in section.items() if not isinstance(v, dict)}
    per_type = {k: v for k, v in section.items() if isinstance(v, dict)}
    for name in per_type:
        if name not in processes:
            raise LimitError(f"{source}: [limits.{name}]: no process type {name!r} in [run] (types: {', '.join(processes) or 'none'})")
    try:
        base = _one(common, f"{source}: [limits]", DEFAULTS)
        out = {p: _one(per_type.get(p, {}), f"{source}: [limits.{p}]", base) for p in processes}
    except LimitError:
        raise
    if capacity is not None:
        for p, lim in out.items():
            where = f"[limits.{p}]" if p in per_type else "[limits]"
            if lim.memory is not None and lim.memory > capacity.memory:
                raise LimitError(f"{source}: {where} memory: {format_size(lim.memory)} is more than this host has "
                                 f"({format_size(capacity.memory)})")
            if lim.cpu is not None and lim.cpu > capacity.cpus:
                raise LimitError(f"{source}: {where} cpu: {lim.cpu:g} cores is more than this host has ({capacity.cpus})")
    return out

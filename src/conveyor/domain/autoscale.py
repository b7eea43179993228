"""Autoscaling decisions, free of I/O: Kubernetes HPA's algorithm with its parameters exposed.

Why HPA's rule and not our own: it is the best-known autoscaler, so its behaviour is what
users expect and what the benchmark compares against (benchmarks/autoscale.py runs this
same controller with Kubernetes' default parameters as the peer). The rule:

* ``desired = ceil(current × metric / target)``, where ``metric`` is per instance;
* inside the **tolerance** band (``|metric/target − 1| ≤ tolerance``) nothing changes;
* **scale-up at once**, bounded per step: at most ``max(up_step, up_percent % of current)``
  instances more per ``up_period`` seconds (HPA: 4 pods or 100 % per 15 s);
* **scale-down only after a stabilisation window**: the highest recommendation of the last
  ``down_window`` seconds (HPA: 300 s) wins, so a dip must last that long; then by at most
  ``down_step`` instances per ``down_period`` (small steps: capacity moves "in small increments");
* always within ``[min, max]``;
* a decision every ``period`` seconds (HPA's sync loop: 15 s; ours: every second).

The metrics (per instance, over the last ``window`` seconds of the environment's serving
releases, from the series the control plane scrapes from the routers): requests in flight
(mean concurrency, by Little's law: arrivals/s × mean latency), requests/s (arrivals: requests
completed plus the change of the routers' in-flight gauge, so neither capped by saturated instances
nor inflated by a backlog draining), or the p95 latency
(Heroku's target), whose desired count is taken the same way (latency grows with load per instance).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Metric = Literal["inflight", "rps", "p95"]
METRICS: tuple[Metric, ...] = ("inflight", "rps", "p95")
UNITS = {"inflight": "in flight per instance", "rps": "requests/s per instance", "p95": "ms p95 latency"}
MAX_INSTANCES = 1000


class PolicyError(ValueError):
    """An autoscaling policy that cannot work; the message names the setting and what to give."""


@dataclass(frozen=True)
class Policy:
    min: int
    max: int
    metric: Metric
    target: float
    tolerance: float = 0.1
    #: seconds of metrics each decision averages over
    window: float = 10.0
    up_step: int = 4
    up_percent: float = 100.0
    up_period: float = 5.0
    down_window: float = 60.0
    down_step: int = 1
    down_period: float = 10.0
    #: seconds between two decisions (the control loop's period; the orchestrator ticks each second)
    period: float = 1.0
    #: a scale-up of a rate metric needs the window's request count above the band's upper edge by
    #: more than this many of its standard deviations (Poisson: √count); 0 is HPA's rule. Why: at a
    #: few requests/s a 10 s window's count varies by ±10-15 %, as much as the band, and a decision
    #: every second finds the outlier: 1 → 2 at 80 % of the target, 2 → 1 a minute later.
    up_sigma: float = 2.0
    #: a scale-up of a rate metric also reads the last ``up_window`` seconds, when they say more than
    #: the whole window (0: the window only, HPA's rule). Why: a load step shows in a 10 s window's
    #: mean only bit by bit (1 → 2, then 2 → 4 one up period later); its last 5 s see it whole, and
    #: ``up_sigma`` keeps the shorter count from acting on noise.
    up_window: float = 5.0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Policy:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


#: Kubernetes' HPA defaults (the benchmark's peer): a 15 s sync loop, ±10 %, up by max(4, 100 %)
#: per 15 s, down after a 300 s stabilisation window by up to 100 % per 15 s. (metrics-server
#: resolution is ~15 s: the window.)
def hpa_defaults(min_: int, max_: int, metric: Metric, target: float) -> Policy:
    return Policy(min_, max_, metric, target, tolerance=0.1, window=15.0, up_step=4, up_percent=100.0,
                  up_period=15.0, down_window=300.0, down_step=MAX_INSTANCES, down_period=15.0, period=15.0,
                  up_sigma=0.0, up_window=0.0)


def cli_flag(setting: str) -> str:
    """How `conveyor autoscale` names a setting: ``up_window`` → ``--up-window``."""
    return "--" + setting.replace("_", "-")


def check_policy(p: Policy, name: Callable[[str], str] = cli_flag) -> Policy:
    """``p`` if it can work, else PolicyError naming what to fix (nothing is stored then). ``name``
    spells a setting as the user wrote it: a CLI flag (the default), or a conveyor.toml key."""
    if p.metric not in METRICS:
        raise PolicyError(f"unknown metric {p.metric!r}: use {name('target_inflight')}, {name('target_rps')} "
                          f"or {name('target_p95')}")
    if not 0 <= p.min <= p.max:
        raise PolicyError(f"{name('min')} {p.min} is above {name('max')} {p.max}: give 0 <= min <= max")
    if p.max < 1 or p.max > MAX_INSTANCES:
        raise PolicyError(f"{name('max')} must be between 1 and {MAX_INSTANCES}, got {p.max}")
    if not (p.target > 0 and math.isfinite(p.target)):
        raise PolicyError(f"the target must be a positive number, got {p.target:g}: e.g. {name('target_inflight')} 8")
    if not 0 <= p.tolerance < 1:
        raise PolicyError(f"{name('tolerance')} must be at least 0 and below 1 (a fraction: 0.1 is ±10 %), "
                          f"got {p.tolerance:g}")
    for setting in ("window", "up_period", "down_window", "down_period", "period", "up_window"):
        value = getattr(p, setting)
        least = 1 if setting in ("window", "period") else 0
        if not least <= value <= 86400:
            raise PolicyError(f"{name(setting)} must be between {least} s and 1 day, got {value:g}")
    if not 0 <= p.up_sigma <= 10:
        raise PolicyError(f"{name('up_sigma')} must be between 0 (HPA's rule) and 10 standard deviations, "
                          f"got {p.up_sigma:g}")
    if p.up_step < 1 or p.down_step < 1 or p.up_percent < 0:
        raise PolicyError(f"{name('up_step')} and {name('down_step')} must be at least 1 instance, "
                          f"{name('up_percent')} at least 0")
    return p


@dataclass(frozen=True)
class Sample:
    """The environment's load over the policy's window."""

    requests: int
    seconds: float
    mean_latency: float | None  # seconds
    p95_latency: float | None  # seconds
    ready: int  # ready instances that served it (the current count)
    #: requests that arrived (completions + the in-flight gauge's change, ``scraper.Delta``): the
    #: load, where completions are capped by saturated instances and inflated by a draining backlog
    arrivals: int | None = None

    @property
    def count(self) -> int:
        """The requests the rate is estimated from (arrivals, else completions)."""
        return self.requests if self.arrivals is None else self.arrivals

    def per_instance(self, metric: Metric) -> float | None:
        if self.seconds <= 0 or self.ready <= 0:
            return None
        rps = self.count / self.seconds
        if metric == "rps":
            return rps / self.ready
        if metric == "inflight":
            return rps * (self.mean_latency or 0.0) / self.ready
        return None if self.p95_latency is None else self.p95_latency * 1000.0  # ms, not per instance


@dataclass(frozen=True)
class State:
    """What a decision remembers: recent recommendations (for the stabilisation window) and when
    the count last went up or down (for the step periods)."""

    recommendations: tuple[tuple[float, int], ...] = ()
    last_up: float = -math.inf
    last_down: float = -math.inf
    #: the first decision: a window that has not been watched whole (a fresh start, a restarted
    #: control plane) holds the count, as if its unseen part had recommended it
    started: float | None = None
    #: when the last decision was taken (the loop runs every ``Policy.period`` seconds)
    decided: float = -math.inf
    #: the ready instances last seen, and when that count last rose (``observe``, ``span``)
    ready: int = 0
    ready_rose: float = -math.inf


@dataclass(frozen=True)
class Decision:
    current: int
    desired: int
    recommendation: int
    value: float | None
    reason: str
    state: State = field(default_factory=State)

    @property
    def changed(self) -> bool:
        return self.desired != self.current


#: After the ready count rose, a decision reads at least this many seconds of metrics (see ``span``):
#: fewer are too noisy at a few requests/s (3 s chained scale-ups on a stall's catch-up burst).
FRESH = 5.0


def observe(state: State, ready: int, now: float) -> State:
    """Note the ready instances seen at ``now`` (every second, decision due or not)."""
    if ready == state.ready:
        return state
    fresh = state.ready == 0 and state.decided == -math.inf  # a new policy or control plane: not a rise
    return replace(state, ready=ready, ready_rose=now if ready > state.ready and not fresh else state.ready_rose)


def span(p: Policy, state: State, now: float) -> tuple[float, float]:
    """The whole seconds ``[since, until)`` of metrics a decision at ``now`` reads: the last ``window``
    seconds, but none from before the ready count last rose, down to ``FRESH`` seconds. Why: the
    metrics are the environment's totals divided by the instances ready now; seconds served by fewer
    instances, saturated, understate the load (requests/s are capped by what they could serve), so
    a scale-up step read through them stalls in the tolerance band until the window has forgotten
    them. (HPA averages each pod's own metrics, so a new pod's do not mix with the old count's.)"""
    until = float(int(now))
    since = until - p.window
    if state.ready_rose > since:
        since = min(float(math.ceil(state.ready_rose)), until - min(p.window, FRESH))
    return since, until


def due(p: Policy, state: State, now: float) -> bool:
    """Is a decision due at ``now``? Once per ``period``, on a fixed grid of the clock (multiples of
    the period, like HPA's ticker), so the loop's phase does not drift with the caller's pace."""
    return state.decided == -math.inf or now // p.period != state.decided // p.period


def decide(p: Policy, current: int, sample: Sample | None, now: float, state: State = State(),
           recent: Sample | None = None) -> Decision:
    """The count to hold now (see the module docstring); ``current`` is the count in force.
    ``recent``: the last ``up_window`` seconds, read for a scale-up only (``Policy.up_window``)."""
    rec, value, why = _recommend(p, current, sample)
    if recent is not None and p.metric != "p95":
        fast, fast_value, fast_why = _recommend(p, current, recent)
        if fast > max(rec, current):
            rec, value, why = fast, fast_value, f"{fast_why} (the last {recent.seconds:g} s)"
    rec = max(p.min, min(p.max, rec))
    history = tuple((t, r) for t, r in state.recommendations if t > now - p.down_window) + ((now, rec),)
    started = now if state.started is None else state.started
    state = replace(state, recommendations=history, started=started, decided=now)
    if now - started < p.down_window:
        history += ((now, current),)
    if current < p.min or current > p.max:  # a changed policy: into bounds at once
        desired = max(p.min, min(p.max, current))
        return Decision(current, desired, rec, value, f"{current} → {desired}: the bounds are {p.min}..{p.max}",
                        _moved(state, current, desired, now))
    if rec > current:
        if now - state.last_up < p.up_period:
            return Decision(current, current, rec, value, f"{why}; wants {rec}, waiting for the up period", state)
        room = max(p.up_step, math.ceil(current * p.up_percent / 100.0))
        desired = min(rec, current + room)
        bound = f" (at most +{room} a step)" if desired < rec else ""
        return Decision(current, desired, rec, value, f"{current} → {desired}: {why}{bound}",
                        _moved(state, current, desired, now))
    stabilised = max(r for _, r in history)
    if stabilised < current:
        if now - state.last_down < p.down_period:
            return Decision(current, current, rec, value, f"{why}; will go down, waiting for the down period", state)
        desired = max(stabilised, current - p.down_step)
        return Decision(current, desired, rec, value,
                        f"{current} → {desired}: {why}, for {p.down_window:g} s (down by {p.down_step} at most)",
                        _moved(state, current, desired, now))
    if rec < current:
        return Decision(current, current, rec, value,
                        f"{why}; down to {rec} only once it holds for {p.down_window:g} s", state)
    return Decision(current, current, rec, value, why, state)


def noise_free(p: Policy, ratio: float, count: int) -> bool:
    """Is a rate ``ratio`` × the target, estimated from ``count`` requests, above the tolerance band
    by more than ``p.up_sigma`` standard deviations? The count at the band's edge over the same
    window is ``count × (1 + tolerance) / ratio``; a Poisson count's deviation is its square root.
    The p95 metric is not a count: always True. A real step clears it at once (4× on one instance:
    152 requests in 10 s against an edge of 110 ± 21)."""
    if p.metric == "p95" or p.up_sigma <= 0 or ratio <= 0:
        return True
    edge = count * (1.0 + p.tolerance) / ratio
    return count - edge > p.up_sigma * math.sqrt(edge)


def _recommend(p: Policy, current: int, sample: Sample | None) -> tuple[int, float | None, str]:
    """HPA's recommendation from one sample (before the bounds), its metric value and why."""
    unit = UNITS[p.metric]
    value = sample.per_instance(p.metric) if sample is not None else None
    if value is None and p.metric != "p95":
        value = 0.0  # no traffic measured: a rate of 0 (a latency has no sample, so the count holds)
    if value is None:
        rec, why = current, "no latency measured in the window: holding"
    else:
        ratio = value / p.target
        if abs(ratio - 1.0) <= p.tolerance:
            rec, why = current, f"{value:.1f} {unit} vs target {p.target:g}: within ±{p.tolerance:.0%}"
        else:
            # the base is the instances that served the load: ones still starting count once ready
            base = sample.ready if sample is not None and sample.ready > 0 else max(current, 1)
            rec = math.ceil(base * ratio - 1e-9)
            why = f"{value:.1f} {unit} vs target {p.target:g}"
            if rec > current and sample is not None and not noise_free(p, ratio, sample.count):
                rec, why = current, (f"{value:.1f} {unit} vs target {p.target:g}: above the band by less than "
                                     f"{p.up_sigma:g} standard deviations of {sample.count} requests (noise)")
    return rec, value, why


def _moved(state: State, current: int, desired: int, now: float) -> State:
    if desired > current:
        return replace(state, last_up=now)
    if desired < current:
        return replace(state, last_down=now)
    return state


"""The agent's desired-vs-actual diff: data in, a list of actions out.

This module is the whole decision of the reconcile loop and does no I/O, so it
can be tested by direct calls and so the loop around it stays level-triggered:
the loop never remembers *why* it is reconciling, it just calls :func:`plan`
with what the control plane wants and what runs now, applies the actions, and
repeats. Calling it twice with the same world gives the same actions, and once
the actions are applied it returns nothing, which is what makes the loop safe
to kill at any line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from conveyor.domain.wire import DesiredInstance

#: Instance ids name log files and state entries, so they must be plain names.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@dataclass(frozen=True)
class Actual:
    """What the agent knows about one instance it runs (or is stopping).

    ``spec`` is the desired instance the process was started from; ``stopping``
    is true while the process is being terminated.
    """

    spec: DesiredInstance
    stopping: bool = False


@dataclass(frozen=True)
class Start:
    """Start supervising ``spec`` (fetch its image, run it, keep it running)."""

    spec: DesiredInstance


@dataclass(frozen=True)
class Stop:
    """Stop instance ``instance_id``: it is no longer desired."""

    instance_id: str
    reason: str


@dataclass(frozen=True)
class Replace:
    """The instance id is still desired but its spec changed: stop it, then start ``spec``."""

    spec: DesiredInstance


@dataclass(frozen=True)
class Reject:
    """A desired instance that cannot be run as given; report it FAILED with ``message``."""

    instance_id: str
    message: str


Action = Start | Stop | Replace | Reject


def check_instance_id(instance_id: str) -> str | None:
    """Return why ``instance_id`` is unusable, or ``None`` when it is fine."""
    if _SAFE_ID.match(instance_id):
        return None
    return (
        f"instance id {instance_id!r} is not usable as a file name: use 1-200 characters "
        "from A-Z a-z 0-9 . _ - starting with a letter or digit"
    )


def same_spec(a: DesiredInstance, b: DesiredInstance) -> bool:
    """Whether two specs would run the same process (health settings included).

    Secrets compare by name only: a spec read back from the state file has them withheld, and a
    release's secrets never change under the same instance id (a new value is a new release).
    ``interrupts`` is a signal to deliver, not part of the process: it never causes a restart."""
    return (a.model_dump(exclude={"secrets", "interrupts"}) == b.model_dump(exclude={"secrets", "interrupts"})
            and set(a.secrets) == set(b.secrets))


def plan(desired: Sequence[DesiredInstance], actual: Mapping[str, Actual]) -> list[Action]:
    """Return the actions that move ``actual`` towards ``desired``.

    * desired and absent: :class:`Start` (or :class:`Reject` if its id is unusable);
    * present and not desired: :class:`Stop` (unless already stopping);
    * present with a different spec: :class:`Replace`;
    * desired and still stopping from an earlier change: nothing yet; the next
      reconcile after the stop finishes starts it;
    * a duplicated id in ``desired``: the first wins, later ones are rejected.

    Stops come first so that a host near its limits frees resources before it
    takes new ones; within a kind, actions are ordered by instance id so the
    result is deterministic.
    """
    wanted: dict[str, DesiredInstance] = {}
    rejects: list[Action] = []
    for spec in desired:
        if spec.id in wanted:
            rejects.append(Reject(spec.id, f"instance id {spec.id!r} appears twice in the desired state; the first is run"))
            continue
        problem = check_instance_id(spec.id)
        if problem is not None:
            rejects.append(Reject(spec.id, problem))
            continue
        wanted[spec.id] = spec

    stops: list[Action] = []
    starts: list[Action] = []
    for instance_id in sorted(actual):
        have = actual[instance_id]
        if have.stopping:
            continue
        if instance_id not in wanted:
            stops.append(Stop(instance_id, "no longer desired"))
        elif not same_spec(have.spec, wanted[instance_id]):
            starts.append(Replace(wanted[instance_id]))
    for instance_id in sorted(wanted):
        if instance_id not in actual:
            starts.append(Start(wanted[instance_id]))
    return stops + starts + rejects

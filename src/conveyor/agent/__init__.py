"""Conveyor's host agent: runs the instances its host should run, like a kubelet.

Modules, one concept each:

* :mod:`~conveyor.agent.reconcile` — the pure desired-vs-actual diff;
* :mod:`~conveyor.agent.policy` — backoff, crash loop and liveness rules (pure);
* :mod:`~conveyor.agent.process` — environment, spawn, process identity, termination;
* :mod:`~conveyor.agent.health` — HTTP probes;
* :mod:`~conveyor.agent.images` — where images come from (protocol + two providers);
* :mod:`~conveyor.agent.supervisor` — one instance's life;
* :mod:`~conveyor.agent.logship` — log shipping by offset;
* :mod:`~conveyor.agent.statefile` — ``agent-state.json`` for adoption after a restart;
* :mod:`~conveyor.agent.client` — the control-plane API calls;
* :mod:`~conveyor.agent.agent` — the loops that tie them together;
* :mod:`~conveyor.agent.main` — the command line.
"""

from conveyor.agent.agent import Agent, AgentConfig
from conveyor.agent.client import ControlPlaneClient, ControlPlaneError
from conveyor.agent.images import DirectoryImageProvider, ImageCacheProvider, ImageError, ImageProvider
from conveyor.agent.main import main
from conveyor.agent.reconcile import Actual, Reject, Replace, Start, Stop, plan

__all__ = [
    "Actual",
    "Agent",
    "AgentConfig",
    "ControlPlaneClient",
    "ControlPlaneError",
    "DirectoryImageProvider",
    "ImageCacheProvider",
    "ImageError",
    "ImageProvider",
    "Reject",
    "Replace",
    "Start",
    "Stop",
    "main",
    "plan",
]

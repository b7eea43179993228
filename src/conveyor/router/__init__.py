"""Conveyor's router: the HTTP data plane (see docs/ARCHITECTURE.md).

Modules, one concept each: ``proxy`` (client connections and exchanges),
``upstream`` (upstream connections, the pool's unit), ``http1`` (message
rules), ``table`` (compiled routing table, state file), ``balancer`` (release
split, pinning, sticky, least-outstanding, passive health), ``metrics``
(counters, histogram, JSON and Prometheus), ``admin`` (admin port),
``follower`` (control-plane long-poll), ``server`` (one process),
``workers`` (SO_REUSEPORT multi-process), ``main`` (flags).
"""

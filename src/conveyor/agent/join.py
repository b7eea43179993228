"""Joining a control plane: a one-time join token traded for the host's own credential.

Why a trade and not the token itself: a join token is handed around (pasted into a
provisioning script, a chat), so it is good for one host and an hour; what the host
keeps is its own credential, which reaches only its own data-plane endpoints and is
revoked with ``conveyor hosts remove``. The credential lives in ``DATA_DIR/credential``
(0600, written atomically), so an agent restarted with the same ``--join`` flags uses it
and never spends the token twice.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import httpx

from conveyor.domain.wire import API_PREFIX

if TYPE_CHECKING:
    from conveyor.agent.agent import AgentConfig

log = logging.getLogger("conveyor.agent")

CREDENTIAL_FILE = "credential"


class JoinError(Exception):
    """The join was refused or could not be made; ``code`` is the agent's exit status (2: fix the
    input, e.g. a used token; 5: the control plane cannot be reached)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def join_credential(config: AgentConfig, join_token: str, timeout: float = 30.0) -> str:
    """The host's own credential: the saved one, else one obtained now with ``join_token``."""
    path = config.data_dir / CREDENTIAL_FILE
    if path.exists():
        saved = path.read_text().strip()
        if saved:
            log.info("already joined as %s (credential in %s): the join token is not used again", config.host, path)
            return saved
    url = config.control_plane.rstrip("/") + API_PREFIX + "/hosts/join"
    try:
        resp = httpx.post(url, json={"host": config.host}, headers={"Authorization": f"Bearer {join_token}"},
                          timeout=timeout)
    except httpx.HTTPError as exc:
        raise JoinError(f"cannot reach the control plane at {config.control_plane} to join: {exc}", 5) from None
    if resp.status_code != 201:
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text[:300]
        if isinstance(detail, list):
            detail = "; ".join(str(d.get("msg", d)) for d in detail if isinstance(d, dict))
        raise JoinError(f"the control plane refused to let host {config.host!r} join ({resp.status_code}): {detail}",
                        5 if resp.status_code >= 500 else 2)
    token = str(resp.json()["token"])
    tmp = path.with_name(CREDENTIAL_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    log.info("joined as host %s: own credential saved in %s", config.host, path)
    return token

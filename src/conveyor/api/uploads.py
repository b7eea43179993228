"""Source uploads on disk: received into a temp file that nothing leaves behind, checked a few at a time.

Why this module: an upload is up to 256 MiB on disk before anything is known
about it. The file must go whatever ends the request (413, 422, a client that
disconnects mid-body, a malformed chunked body, a 500, a cancelled task), and a
control plane killed mid-upload must not leave it forever: the directory holds
only uploads in flight, so start-up empties it (``services.builds.remove_stale_uploads``). Checking an upload (unpack +
manifest) runs in a thread and holds memory and disk, so only a few run at once.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import HTTPException, Request

log = logging.getLogger("conveyor.uploads")
T = TypeVar("T")

MAX_UPLOAD = 256 << 20
#: how many uploads are unpacked and checked at the same time (the rest wait their turn)
MAX_CONCURRENT_CHECKS = 2
_SUFFIX = ".tar.gz"


async def receive_upload(request: Request, directory: Path, limit: int = MAX_UPLOAD) -> tuple[Path, int]:
    """Stream the request body into a new file in ``directory``; returns (path, size).

    On any exception, including ``ClientDisconnect`` and cancellation, the file is removed
    before the exception goes on; on success the caller owns it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(suffix=_SUFFIX, dir=directory)
    path = Path(name)
    size = 0
    try:
        with open(fd, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"source upload is larger than {limit >> 20} MiB")
                f.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, size


class CheckSlots:
    """Run blocking checks in threads, at most ``limit`` at a time (a semaphore per event loop)."""

    def __init__(self, limit: int = MAX_CONCURRENT_CHECKS) -> None:
        self.limit = limit
        self._sems: dict[int, asyncio.Semaphore] = {}
        self.running = 0
        self.most = 0  # the highest number that ran at once (observable by tests)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        sem = self._sems.setdefault(id(loop), asyncio.Semaphore(self.limit))
        async with sem:
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                return await asyncio.to_thread(fn, *args)
            finally:
                self.running -= 1


#: The control plane's upload checks (one process, one limit).
checks = CheckSlots()

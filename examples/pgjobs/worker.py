"""Worker: takes the oldest unprocessed job (SKIP LOCKED, so several workers share the queue)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from db import sql

VERSION = (Path(__file__).parent / "VERSION").read_text().strip()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

while True:
    done = sql(f"UPDATE jobs SET done_by = 'worker {VERSION}' WHERE id = (SELECT id FROM jobs WHERE done_by IS NULL "
               "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id")
    if not done:
        time.sleep(0.2)

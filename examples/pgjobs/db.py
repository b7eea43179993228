"""The sample's database access: psql (Debian's client) with the libpq settings from the environment.

PGHOST, PGPORT, PGUSER and PGDATABASE are config vars; the password is the secret DB_PASSWORD
(`conveyor config set pgjobs --secret --stdin DB_PASSWORD`). Standard library only, so the image
needs no dependency layer.
"""

from __future__ import annotations

import os
import subprocess


def sql(statement: str) -> str:
    """Run one statement; its rows as psql's unaligned output. Raises on any SQL error."""
    env = {**os.environ, "PGPASSWORD": os.environ.get("DB_PASSWORD", ""), "PGCONNECT_TIMEOUT": "5"}
    res = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", statement],
                         capture_output=True, text=True, env=env, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"psql exited with {res.returncode}: {res.stderr.strip()}")
    return res.stdout.strip()

"""The release command: the schema this version needs (idempotent, as a release phase must be)."""

from __future__ import annotations

from pathlib import Path

from db import sql

VERSION = (Path(__file__).parent / "VERSION").read_text().strip()
sql("CREATE TABLE IF NOT EXISTS jobs (id serial PRIMARY KEY, payload text NOT NULL, done_by text)")
for extra in sorted((Path(__file__).parent / "migrations").glob("*.sql")):
    print(f"applying {extra.name}", flush=True)
    sql(extra.read_text())
print(f"schema ready for {VERSION}", flush=True)

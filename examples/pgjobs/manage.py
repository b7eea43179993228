"""Management commands for `conveyor run pgjobs -- python manage.py …`."""

from __future__ import annotations

import sys

from db import sql

if sys.argv[1:] == ["stats"]:
    print("jobs:", sql("SELECT count(*) FROM jobs"), "done:", sql("SELECT count(*) FROM jobs WHERE done_by IS NOT NULL"))
    print("columns:", sql("SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns "
                          "WHERE table_name = 'jobs'"))
elif sys.argv[1:2] == ["exit"]:
    print("exiting with", sys.argv[2])
    sys.exit(int(sys.argv[2]))
else:
    print("usage: manage.py stats | exit CODE", file=sys.stderr)
    sys.exit(2)

"""How much an instance's bubblewrap sandbox adds to its start: `python -c pass` plain vs sandboxed.

Runs the agent's own argv (conveyor.agent.sandbox.plan_command) as a throwaway app user;
needs root and bubblewrap. Prints one JSON line: medians of N runs, in milliseconds.

    .venv/bin/python benchmarks/sandbox.py [N]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conveyor.agent.sandbox import SandboxSpec, plan_command, sandbox_warning


def median_ms(argv: list[str], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 1)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    why = sandbox_warning()
    if why:
        print(json.dumps({"skipped": why}))
        return
    root = Path(tempfile.mkdtemp(prefix="conveyor-sandbox-bench-"))
    try:
        (root / "work").mkdir()
        os.chown(root / "work", 61999, 61999)
        spec = SandboxSpec(uid=61999, gid=61999, image_dir=root, work_dir=root / "work", cwd=root, hide=(str(root),))
        inner = [sys.executable, "-c", "pass"]
        plain, boxed = median_ms(inner, n), median_ms(plan_command(spec, inner), n)
        print(json.dumps({"runs": n, "plain_ms": plain, "sandboxed_ms": boxed, "overhead_ms": round(boxed - plain, 1),
                          "load_average": os.getloadavg()[0]}))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

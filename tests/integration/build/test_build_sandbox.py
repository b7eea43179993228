"""A build runs the app's own code (``[build] command``, ``[test] command``): in bubblewrap, as an
unprivileged user, it cannot read the control plane's data or write outside its work directory.

The layout is the control plane's: the cache (hence each build's work directory) lives inside
the data dir, next to the admin token and the database, and the data dir is what the worker hides.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conveyor_build_helpers import write_app

from conveyor.build.builder import build_image
from conveyor.build.store import ArtifactStore
from conveyor.build.worker import main as worker_main
from conveyor.sandbox import BUILD_UID, step_sandbox

pytestmark = pytest.mark.integration

PROBE = """\
import os, sys
from pathlib import Path
data = Path(sys.argv[1])
def attempt(what, fn):
    try:
        fn()
        print(what, "OK")
    except OSError as exc:
        print(what, "REFUSED", type(exc).__name__)
attempt("read-token", lambda: (data / "admin-token").read_text())
attempt("read-db", lambda: (data / "conveyor.db").read_bytes())
attempt("write-outside", lambda: Path(sys.argv[2]).write_text("pwned"))
attempt("write-own-dir", lambda: Path("built.txt").write_text("assets"))
attempt("write-home", lambda: (Path(os.environ["HOME"]) / ".cache").mkdir(exist_ok=True))
attempt("write-tmp", lambda: Path("/tmp/scratch").write_text("x"))
print("uid", os.getuid(), "data-listing", sorted(os.listdir(data)) if data.is_dir() else "absent")
"""


def _data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "admin-token").write_text("cvy_secret")
    (data / "admin-token").chmod(0o600)
    (data / "conveyor.db").write_bytes(b"SQLite format 3\x00")
    return data


def _results(lines: list[str]) -> dict[str, str]:
    return {parts[0]: " ".join(parts[1:]) for parts in (line.split() for line in lines) if parts}


def test_the_apps_own_build_and_test_commands_cannot_reach_the_control_planes_data(tmp_path: Path) -> None:
    sandbox, note = step_sandbox([])
    if sandbox is None:
        pytest.skip(f"no sandbox on this host: {note}")
    data = _data_dir(tmp_path)
    outside = tmp_path / "outside.txt"
    tmp_path.chmod(0o777)  # not permissions: only the sandbox's read-only view may stop the write outside
    sandbox, _ = step_sandbox([str(data)])
    cmd = f"python probe.py {data} {outside}"
    src = write_app(tmp_path / "src", build=cmd, test=cmd, extra={"probe.py": PROBE})
    lines: list[str] = []
    result = build_image(src, ArtifactStore(data / "images"), cache_dir=data / "cache", log=lines.append,
                         sandbox=sandbox)
    assert result.test_status == "passed"
    probes = [line for line in lines if line.split(" ", 1)[0] in ("read-token", "read-db", "write-outside",
                                                                    "write-own-dir", "write-home", "write-tmp", "uid")]
    assert len(probes) == 14, lines  # 7 lines from the build step, 7 from the test step
    got = _results(probes)
    assert got["read-token"].startswith("REFUSED") and got["read-db"].startswith("REFUSED"), probes
    assert got["write-outside"].startswith("REFUSED") and not outside.exists(), probes
    assert got["write-own-dir"] == "OK" and got["write-home"] == "OK" and got["write-tmp"] == "OK", probes
    # The data dir is an empty mask but for the path down to this build's work directory.
    assert [line for line in probes if line.startswith("uid")] == [f"uid {BUILD_UID} data-listing ['cache']"] * 2, probes
    # What the build step wrote is in the image; the secrets are untouched.
    assert (data / "admin-token").read_text() == "cvy_secret"
    assert (data / "admin-token").stat().st_uid == os.getuid()


def test_the_worker_says_in_the_log_how_the_apps_commands_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _data_dir(tmp_path)
    src = write_app(tmp_path / "src", build="true")
    args = ["--dir", str(src), "--store", str(data / "images"), "--cache", str(data / "cache"),
            "--result", str(tmp_path / "result.json"), "--no-tests"]
    assert worker_main([*args, "--hide", str(data)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    sandbox, note = step_sandbox([])
    assert first == f"==> the app's own commands run {'in ' + note if sandbox else note}"
    assert worker_main([*args, "--no-sandbox"]) == 0
    assert "UNSANDBOXED: the control plane was started without the build sandbox" in capsys.readouterr().out

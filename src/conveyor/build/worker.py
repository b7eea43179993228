"""One build in its own process: ``python -m conveyor.build.worker ...``.

Why a process: a build runs pip, the app's build command and its tests, for
minutes, and may use a lot of memory; in a separate process it can neither
block nor crash the control plane, and it can be killed (with everything it
started) by killing its process group.

Protocol: build log lines on stdout, one per line, flushed as they come; the
outcome as one JSON object written atomically to ``--result``::

    {"ok": true, "result": {...BuildResult.to_dict()...}}
    {"ok": false, "step": "deps", "error": "pip install failed ..."}

Exit code 0 when an image was built (whatever its test status), 1 when the
build failed, 2 for bad arguments. SIGTERM cleans up (temp dirs, child
processes) and exits 143.

The app's own commands (``[build] command``, ``[test] command``) run in a bubblewrap
sandbox (``conveyor.sandbox``) as an unprivileged user, with ``--hide`` directories
(the control plane's data dir: database, admin token, images) masked; where the
host cannot, the log says so on its first line. Dependencies are installed by pip
outside it.

Sources: ``--dir DIR``, ``--git URL --ref REF`` (through the clone cache in
``--cache``), or ``--tarball FILE`` (an upload from the CLI, unpacked with the
safe extractor; ``--commit JSON`` then carries the commit the CLI saw).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from conveyor.build.archive import ArchiveError, ArchiveLimits, safe_extract
from conveyor.build.builder import BuildError, build_image
from conveyor.build.sources import CommitInfo, GitSource, SourceError
from conveyor.build.store import ArtifactStore
from conveyor.sandbox import step_sandbox

#: Bounds for uploaded source tarballs (layers have their own, larger ones).
UPLOAD_LIMITS = ArchiveLimits(max_members=50_000, max_total_bytes=512 << 20, max_file_bytes=256 << 20)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m conveyor.build.worker", description="Run one Conveyor image build.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dir", type=Path, help="build a local directory")
    src.add_argument("--git", help="build a git repository (path or URL); needs --ref")
    src.add_argument("--tarball", type=Path, help="build an uploaded source tar.gz")
    p.add_argument("--ref", help="branch, tag or commit sha (with --git)")
    p.add_argument("--revert", help="a commit sha whose change is reverted from --ref's tree (with --git; a deploy "
                   "train ships the commits after its culprit so)")
    p.add_argument("--commit", help="commit info as JSON (with --tarball)")
    p.add_argument("--store", type=Path, required=True, help="artifact store directory")
    p.add_argument("--cache", type=Path, required=True, help="build cache directory (deps layers, git mirrors)")
    p.add_argument("--result", type=Path, required=True, help="where to write the JSON outcome")
    p.add_argument("--no-tests", action="store_true", help="skip the [test] command")
    p.add_argument("--hide", action="append", default=[], metavar="DIR",
                   help="a directory the build's own commands must not see (repeatable: the control plane's data dir)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run the build's own commands as this process's user, not in bubblewrap (said in the log)")
    return p


def _write_result(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def _log(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(143)


def run(args: argparse.Namespace) -> int:
    store = ArtifactStore(args.store)
    args.cache.mkdir(parents=True, exist_ok=True)
    (args.cache / "tmp").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="worker-", dir=args.cache / "tmp"))
    try:
        commit: CommitInfo | None = None
        if args.dir is not None:
            source = args.dir
        elif args.git is not None:
            if not args.ref:
                raise SourceError("--git needs --ref (a branch, tag or commit sha)")
            _log(f"==> fetching {args.git} ({args.ref})")
            checkout = GitSource(args.cache).checkout(args.git, args.ref, work / "src", revert=args.revert)
            _log(f"==> {checkout.fetch}: {args.ref} is {checkout.commit.sha}"
                 + (f", with {checkout.commit.reverted} reverted (a scratch tree, not a commit)" if args.revert else ""))
            source, commit = checkout.path, checkout.commit
        else:
            _log(f"==> unpacking uploaded source ({args.tarball.stat().st_size} bytes)")
            safe_extract(args.tarball, work / "src", limits=UPLOAD_LIMITS)
            source = work / "src"
            commit = CommitInfo.from_dict(json.loads(args.commit)) if args.commit else CommitInfo()
        if args.no_sandbox:
            sandbox, note = None, "UNSANDBOXED: the control plane was started without the build sandbox"
        else:
            sandbox, note = step_sandbox([str(Path(h).resolve()) for h in args.hide])
        _log(f"==> the app's own commands run {'in ' + note if sandbox else note}")
        result = build_image(source, store, cache_dir=args.cache, log=_log, commit=commit, run_tests=not args.no_tests,
                             sandbox=sandbox)
    except BuildError as exc:
        _log(f"==> BUILD FAILED: {exc}")
        _write_result(args.result, {"ok": False, "step": exc.step, "error": str(exc)})
        return 1
    except (SourceError, ArchiveError, FileNotFoundError, NotADirectoryError, ValueError) as exc:
        _log(f"==> BUILD FAILED: {exc}")
        _write_result(args.result, {"ok": False, "step": "source", "error": str(exc)})
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _write_result(args.result, {"ok": True, "result": result.to_dict()})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

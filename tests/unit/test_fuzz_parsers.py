"""Hypothesis drives the two parsers hostile input reaches first: conveyor.toml and uploaded archives.

Whatever the bytes, the manifest parser either returns a manifest or raises ManifestError (a
message naming conveyor.toml), and the archive unpacker either extracts inside its target or
raises ArchiveError, leaving nothing behind: no other exception (which the API would turn into a
500) and no file outside the tree.
"""

from __future__ import annotations

import io
import math
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.build.archive import ArchiveError, ArchiveLimits, safe_extract
from conveyor.domain.manifest import ManifestError, load_manifest, parse_manifest

#: Derandomized: the same 150 examples each run, so CI is repeatable (a new seed is a deliberate change).
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                derandomize=True)

KEYS = ["app", "name", "run", "web", "deploy", "bake", "drain_timeout", "ready_timeout", "strategy", "env", "production",
        "instances", "vars", "health", "path", "timeout", "interval", "steps", "weight", "for", "analysis",
        "max_surge", "max_unavailable", "test", "command", "build", "A=B", "", "preview_for"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from(["2s", "1m30s", "nan", "inf", "9" * 400 + "s", "\x00", "canary", "/healthz", "python app.py"]),
    st.just(math.nan), st.just(math.inf), st.just(10**400),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5)),
    max_leaves=20)
durations = st.one_of(st.floats(0, 1e7), st.sampled_from([math.inf, 10**400, math.nan, "9" * 60 + "h", "721h", "500ms", "720h"]),
                      scalars)
# valid but for the durations, so that a bad duration is the only thing left to refuse
deploy = st.fixed_dictionaries({}, optional={
    "strategy": st.sampled_from(["bluegreen", "canary", "rolling"]), "bake": durations,
    "drain_timeout": durations, "ready_timeout": durations, "preview_for": durations,
    "auto_promote_after": durations, "max_surge": st.integers(0, 5), "instances": st.integers(0, 5),
    "steps": st.lists(st.fixed_dictionaries({"weight": st.integers(1, 100)}, optional={"for": durations}), max_size=2),
    "vars": st.dictionaries(st.sampled_from(["A", "B_1", "PATH"]), st.text(max_size=5), max_size=2),
})
#: Shaped like a manifest (sections and keys it has, values of any kind), plus unstructured noise.
documents = st.one_of(
    st.fixed_dictionaries({}, optional={
        "run": st.dictionaries(st.text(max_size=5), st.text(max_size=20), max_size=2),
        "deploy": deploy.map(lambda d: {k: v for k, v in d.items() if k not in ("instances", "vars")}),
        "env": st.dictionaries(st.sampled_from(["production", "staging"]), deploy, max_size=2),
        "health": st.fixed_dictionaries({}, optional={"path": st.sampled_from(["/", "/healthz", "x"]),
                                                      "timeout": durations, "interval": durations}),
        "test": st.fixed_dictionaries({}, optional={"timeout": durations, "command": st.text(max_size=10)}),
        "app": st.fixed_dictionaries({}, optional={"name": st.sampled_from(["hello", "Hello"])}),
    }),
    st.dictionaries(st.sampled_from(KEYS), values, max_size=6),
)


@FUZZ
@given(documents)
def test_parse_manifest_returns_or_raises_manifest_error(data: dict[str, Any]) -> None:
    try:
        manifest = parse_manifest(data)
    except ManifestError as exc:
        assert str(exc).startswith("conveyor.toml"), str(exc)
        return
    for env in [*manifest.env, "production"]:  # what deploys read must be finite and bounded
        settings_ = manifest.environment(env)
        for key in ("bake", "drain_timeout", "ready_timeout", "preview_for", "auto_promote_after"):
            assert math.isfinite(getattr(settings_, key))


toml_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(['[run]\n', 'web = "python app.py"\n', '[deploy]\n', 'bake = nan\n', 'bake = inf\n',
                              '[env.production]\n', 'instances = 99999999999999999999\n', 'vars = { "A=B" = "1" }\n',
                              '[[deploy.steps]]\n', 'weight = 10\n', 'a = [[[[[[\n', ']]]]]]\n', '[app]\n',
                              'name = "other"\n', 'x = "\\u0000"\n', '"\\ud800" = 1\n', "[deploy.analysis]\n",
                              "judges = 3\n"]), max_size=12).map("".join),
)


@FUZZ
@given(toml_text)
def test_load_manifest_returns_or_raises_manifest_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            (Path(tmp) / "conveyor.toml").write_text(text)
        except UnicodeEncodeError:
            (Path(tmp) / "conveyor.toml").write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            load_manifest(Path(tmp), app="hello")
        except ManifestError as exc:
            assert "conveyor.toml" in str(exc) or "Procfile" in str(exc)


names = st.one_of(st.sampled_from(["a", "a/b", "../x", "/etc/x", "./c", "d/../../e", "", ".", "a" * 300, "x\x00y",
                                   "conveyor.toml", "dir/"]), st.text(max_size=30))
members = st.lists(st.tuples(
    names,
    st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE,
                     tarfile.CHRTYPE]),
    st.binary(max_size=64),
    st.one_of(names, st.just("/"), st.just("..")),
    st.dictionaries(st.sampled_from(["path", "linkpath", "size", "comment"]), st.text(max_size=20), max_size=2),
), max_size=6)


def _archive(entries: list[tuple[str, bytes, bytes, str, dict[str, str]]], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, kind, data, link, pax in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            info.pax_headers = pax
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _tree(root: Path) -> set[str]:
    return {str(Path(d, n).relative_to(root)) for d, dirs, files in os.walk(root) for n in dirs + files}


@FUZZ
@given(members, st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]), st.integers(0, 600), st.binary(max_size=8))
def test_safe_extract_extracts_inside_or_raises_archive_error(entries: list, fmt: int, cut: int, junk: bytes) -> None:  # type: ignore[type-arg]
    try:
        raw = _archive(entries, fmt)
    except (ValueError, UnicodeError, OverflowError):
        return  # tarfile itself cannot write this member: nothing to unpack
    if cut:  # a truncated or garbled archive too
        raw = raw[:-cut] + junk
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "archive.tar").write_bytes(raw)
        dest = root / "out" / "src"
        (root / "out").mkdir()
        limits = ArchiveLimits(max_members=20, max_total_bytes=1 << 16, max_file_bytes=1 << 12, max_header_bytes=512)
        try:
            safe_extract(root / "archive.tar", dest, limits=limits)
        except ArchiveError:
            assert _tree(root / "out") == set(), "a refused archive left files behind"
            return
        real = os.path.realpath(dest)
        for d, dirs, files in os.walk(dest):
            for n in dirs + files:
                resolved = os.path.realpath(Path(d, n))  # a link to "." resolves to the tree itself: inside
                assert resolved == real or resolved.startswith(real + os.sep), f"{n} resolves out of the tree"

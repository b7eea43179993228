"""`conveyor init` on small apps of each kind, written here: what it detects, and that the file it
writes is a valid manifest (the manifest's own parser reads it back)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conveyor.cli.init import detect, render
from conveyor.domain.manifest import load_manifest

FLASK = 'from flask import Flask\n\napp = Flask(__name__)\n\n@app.get("/healthz")\ndef health():\n    return "ok"\n'
FASTAPI = 'from fastapi import FastAPI\n\napi = FastAPI()\n\n@api.get("/health")\ndef health():\n    return {}\n'
DJANGO_WSGI = 'import os\nfrom django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n'
WSGI = 'def application(environ, start_response):\n    start_response("200 OK", [])\n    return [b"hi"]\n'
ASGI = 'async def app(scope, receive, send):\n    pass\n'
PYPROJECT_DJANGO = '[project]\nname = "shop"\ndependencies = ["Django>=5", "gunicorn==23.0"]\n'


def test_flask_with_requirements_txt() -> None:
    g = detect({"app.py": FLASK, "requirements.txt": "flask==3.1\ngunicorn\n", "tests/test_app.py": "def test(): pass\n"}, "shop")
    assert g.kind == "flask" and g.web == "gunicorn app:app --bind ${HOST:-127.0.0.1}:$PORT"
    assert g.health == "/healthz" and g.test == "python -m pytest -q" and g.deps_file == "requirements.txt"
    assert any("pytest is not in your dependencies" in r for r in g.reasons)
    assert g.warnings == []


def test_flask_without_gunicorn_says_what_to_add() -> None:
    g = detect({"src/web/main.py": FLASK.replace("app =", "server ="), "requirements.txt": "flask\n"}, "shop")
    assert g.web == "gunicorn src.web.main:server --bind ${HOST:-127.0.0.1}:$PORT"
    assert any("gunicorn is not in requirements.txt: add a line `gunicorn`" in w for w in g.warnings)


def test_django_with_pyproject() -> None:
    files = {"manage.py": "import django\n", "shop/settings.py": "DEBUG = False\n", "shop/wsgi.py": DJANGO_WSGI,
             "pyproject.toml": PYPROJECT_DJANGO}
    g = detect(files, "shop")
    assert g.kind == "django" and g.web == "gunicorn shop.wsgi:application --bind ${HOST:-127.0.0.1}:$PORT"
    assert g.test == "python manage.py test" and g.deps_file == "pyproject.toml" and g.warnings == []
    assert g.health == "/" and any("no /healthz-like route" in r for r in g.reasons)


def test_fastapi() -> None:
    g = detect({"main.py": FASTAPI, "requirements.txt": "fastapi\nuvicorn[standard]\npytest\n"}, "api")
    assert g.kind == "fastapi" and g.web == "uvicorn main:api --host ${HOST:-127.0.0.1} --port $PORT"
    assert g.health == "/health" and g.test == "python -m pytest -q" and g.warnings == []


def test_plain_wsgi_and_asgi_callables() -> None:
    g = detect({"serve.py": WSGI, "requirements.txt": "gunicorn\n"}, "w")
    assert g.kind == "wsgi" and g.web == "gunicorn serve:application --bind ${HOST:-127.0.0.1}:$PORT"
    g = detect({"pkg/__init__.py": ASGI, "requirements.txt": "uvicorn\n"}, "a")
    assert g.kind == "asgi" and g.web == "uvicorn pkg:app --host ${HOST:-127.0.0.1} --port $PORT"


def test_procfile_is_kept() -> None:
    g = detect({"Procfile": "web: gunicorn app:app -b 0.0.0.0:$PORT\nworker: python w.py\n", "app.py": FLASK}, "p")
    assert g.kind == "procfile" and g.web == "gunicorn app:app -b 0.0.0.0:$PORT"
    assert any("no requirements.txt" in w for w in g.warnings)


def test_nothing_found_says_what_to_set() -> None:
    g = detect({"README.md": "hi"}, "x")
    assert g.web is None and any("set [run] web" in w for w in g.warnings)
    assert "TODO" in render(g)


def test_init_writes_a_valid_commented_manifest_and_will_not_overwrite(tmp_path: Path) -> None:
    app = tmp_path / "My Shop"
    app.mkdir()
    (app / "app.py").write_text(FLASK)
    (app / "requirements.txt").write_text("flask\ngunicorn\n")
    env = {**os.environ, "CONVEYOR_CONFIG": str(tmp_path / "none.json")}
    res = subprocess.run([sys.executable, "-m", "conveyor", "init", str(app), "--json"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["name"] == "my-shop" and doc["kind"] == "flask" and doc["written"]
    manifest = load_manifest(app)
    assert manifest.name == "my-shop" and manifest.run["web"].startswith("gunicorn app:app")
    assert manifest.health.path == "/healthz"
    assert "# Written by `conveyor init`" in (app / "conveyor.toml").read_text()
    again = subprocess.run([sys.executable, "-m", "conveyor", "init", str(app)], capture_output=True, text=True,
                           env=env, timeout=60)
    assert again.returncode == 4 and "--force" in again.stderr

"""The package layering stays true without anyone remembering it.

Read from the sources with ``ast`` (every import, lazy ones inside functions too):

* no import cycle between packages of ``conveyor`` (``api``, ``web``, ``services``, ``store``…;
  a top-level module such as ``server.py`` counts as a package of its own);
* no module imports another package's private name (``from conveyor.deploy.service import
  _as_machine``, ``import conveyor.x._impl``, or ``module._name`` on a module of another package);
* each package imports only the packages its layer allows (``LAYERS``): the two doors, ``api``
  and ``web``, reach the rules only through ``services`` and never each other; ``store`` and
  ``domain`` import nothing above them; the agent and the router no control-plane code.

The checks are plain functions over a source tree, so the tests below also run them on small
made-up trees and watch them catch each kind of violation.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import conveyor

SRC = Path(conveyor.__file__).parent

#: package → the packages it may import. ``conveyor`` itself (``__version__``) is open to all.
LAYERS: dict[str, set[str]] = {
    "__main__": {"cli"},
    "cli": {"agent", "build", "config", "domain", "router", "server"},  # `conveyor up` runs all three
    "server": {"api", "build", "config", "deploy", "domain", "services", "store", "web"},  # the composition root
    "api": {"build", "config", "domain", "services"},
    "web": {"config", "domain", "services"},
    "services": {"analysis", "build", "config", "deploy", "domain", "logfile", "store"},
    "deploy": {"analysis", "build", "domain", "store"},
    "agent": {"build", "domain", "logfile", "sandbox"},  # logfile: the agent's capped logs, shared with services/logs
    "router": {"domain"},
    "build": {"domain", "sandbox"},  # sandbox: a build's own commands run in bubblewrap, like instances
    "analysis": {"domain"},
    "store": {"domain"},
    "domain": set(),
    "config": {"domain", "logfile"},  # logfile: log_max_bytes's default; domain.access: the admin token's shape
    "logfile": set(),  # stdlib only: run by the agent as each instance's log writer
    "sandbox": set(),  # stdlib only: bubblewrap for app instances (agent) and build steps (build worker)
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. conveyor.api.apps
    target: str  # the imported module, e.g. conveyor.services.apps
    names: tuple[str, ...]  # names taken from it (from-imports), else ()
    line: int


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _module_name(root: Path, path: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path) -> Iterator[tuple[Import, ast.Module]]:
    """Every import of the tree's own modules, with the module's syntax tree."""
    top = root.name
    for path in sorted(root.rglob("*.py")):
        module = _module_name(root, path)
        tree = ast.parse(path.read_text(), str(path))
        here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == top:
                        yield Import(module, alias.name, (), node.lineno), tree
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != top:
                    continue
                names = tuple(a.name for a in node.names)
                if target == top:  # `from conveyor import web`: each name may be a package
                    for name in names:
                        yield Import(module, f"{top}.{name}" if (root / name).exists()
                                     or (root / f"{name}.py").exists() else top, (name,), node.lineno), tree
                else:
                    yield Import(module, target, names, node.lineno), tree


def package_graph(root: Path) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for imp, _ in imports(root):
        src, dst = package_of(imp.module), package_of(imp.target)
        graph.setdefault(src, set())
        if dst != src and dst != root.name:
            graph[src].add(dst)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one package (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(root: Path) -> list[str]:
    """``module:line`` and what it takes that is private to another package."""
    out = []
    for imp, tree in imports(root):
        if package_of(imp.module) == package_of(imp.target):
            continue
        bad = [p for p in imp.target.split(".") if _private(p)] + [n for n in imp.names if _private(n)]
        out += [f"{imp.module}:{imp.line} imports {imp.target} {b}" for b in bad]
        # `from conveyor.x import mod` / `import conveyor.x.mod as m`, then `mod._name`
        aliases = _module_aliases(tree, imp)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and _private(node.attr)):
                out.append(f"{imp.module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return sorted(set(out))


def _module_aliases(tree: ast.Module, imp: Import) -> dict[str, str]:
    """Local names bound by this import statement to modules (not to functions or classes)."""
    out = {}
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) != imp.line:
            continue
        if isinstance(node, ast.ImportFrom):
            for a in node.names:
                if a.name[:1].islower() and not _private(a.name):
                    out[a.asname or a.name] = f"{imp.target}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    out[a.asname] = a.name
    return out


def layer_violations(root: Path, layers: dict[str, set[str]]) -> list[str]:
    out = []
    for src, dsts in sorted(package_graph(root).items()):
        allowed = layers.get(src)
        if allowed is None:
            out.append(f"package {src!r} has no layer in LAYERS: add it with the packages it may import")
            continue
        out += [f"{src} imports {dst}, which its layer does not allow" for dst in sorted(dsts - allowed)]
    return out


# --- the checks on Conveyor itself ---------------------------------------------------------------


def test_no_import_cycle_between_packages() -> None:
    assert cycles(package_graph(SRC)) == []


def test_no_module_imports_another_packages_private_name() -> None:
    assert private_imports(SRC) == []


def test_each_package_imports_only_what_its_layer_allows() -> None:
    assert layer_violations(SRC, LAYERS) == []


def test_the_doors_do_not_import_each_other() -> None:
    graph = package_graph(SRC)
    assert "web" not in graph["api"] and "api" not in graph["web"]
    assert graph["web"] <= {"services", "domain", "config"}


# --- the checks catch what they are for (made-up trees) ------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_cycle_through_a_lazy_import_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "api/__init__.py": "", "api/app.py": "from pkg.web import pages\n",
        "web/__init__.py": "", "web/pages.py": "def f():\n    from pkg.api.app import x\n",
        "store/__init__.py": "", "store/repo.py": "import pkg.api.app\n",
        "domain/__init__.py": "", "domain/rules.py": "from . import other\n",
    })
    assert package_graph(root)["store"] == {"api"}  # leads into the cycle, is not part of it
    assert cycles(package_graph(root)) == [["api", "web"]]


def test_private_names_of_another_package_are_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "deploy/__init__.py": "", "deploy/orch.py": "from pkg.services.deployments import _as_machine\n",
        "services/__init__.py": "", "services/deployments.py": "def _as_machine(): ...\nfrom . import _own\n",
        "services/_own.py": "",
        "web/__init__.py": "", "web/twins.py": "from pkg.api import deps\n\nx = deps._token_from\n",
        "api/__init__.py": "", "api/deps.py": "from pkg.api.deps import _mine\n",
        "cli/__init__.py": "", "cli/x.py": "import pkg.services._own\n",
    })
    found = private_imports(root)
    assert any("pkg.deploy.orch:1" in f and "_as_machine" in f for f in found)
    assert any("pkg.web.twins:3" in f and "_token_from" in f for f in found)
    assert any("pkg.cli.x:1" in f and "_own" in f for f in found)
    assert not any("pkg.api.deps" in f.split(" ")[0] or "pkg.services.deployments:" in f for f in found)  # own package: fine
    assert len(found) == 3


def test_an_import_its_layer_does_not_allow_is_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "web/__init__.py": "", "web/pages.py": "from pkg.store import repo\nfrom pkg import services\n",
        "services/__init__.py": "", "store/__init__.py": "", "store/repo.py": "",
        "newpkg/__init__.py": "", "newpkg/m.py": "from pkg.store import repo\n",
    })
    found = layer_violations(root, {"web": {"services"}, "services": set(), "store": set()})
    assert found == [
        "package 'newpkg' has no layer in LAYERS: add it with the packages it may import",
        "web imports store, which its layer does not allow",
    ]

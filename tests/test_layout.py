"""The layout's rules (docs/architecture.md): blueprints import shared, shared never
imports blueprints, capabilities import the platform and never the reverse, the
sub-packages import one another without cycles, and so do the modules of every
package. No module grows past 500 lines. Only shared/platform/http.py speaks HTTP:
the rest of shared/ raises the domain errors of shared/platform/errors.py."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "shared"
# Which sub-packages each may import (besides itself and the top-level ``shared``).
ALLOWED = {
    "platform": set(),
    "alerts": {"platform"},
    "lifecycle": {"platform", "alerts"},
    "streams": {"platform", "alerts", "lifecycle"},
    "commands": {"platform", "lifecycle", "streams"},
    # Redrive sends a dead letter through the pipeline of its stream.
    "deadletters": {"platform", "alerts", "lifecycle", "streams", "commands"},
    "meta": {"platform", "alerts", "lifecycle", "streams", "commands", "deadletters"},
}
MAX_LINES = 500
SOURCE_FOLDERS = ("shared", "blueprints", "tools", "standins", "tests")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the code (lazy imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_every_sub_package_is_known_to_the_rules() -> None:
    packages = {p.name for p in SHARED.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(ALLOWED), f"add {packages - set(ALLOWED)} to ALLOWED with the arrows it may have"
    assert not [p.name for p in SHARED.glob("*.py") if p.name != "__init__.py"], "modules live in sub-packages"


def test_arrows_point_down_only() -> None:
    wrong = []
    for path in SHARED.rglob("*.py"):
        package = path.relative_to(SHARED).parts[0]
        for module in imports(path):
            parts = module.split(".")
            upward = parts[0] in ("blueprints", "function_app")
            sideways = (parts[0] == "shared" and len(parts) > 1 and parts[1] in ALLOWED
                        and parts[1] not in (package, *ALLOWED[package]))
            if upward or sideways:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


def test_the_allowed_arrows_have_no_cycle() -> None:
    seen: dict[str, int] = {}

    def visit(package: str) -> None:
        assert seen.get(package) != 1, f"cycle through {package}"
        if seen.get(package) == 2:
            return
        seen[package] = 1
        for dependency in ALLOWED[package]:
            visit(dependency)
        seen[package] = 2

    for package in ALLOWED:
        visit(package)


def test_blueprints_import_shared_only_inside_their_functions() -> None:
    for path in (ROOT / "blueprints").glob("*.py"):
        top_level = [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.Import | ast.ImportFrom)]
        names = {a.name for n in top_level if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in top_level if isinstance(n, ast.ImportFrom)}
        assert not any(name.startswith("shared") for name in names), path.name


def test_the_app_imports_no_stand_in_and_the_stand_ins_import_no_tool() -> None:
    """``standins/`` (the host and other cloud services played locally) never ships:
    the app (``function_app``, ``blueprints``, ``shared``) imports neither it nor
    ``tools`` nor ``tests``, and the stand-ins import nothing of ``tools``, which stands
    on them, nor of ``tests``, which stand on both."""
    app = [ROOT / "function_app.py", *(ROOT / "blueprints").rglob("*.py"), *SHARED.rglob("*.py")]
    wrong = [f"{path.relative_to(ROOT)} imports {module}" for path in app for module in imports(path)
             if module.split(".")[0] in ("standins", "tools", "tests")]
    wrong += [f"{path.relative_to(ROOT)} imports {module}" for path in (ROOT / "standins").rglob("*.py")
              for module in imports(path) if module.split(".")[0] in ("tools", "tests")]
    assert wrong == []
    assert "standins/" in (ROOT / ".funcignore").read_text().split(), "the deployment package leaves it out"
    assert "tests/" in (ROOT / ".funcignore").read_text().split(), "the deployment package leaves it out"


def test_the_tools_import_no_test_and_no_test_imports_another() -> None:
    """What tests share lives in ``tests/support/``: no test module imports another
    (``tests.test_*``, ``tests.infra.test_*``), and ``tools`` imports nothing of ``tests``."""
    graph = module_graph()  # relative and ``from tests import test_x`` imports resolved
    wrong = [f"{name} imports {target}" for name, targets in graph.items() if name.startswith("tests.")
             for target in targets if target.rpartition(".")[2].startswith("test_")]
    wrong += [f"{path.relative_to(ROOT)} imports {module}" for path in (ROOT / "tools").rglob("*.py")
              for module in imports(path) if module.split(".")[0] == "tests"]
    assert wrong == []


def test_no_module_is_over_500_lines() -> None:
    """A long module is split by concern (issue 19 split the last five)."""
    lines = {path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for folder in SOURCE_FOLDERS for path in (ROOT / folder).rglob("*.py")}
    assert sorted(name for name, count in lines.items() if count > MAX_LINES) == []


PACKAGES = ("shared", "blueprints", "tools", "standins", "tests")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports, lazy and ``TYPE_CHECKING`` imports
    included: a cycle behind a function-local import is still a tangle to a reader."""
    paths = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    paths["function_app"] = ROOT / "function_app.py"
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{up}.{base}" if base else up
                # ``from pkg import name`` imports the module ``pkg.name`` when there is one.
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names}
        graph[name] = targets & paths.keys()
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def cycle_through(start: str, graph: dict[str, set[str]]) -> list[str]:
    """A shortest import path from ``start`` back to itself, to name the cycle."""
    paths = {target: [start, target] for target in sorted(graph[start])}
    while start not in paths:
        paths = {t: [*path, t] for path in paths.values() for t in sorted(graph[path[-1]])} | paths
    return paths[start]


def test_no_module_imports_itself_or_another_that_imports_it_back() -> None:
    graph = module_graph()
    assert "tests.support.bicep_parse" in graph["tests.support.infra"], "relative imports are resolved"
    cycles = [" -> ".join(cycle_through(c[0], graph)) + (f" (all of {', '.join(c)})" if len(c) > 2 else "")
              for c in strongly_connected(graph) if len(c) > 1 or c[0] in graph[c[0]]]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_one_error_for_storage_that_keeps_changing_and_one_loop_that_raises_it() -> None:
    """Every read-decide-conditional-write loop takes its attempts from ``contended``,
    which raises the one ``Contention`` (there were five such errors and three jitters)."""
    import pytest

    from shared.platform.errors import Contention
    from shared.platform.rows import contended

    attempts: list[int] = []
    with pytest.raises(Contention, match="row 'p'/'r' changed 3 times"):
        attempts.extend(contended("row 'p'/'r'", 3))
    assert attempts == [0, 1, 2]
    for path in SHARED.rglob("*.py"):
        tree = ast.parse(path.read_text())
        own = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
               and any(word in n.name for word in ("Contention", "Concurrency"))]
        jitters = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "uniform"
                   and isinstance(n.value, ast.Name) and n.value.id == "random"]  # a transport's backoff is its own
        assert own == [] or path.name == "errors.py", (path, own)
        assert jitters == [] or path.name == "rows.py", (path, "jitter through rows.backoff", jitters)


HTTP_MODULE = SHARED / "platform" / "http.py"
HTTP_NAMES = frozenset({"HttpProblem", "HTTPStatus"})


def speaks_http(path: Path) -> list[str]:
    """Where ``path`` names HttpProblem or HTTPStatus, or raises with an integer
    from 400 to 599 (a status) among its arguments."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        name = (node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute)
                else node.name.rpartition(".")[2] if isinstance(node, ast.alias) else None)
        if name in HTTP_NAMES:
            found.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')} names {name}")
        if isinstance(node, ast.Raise) and node.exc is not None:
            statuses = [n.value for n in ast.walk(node.exc)
                        if isinstance(n, ast.Constant) and type(n.value) is int and 400 <= n.value <= 599]
            if statuses:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} raises with status {statuses[0]}")
    return found


def test_only_the_http_module_turns_errors_into_statuses() -> None:
    assert speaks_http(HTTP_MODULE), "the check sees the statuses http.py does name"
    wrong = [where for path in sorted(SHARED.rglob("*.py")) if path != HTTP_MODULE for where in speaks_http(path)]
    assert not wrong, "raise a domain error of shared/platform/errors.py instead:\n" + "\n".join(wrong)

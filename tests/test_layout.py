"""The layout's rules (docs/architecture.md): blueprints import shared, shared never
imports blueprints, capabilities import the platform and never the reverse, and the
sub-packages import one another without cycles. No module grows past 500 lines."""

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
# issue 19: to split
TOO_LONG = frozenset({
    "tests/infra/bicep_check.py",
    "tests/infra/test_azd_up.py",
    "tests/test_commands.py",
    "tests/test_deadletters.py",
    "tests/test_stream_decoding.py",
    "tests/test_transports.py",
    "tools/bench.py",
    "tools/eventhubs_amqp.py",
    "tools/replay.py",
    "tools/simulate/certs.py",
})


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
    ``tools``, and the stand-ins import nothing of ``tools``, which stands on them."""
    app = [ROOT / "function_app.py", *(ROOT / "blueprints").rglob("*.py"), *SHARED.rglob("*.py")]
    wrong = [f"{path.relative_to(ROOT)} imports {module}" for path in app for module in imports(path)
             if module.split(".")[0] in ("standins", "tools", "tests")]
    wrong += [f"{path.relative_to(ROOT)} imports {module}" for path in (ROOT / "standins").rglob("*.py")
              for module in imports(path) if module.split(".")[0] in ("tools", "tests")]
    assert wrong == []
    assert "standins/" in (ROOT / ".funcignore").read_text().split(), "the deployment package leaves it out"


def test_no_module_is_over_500_lines_but_those_still_to_split() -> None:
    """A long module is split by concern; the allow-list only shrinks, so each file on it
    must still be long (a split one comes off)."""
    lines = {path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for folder in SOURCE_FOLDERS for path in (ROOT / folder).rglob("*.py")}
    assert sorted(name for name, count in lines.items() if count > MAX_LINES and name not in TOO_LONG) == []
    assert sorted(name for name in TOO_LONG if lines.get(name, 0) <= MAX_LINES) == [], "take these off TOO_LONG"

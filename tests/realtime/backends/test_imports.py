"""Backends serve the hub and import nothing of it (docs/architecture.md, issue 12).

Read from the source, so it holds for every module whatever is imported lazily: a module
under ``realtime/backends/`` may import other backend modules, the pure records and cores it
stores, and third-party libraries, nothing else of this project.
"""

from __future__ import annotations

import ast
from pathlib import Path

BACKENDS = Path(__file__).resolve().parents[3] / "realtime" / "backends"
FIRST_PARTY = {"realtime", "geofence", "alerts", "clients", "loadtest", "tests"}
ALLOWED = {
    "realtime.aio",
    "realtime.booking",
    "realtime.privacy",
    "alerts.incident",
    "alerts.safety_alert",
    "geofence.geo",
}


def imported_modules(path: Path) -> set[str]:
    """First-party modules a source file imports (``from a import b``: ``a.b`` if b is a
    module of the project, else ``a``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                as_module = Path(*candidate.split("."))
                root = BACKENDS.parents[1]
                is_module = (root / as_module).with_suffix(".py").exists() or (
                    root / as_module / "__init__.py"
                ).exists()
                found.add(candidate if is_module else node.module)
    return {name for name in found if name.split(".")[0] in FIRST_PARTY}


def allowed(module: str) -> bool:
    return (
        module == "realtime.backends"
        or module.startswith("realtime.backends.")
        or (module in ALLOWED)
    )


def test_backends_import_nothing_of_the_hub() -> None:
    files = sorted(BACKENDS.rglob("*.py"))
    assert len(files) > 10  # the walk found the package
    wrong = {
        str(path.relative_to(BACKENDS)): sorted(m for m in imported_modules(path) if not allowed(m))
        for path in files
    }
    assert {name: mods for name, mods in wrong.items() if mods} == {}


def test_the_check_sees_a_hub_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from realtime.tasks import Supervisor\nfrom realtime import settings\n")
    assert imported_modules(module) == {"realtime.tasks", "realtime.settings"}

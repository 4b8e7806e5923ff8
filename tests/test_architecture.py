"""The rules import-linter cannot see: the pure cores' standard-library imports.

import-linter (``[tool.importlinter]`` in pyproject.toml, run by ``make test``) holds the
dependency direction between packages, but the standard library is not in its graph. The
pure cores must not reach the event loop, sockets, files or databases, nor read the clock:
time comes in as an argument (docs/architecture.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE_CORES = [
    *sorted((ROOT / "geofence").glob("*.py")),
    ROOT / "alerts/lifecycle.py",
    ROOT / "alerts/incident.py",
    ROOT / "alerts/escalation.py",
    ROOT / "alerts/watchdog.py",
    ROOT / "alerts/safety_alert.py",
    ROOT / "alerts/contacts.py",
    ROOT / "alerts/notify_payloads.py",
    ROOT / "realtime/booking.py",
    ROOT / "realtime/dispatch.py",
    ROOT / "realtime/ingest.py",
    ROOT / "realtime/privacy.py",
]
IO_MODULES = {
    "asyncio",
    "socket",
    "sqlite3",
    "threading",
    "subprocess",
    "selectors",
    "ssl",
    "urllib.request",
    "http.client",
    "time",
    "os",
    "shutil",
    "tempfile",
}
CLOCK_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today")}


def stdlib_io_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            names = []
        found += [name for name in names if name in IO_MODULES]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and (node.func.value.id, node.func.attr) in CLOCK_CALLS
        ):
            found.append(f"{node.func.value.id}.{node.func.attr}()")
    return found


@pytest.mark.parametrize("path", PURE_CORES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_pure_core_does_no_io_and_reads_no_clock(path: Path) -> None:
    assert path.exists(), f"{path} moved: update the list of pure cores"
    assert stdlib_io_imports(path) == []


def test_the_check_sees_an_io_import_and_a_clock_read(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import time\nfrom datetime import datetime\nnow = datetime.now()\n")
    assert stdlib_io_imports(sample) == ["time", "datetime.now()"]

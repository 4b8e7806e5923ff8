"""The rules import-linter cannot see: the pure cores' standard-library imports.

import-linter (``[tool.importlinter]`` in pyproject.toml, run by ``make test``) holds the
dependency direction between packages, but the standard library is not in its graph. The
pure cores must not reach the event loop, sockets, files or databases, nor read the clock:
time comes in as an argument (docs/architecture.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
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
    ROOT / "realtime/history_score.py",
    ROOT / "realtime/batch_match.py",
    ROOT / "realtime/ingest.py",
    ROOT / "realtime/privacy.py",
    ROOT / "realtime/eta_throttle.py",
    # Cities, shifts and the travel-fee tariff (issue 15), on one local-time module.
    ROOT / "realtime/local_time.py",
    ROOT / "realtime/shifts.py",
    ROOT / "realtime/tariff.py",
    ROOT / "realtime/city.py",
    ROOT / "realtime/dispatch_weights.py",
    # The dashboard's figures (issue 16): computed at scrape time, scored at arrival.
    ROOT / "realtime/live_figures.py",
    ROOT / "realtime/eta_accuracy.py",
    ROOT / "realtime/stats.py",
    # The dispatch benchmark's simulated day (its __main__ reads the clock for runtimes).
    ROOT / "loadtest/dispatch_bench/world.py",
    ROOT / "loadtest/dispatch_bench/policies.py",
    ROOT / "loadtest/dispatch_bench/simulate.py",
    ROOT / "loadtest/dispatch_bench/metrics.py",
    ROOT / "loadtest/dispatch_bench/report.py",
    # The chaos soak's schedule, trips and verdicts (the runner around them does the I/O).
    ROOT / "loadtest/chaos/plan.py",
    ROOT / "loadtest/chaos/trips.py",
    ROOT / "loadtest/chaos/checks.py",
    ROOT / "loadtest/chaos/records.py",
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


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every group of modules that import each other, directly or round a loop (Tarjan)."""
    edges = {m: graph.find_modules_directly_imported_by(m) & graph.modules for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycles_anywhere() -> None:
    graph = grimp.build_graph("realtime", "geofence", "alerts", "clients", "loadtest")
    assert import_cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "a.x", "a.y", "a.z"):
        graph.add_module(module)
    graph.add_import(importer="a.x", imported="a.y")
    graph.add_import(importer="a.y", imported="a.x")
    graph.add_import(importer="a.y", imported="a.z")
    assert import_cycles(graph) == [["a.x", "a.y"]]

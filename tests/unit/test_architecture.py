"""The architecture, enforced: layers and boundaries (import-linter), no import cycles, lint and format
(ruff), and every PILOT_* environment variable in the one table and its docs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pilot import environment

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed; `./dev test` installs it (the `test` extra)")
    return str(found)


def test_import_contracts_hold():
    proc = subprocess.run(
        [_tool("lint-imports"), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "engine"), "PATH": str(BIN)},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_the_packages_modules():
    import grimp

    graph = grimp.build_graph("pilot")
    edges = {
        m: {n for n in graph.find_modules_directly_imported_by(m) if n.startswith("pilot")}
        for m in graph.modules
        if m.startswith("pilot")
    }
    assert _cycles(edges) == []


def test_ruff_lint_and_format():
    ruff = _tool("ruff")
    lint = subprocess.run([ruff, "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout[-4000:]
    fmt = subprocess.run([ruff, "format", "--no-cache", "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, "run `ruff format .`:\n" + fmt.stdout[-4000:]


def test_every_environment_variable_is_in_the_table_and_documented():
    used = set()
    for path in (REPO / "engine" / "pilot").rglob("*.py"):
        used |= set(re.findall(r'"(PILOT_[A-Z_]+)"', path.read_text(encoding="utf-8")))
    table = {v.name for v in environment.VARIABLES}
    assert used <= table, f"not in pilot.environment.VARIABLES: {sorted(used - table)}"
    documented = set(re.findall(r"^\| `(PILOT_[A-Z_]+)` \|", (REPO / "docs" / "configuration.md").read_text(), re.M))
    assert documented == table


def test_an_unknown_variable_name_is_refused():
    with pytest.raises(KeyError):
        environment.get("PILOT_NO_SUCH_THING", {})
    assert environment.get("PILOT_ALLOW_ROOT", {"PILOT_ALLOW_ROOT": ""}) is None
    assert environment.get("PILOT_ALLOW_ROOT", {"PILOT_ALLOW_ROOT": "1"}) == "1"

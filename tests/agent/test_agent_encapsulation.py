"""No module of the agent reaches into another object's private attributes: a step's
runtime (`steprun.py`) is given what it may use, the workspace (`workspace.py`) and the
step loop (`runner.py`) talk through public names. Read from the source with `ast`
(the agent's import circles are checked in tests/test_layers.py)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "src" / "otto" / "agent"


def private_reaches(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """`x._name` where `x` is neither `self` nor `cls` nor an imported module."""
    imported_modules = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    own = {"self", "cls"} | imported_modules
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        if not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in own:
            continue
        yield node.lineno, f"{ast.unparse(node.value)}.{node.attr}"


def test_no_agent_module_reaches_into_another_objects_private_attributes() -> None:
    files = sorted(AGENT.rglob("*.py"))
    assert AGENT / "steprun.py" in files
    reaches = [
        f"{path.relative_to(AGENT)}:{line}: {what}"
        for path in files
        for line, what in private_reaches(ast.parse(path.read_text()))
    ]
    assert reaches == []


def test_a_private_reach_is_seen() -> None:
    source = "import os\nself._a\nos._exit(0)\nself.agent._store\nrun()._log\n"
    assert list(private_reaches(ast.parse(source))) == [
        (4, "self.agent._store"),
        (5, "run()._log"),
    ]

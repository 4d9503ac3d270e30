"""The layering of docs/architecture.md ("Layers"), read from the source with `ast`.

Every `import` counts, also one inside a function or under `TYPE_CHECKING`: a lazy
import is still an arrow between parts. A part is a package under `src/otto/` or a
module beside them (`otto.model`, `otto.server`, …). Each violation names the
importing file and line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
ARCHITECTURE = SRC.parent / "docs" / "architecture.md"
ROOT = "otto"

# The parts above the shared ones: what the model and the object store never import.
HIGHER = (
    "psm",
    "parser",
    "agent",
    "orchestrator",
    "auction",
    "webhooks",
    "web",
    "client",
    "server",
    "cli",
)


@dataclass(frozen=True)
class Rule:
    """Modules of `importers` (`*`: every part but those `allowed`) never import `forbidden`."""

    importers: str
    forbidden: tuple[str, ...]
    why: str
    allowed: tuple[str, ...] = ()


RULES = [
    Rule("model", HIGHER, "the model is the contract every part shares"),
    Rule("objectstore", HIGHER, "every part reads and writes the object store"),
    Rule(
        "psm",
        ("parser", "agent", "orchestrator", "web"),
        "the PSM takes a model; who parses, runs or shows it calls the PSM",
    ),
    Rule("agent", ("psm",), "an agent knows its invocation, never the server's state"),
    Rule("*", ("server",), "the server assembles the parts; only the CLI starts it", ("cli",)),
]


@dataclass(frozen=True)
class Import:
    importer: str  # the importing module, e.g. otto.psm.routes
    target: str  # the imported Otto module, e.g. otto.parser
    file: str  # relative to the repository
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.importer} imports {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """`otto.psm.store.base` → `psm`; `otto.model` → `model`; `otto` → ``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def is_within(module: str, part: str) -> bool:
    return part_of(module) == part


MODULES = {module_name(path): path for path in sorted((SRC / ROOT).rglob("*.py"))}


def _imported(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the importer's package, `level - 1` packages up
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    # `from otto import model` imports the module otto.model, not only the package
    return [
        f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
        for alias in node.names
    ]


def imports_in(source: str, module: str, file: str) -> Iterator[Import]:
    """Every import of an Otto module in `source`, the text of `module` (at `file`)."""
    is_package = file.endswith("__init__.py")
    for node in ast.walk(ast.parse(source, filename=file)):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        for target in _imported(node, module, is_package):
            if target == ROOT or target.startswith(f"{ROOT}."):
                yield Import(module, target, file, node.lineno)


IMPORTS = [
    found
    for module, path in MODULES.items()
    for found in imports_in(
        path.read_text(encoding="utf-8"), module, path.relative_to(SRC.parent).as_posix()
    )
]


def applies(rule: Rule, importer: str) -> bool:
    if rule.importers == "*":
        return not any(is_within(importer, part) for part in rule.allowed)
    return is_within(importer, rule.importers)


def violations(rule: Rule, imports: list[Import]) -> list[Import]:
    return [
        found
        for found in imports
        if applies(rule, found.importer)
        and part_of(found.target) in rule.forbidden
        and part_of(found.target) != part_of(found.importer)
    ]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: f"{rule.importers}-not-{rule.forbidden}")
def test_no_part_imports_what_its_layer_forbids(rule: Rule) -> None:
    found = violations(rule, IMPORTS)
    assert not found, f"{rule.why}:\n" + "\n".join(map(str, found))


def part_graph(imports: list[Import]) -> dict[str, dict[str, list[Import]]]:
    """part → the parts it imports → the imports that make each arrow."""
    graph: dict[str, dict[str, list[Import]]] = {}
    for found in imports:
        source, target = part_of(found.importer), part_of(found.target)
        if source and target and source != target:
            graph.setdefault(source, {}).setdefault(target, []).append(found)
    return graph


def circles(graph: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """The strongly connected groups of more than one part (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(part: str) -> None:
        index[part] = low[part] = len(index)
        stack.append(part)
        for nxt in graph.get(part, {}):
            if nxt not in index:
                visit(nxt)
                low[part] = min(low[part], low[nxt])
            elif nxt in stack:
                low[part] = min(low[part], index[nxt])
        if low[part] == index[part]:
            group = []
            while not group or group[-1] != part:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for part in sorted(graph):
        if part not in index:
            visit(part)
    return groups


def test_no_import_circles_between_parts() -> None:
    graph = part_graph(IMPORTS)
    report = []
    for group in circles(graph):
        report.append(f"a circle between {', '.join(group)}:")
        for source in group:
            for target in group:
                report.extend(f"  {found}" for found in graph.get(source, {}).get(target, []))
    assert not report, "\n".join(report)


def documented_rules() -> set[tuple[str, frozenset[str], frozenset[str]]]:
    """The table of docs/architecture.md's "Layers": (importers, forbidden, allowed)."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `") or "| every" in line]
    found = set()
    for row in rows:
        who, never = (re.findall(r"`otto\.(\w+)`", cell) for cell in row.strip("|").split("|"))
        if row.startswith("| every module but"):
            found.add(("*", frozenset(never), frozenset(who)))
        else:
            found.add((who[0], frozenset(never), frozenset()))
    return found


def test_the_architecture_document_states_these_rules() -> None:
    coded = {(r.importers, frozenset(r.forbidden), frozenset(r.allowed)) for r in RULES}
    assert documented_rules() == coded


def rule_of(importers: str) -> Rule:
    return next(rule for rule in RULES if rule.importers == importers)


# The checks must be able to fail: each catches the imports it exists to forbid.
def test_the_rules_catch_what_they_forbid() -> None:
    source = "def late():\n    from otto.parser import parse\n    import otto.server\n"
    found = list(imports_in(source, "otto.psm.late", "src/otto/psm/late.py"))
    assert [(f.target, f.line) for f in found] == [("otto.parser", 2), ("otto.server", 3)]
    psm_rule, server_rule = rule_of("psm"), rule_of("*")
    assert violations(psm_rule, found) == [found[0]]
    assert violations(server_rule, found) == [found[1]]
    assert violations(server_rule, [Import("otto.cli", "otto.server", "cli.py", 1)]) == []


def test_a_circle_is_found_with_the_imports_that_make_it() -> None:
    there = Import("otto.agent.runner", "otto.psm.states", "runner.py", 3)
    back = Import("otto.psm.routes", "otto.agent.main", "routes.py", 7)
    graph = part_graph([there, back, Import("otto.psm", "otto.model", "psm.py", 1)])
    assert circles(graph) == [["agent", "psm"]]
    assert graph["psm"]["agent"] == [back]


def module_graph(imports: list[Import], part: str) -> dict[str, dict[str, list[Import]]]:
    """Within one part: module → the part's modules it imports → the imports making each."""
    graph: dict[str, dict[str, list[Import]]] = {}
    for found in imports:
        inside = is_within(found.importer, part) and is_within(found.target, part)
        if inside and found.importer != found.target:
            graph.setdefault(found.importer, {}).setdefault(found.target, []).append(found)
    return graph


def test_no_import_circles_inside_the_agent() -> None:
    """The step loop (`runner`) uses the workspace and the step runtime; a step's runtime
    (`steprun`) is given what it may use and imports neither."""
    graph = module_graph(IMPORTS, "agent")
    assert "otto.agent.steprun" in graph["otto.agent.runner"]  # the graph is read at all
    report = [
        f"{found}"
        for group in circles(graph)
        for source in group
        for target in group
        for found in graph.get(source, {}).get(target, [])
    ]
    assert not report, "a circle inside the agent:\n" + "\n".join(report)
    upward = {"otto.agent.runner", "otto.agent.workspace"} & set(graph["otto.agent.steprun"])
    assert not upward, f"otto.agent.steprun imports {sorted(upward)}"

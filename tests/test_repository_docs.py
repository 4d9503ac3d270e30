"""The repository explains itself: nothing points outside it, and its documents stay true.

A clone holds everything a person needs to follow the code: `docs/architecture.md`
(with its diagram) and `CONTRIBUTING.md`, linked from the README. Every file of the
repository's own (sources, tests, benchmarks, documents) is searched for references to
a design document that only its authors had; every path the two documents name must
exist, so that they cannot silently rot when a module moves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
README = ROOT / "README.md"

SEARCHED_FOLDERS = ("src", "tests", "bench", "docs", "examples", ".ci")
SEARCHED_FILES = ("README.md", "CONTRIBUTING.md", "Makefile", "pyproject.toml")
SKIPPED_FOLDERS = {"__pycache__", ".pytest_cache", ".ruff_cache"}

# Built from parts, so that this file does not match itself.
OUTSIDE = (".." + "/shared", "DESIGN" + ".md", "DESIGN" + " §")
# An item of the team's own issue tracker: "issue" or "issues", then a number (with or
# without "#"), also wrapped onto the next line. A clone cannot follow it; the text should
# state the fact or point to the README, docs/architecture.md or CONTRIBUTING.md. No
# legitimate use exists so far: the forges' webhook events ("issues", GitLab's "Issue
# Hook") are never followed by a number.
TRACKER_ISSUE = re.compile(r"\b[Ii]ssues?\s+#?\d+\b")

# A path in the repository, as the documents write them (`tests/parser`,
# `src/otto/psm/flow.py`, `tests/parser/test_x.py::test_y`).
REPO_PATH = re.compile(r"(?<![\w/.])((?:src/otto|tests|bench|docs)(?:/[\w.\-]+)*/?)")
# A module named without its package (`machine.py`, `store/base.py`): some file ends so.
MODULE = re.compile(r"`([\w/]+\.py)`")


def repository_text_files() -> Iterator[Path]:
    for name in SEARCHED_FILES:
        if (ROOT / name).is_file():
            yield ROOT / name
    for folder in SEARCHED_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and not SKIPPED_FOLDERS.intersection(path.parts):
                yield path


def text_of(path: Path) -> str | None:
    """The file's text; None for a binary file (a screenshot, bytecode)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def document(path: Path) -> str:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    return path.read_text(encoding="utf-8")


def references_outside(text: str) -> list[str]:
    return [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), 1)
        if any(marker in line for marker in OUTSIDE)
    ]


def tracker_citations(text: str) -> list[str]:
    lines = text.splitlines()
    numbers = [text.count("\n", 0, match.start()) + 1 for match in TRACKER_ISSUE.finditer(text)]
    return [f"line {number}: {lines[number - 1].strip()}" for number in numbers]


def files_where(find: Callable[[str], list[str]]) -> dict[str, list[str]]:
    """Each searched text file in which `find` finds something, with what it found."""
    found = {}
    for path in repository_text_files():
        text = text_of(path)
        if text is not None and (lines := find(text)):
            found[str(path.relative_to(ROOT))] = lines
    return found


def test_nothing_refers_outside_the_repository() -> None:
    found = files_where(references_outside)
    assert not found, f"references to a document outside the repository: {found}"


def test_nothing_cites_the_issue_tracker() -> None:
    found = files_where(tracker_citations)
    assert not found, (
        "issue numbers of a tracker a clone cannot see (state the fact, or point to the "
        f"README, docs/architecture.md or CONTRIBUTING.md): {found}"
    )


def test_tracker_citations_are_told_from_a_forges_words() -> None:
    issue = "issue"
    text = (
        f"fine\n(as {issue} 19 says)\nthe webhook event '{issue}s' and 'Issue Hook'\n"
        f"{issue}s 5, 12\nsee {issue.title()} #3\nwrapped {issue}\n7, and a t{issue} 4\n"
    )
    assert tracker_citations(text) == [
        f"line 2: (as {issue} 19 says)",
        f"line 4: {issue}s 5, 12",
        f"line 5: see {issue.title()} #3",
        f"line 6: wrapped {issue}",
    ]


def test_the_search_sees_sources_and_documents() -> None:
    searched = {path.relative_to(ROOT).as_posix() for path in repository_text_files()}
    assert {"README.md", "src/otto/server.py", "docs/architecture.md"} <= searched
    assert "tests/test_repository_docs.py" in searched
    cited = f"see {OUTSIDE[1]} for more"
    assert references_outside(f"fine\n{cited}") == [f"line 2: {cited}"]


def test_architecture_has_a_mermaid_diagram() -> None:
    text = document(ARCHITECTURE)
    assert re.search(r"^```mermaid\n.+?\n```$", text, re.MULTILINE | re.DOTALL), (
        "docs/architecture.md has no ```mermaid block"
    )


def test_readme_links_the_architecture_and_contributing() -> None:
    readme = document(README)
    assert "](docs/architecture.md)" in readme
    assert "](CONTRIBUTING.md)" in readme


def named_paths(text: str) -> set[str]:
    return {m.split("::")[0].rstrip(".") for m in REPO_PATH.findall(text)}


@pytest.mark.parametrize("path", [ARCHITECTURE, CONTRIBUTING], ids=lambda p: p.name)
def test_every_path_a_document_names_exists(path: Path) -> None:
    named = named_paths(document(path))
    assert any(name.startswith("src/otto/") for name in named)
    missing = sorted(name for name in named if not (ROOT / name).exists())
    assert not missing, f"{path.name} names paths that do not exist: {missing}"


def test_every_module_the_architecture_names_exists() -> None:
    sources = [p.relative_to(ROOT).as_posix() for p in (ROOT / "src" / "otto").rglob("*.py")]
    named = set(MODULE.findall(document(ARCHITECTURE)))
    assert "machine.py" in named
    missing = sorted(
        name
        for name in named
        if not any(source == name or source.endswith("/" + name) for source in sources)
    )
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_path_finders_read_the_documents_forms() -> None:
    text = "`src/otto/psm/flow.py`. and `tests/parser/test_x.py::test_y`, not `mytests/x`"
    assert named_paths(text) == {"src/otto/psm/flow.py", "tests/parser/test_x.py"}

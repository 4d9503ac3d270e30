"""Step manifests: the standard library's parameters and how calls bind to them."""

from __future__ import annotations

import pytest

from otto.model import Step
from otto.steps import (
    ManifestError,
    StepCallError,
    load_manifest,
    standard_manifests,
    step_problems,
)


def test_standard_manifests() -> None:
    manifests = standard_manifests()
    assert set(manifests) == {
        *("sh", "git", "echo", "error", "dir", "archive", "unarchive"),
        *("cache-restore", "cache-save"),
    }
    assert [p.name for p in manifests["cache-save"].parameters] == ["name", "paths", "key"]
    assert [p.name for p in manifests["git"].parameters] == [
        "url",
        "branch",
        "ref",
        "into",
        "depth",
    ]
    assert [p.name for p in manifests["archive"].parameters] == [
        "artifacts",
        "name",
        "followSymlinks",
    ]
    assert manifests["dir"].parameter("block").type == "block"  # type: ignore[union-attr]


def test_positional_arguments_map_by_manifest_order() -> None:
    git = standard_manifests()["git"]
    assert git.bind(["https://example.invalid/r.git", "main"]) == {
        "url": "https://example.invalid/r.git",
        "branch": "main",
    }
    with pytest.raises(StepCallError, match="at most 5"):
        git.bind(["a", "b", "c", "d", "e", "f"])


def test_keyword_problems_are_named() -> None:
    manifests = standard_manifests()
    with pytest.raises(StepCallError, match="missing required parameter `url`"):
        manifests["git"].bind({"branch": "main"})
    with pytest.raises(StepCallError, match="did you mean `branch`"):
        manifests["git"].bind({"url": "u", "brnch": "main"})
    assert manifests["sh"].bind({"script": "x", "timeout": "5"}) == {"script": "x", "timeout": "5"}
    assert manifests["archive"].bind({"artifacts": "a"})["followSymlinks"] is False


def test_unknown_steps_suggest_the_closest_and_list_the_known() -> None:
    step = Step(context="c", symbol="shh", parameters=["x"])
    [(bad, error)] = step_problems([step], standard_manifests())
    assert bad is step
    assert "did you mean `sh`" in str(error) and "known steps: archive, dir" in str(error)


def test_a_bad_manifest_file_is_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "manifest.yml"
    path.write_text("symbol: x\nparameters:\n  - name: a\n    type: number\n")
    with pytest.raises(ManifestError, match=r"parameters\.0\.type"):
        load_manifest(path)
    path.write_text("symbol: [unclosed\n")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(path)

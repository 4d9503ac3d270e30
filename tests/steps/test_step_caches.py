"""Caches: saved after a stage's steps, restored in later runs, from the default branch
when a branch has none; immutable per key, racing saves, and every way out refused."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path
from typing import Any

from agentkit import AgentHarness, context, sh, spec
from otto.objectstore.keys import cache_key, cache_used_key
from otto.steps.caches import content_key

MAIN = {"OTTO_PROJECT": "shop", "OTTO_BRANCH": "main", "OTTO_DEFAULT_BRANCH": "main"}
# A pip-like download: 50 MB of incompressible wheels, slow to fetch, skipped when cached.
DOWNLOAD = sh(
    "if [ -d .cache/pip ]; then echo 'pip: cached'; else "
    "mkdir -p .cache/pip && sleep 2 && for i in $(seq 1 50); do "
    "head -c 1000000 /dev/urandom > .cache/pip/wheel-$i.whl; done && echo 'pip: downloaded'; fi"
)


def cache_save(name: str, paths: str, key: str | None = None) -> dict[str, Any]:
    return spec("cache-save", name=name, paths=paths, **({"key": key} if key else {}))


def cache_restore(name: str, key: str | None = None) -> dict[str, Any]:
    return spec("cache-restore", name=name, **({"key": key} if key else {}))


def pip_stage(harness: AgentHarness, variables: dict[str, str]) -> Any:
    ctx = context(cache_restore("pip"), DOWNLOAD, cache_save("pip", ".cache/pip/"))
    started = time.monotonic()
    out = harness.run(ctx, variables=variables)
    return out, time.monotonic() - started


def test_a_50_mb_cache_saved_in_run_1_is_restored_in_run_2(harness: AgentHarness) -> None:
    first, cold = pip_stage(harness, MAIN)
    assert first.status == "Success", first.context_log
    assert "no cache yet" in first.log(0)
    assert first.log(1).splitlines()[-1] == "pip: downloaded"
    assert first.log(2).startswith("cache pip: saved 50.")
    key = cache_key("shop", "main", "pip", "nokey")
    assert harness.store.head(key).size > 50_000_000

    second, warm = pip_stage(harness, MAIN)
    assert second.status == "Success"
    assert second.log(0).startswith("cache pip: restored 50.")
    assert "(from main)" in second.log(0)
    assert second.log(1).splitlines()[-1] == "pip: cached"
    assert "kept" in second.log(2)  # immutable: the same key is not saved again
    assert harness.store.head(cache_used_key(key)).size == 0
    print(f"\npip-like stage: run 1 (download) {cold:.2f} s, run 2 (cache) {warm:.2f} s")
    assert warm < cold


def test_a_feature_branch_first_run_restores_the_default_branch_cache(
    harness: AgentHarness,
) -> None:
    make = sh("mkdir -p vendor && echo gem > vendor/a.gem")
    assert harness.run(context(make, cache_save("gems", "vendor")), variables=MAIN).status == (
        "Success"
    )
    feature = {**MAIN, "OTTO_BRANCH": "feature/login"}
    out = harness.run(context(cache_restore("gems"), sh("cat vendor/a.gem")), variables=feature)
    assert out.status == "Success"
    assert "(from main)" in out.log(0)
    assert out.log(1).splitlines()[-1] == "gem"
    # The feature branch's own save goes under its own name; main's stays as it was.
    changed = sh("mkdir -p vendor && echo new > vendor/a.gem")
    harness.run(context(changed, cache_save("gems", "vendor")), variables=feature)
    assert harness.store.list("caches/shop/feature~login/gems/")
    again = harness.run(context(cache_restore("gems"), sh("cat vendor/a.gem")), variables=feature)
    assert "(from feature/login)" in again.log(0) and again.log(1).splitlines()[-1] == "new"
    other = harness.run(context(cache_restore("gems")), variables={"OTTO_BRANCH": "x"})
    assert "no cache yet" in other.log(0)  # another project (none: `_`) sees nothing


def test_a_content_key_changes_with_the_key_files(harness: AgentHarness) -> None:
    reqs = sh("echo 'requests==2.31' > requirements.txt && mkdir -p env && echo 1 > env/v")
    save = cache_save("pip", "env", key="requirements.txt")
    assert harness.run(context(reqs, save), variables=MAIN).status == "Success"
    same = harness.run(context(reqs, cache_restore("pip", key="requirements.txt")), variables=MAIN)
    assert "restored" in same.log(1)
    bumped = sh("echo 'requests==2.32' > requirements.txt")
    miss = harness.run(
        context(bumped, cache_restore("pip", key="requirements.txt")), variables=MAIN
    )
    assert "no cache yet" in miss.log(1)


def test_two_racing_saves_of_one_key_leave_one_whole_cache(harness: AgentHarness) -> None:
    make = sh("mkdir -p out && head -c 5000000 /dev/urandom > out/blob && echo $$ > out/who")
    invocations = [
        harness.invocation(context(make, cache_save("race", "out")), variables=MAIN)
        for _ in range(2)
    ]
    agents = [harness.spawn(inv) for inv in invocations]
    assert [agent.wait(60) for agent in agents] == [0, 0]
    saved = [harness.events(inv) for inv in invocations]
    assert all(any(e.get("status") == "Success" for e in events) for events in saved)
    keys = [o.key for o in harness.store.list("caches/shop/main/race/")]
    assert keys == [cache_key("shop", "main", "race", "nokey")]
    with tarfile.open(fileobj=io.BytesIO(harness.store.get(keys[0]))) as tar:
        assert sorted(tar.getnames()) == ["out", "out/blob", "out/who"]
        blob = tar.extractfile("out/blob")
        assert blob is not None and len(blob.read()) == 5_000_000


def test_paths_leading_out_of_the_workspace_are_refused(harness: AgentHarness) -> None:
    link = sh("mkdir -p deps && ln -s /etc deps/etc")
    out = harness.run(context(link, cache_save("deps", "deps")), variables=MAIN)
    assert out.status == "Failed"
    assert "symlink pointing outside the workspace" in (out.result.reason or "")
    top = harness.run(context(sh("ln -s / root"), cache_save("root", "root")), variables=MAIN)
    assert top.status == "Failed" and "outside the workspace" in (top.result.reason or "")
    for path in ("../up", "/etc"):
        refused = harness.run(context(cache_save("bad", path)), variables=MAIN)
        assert refused.status != "Success"
        assert "must stay inside the workspace" in refused.context_log
    assert not harness.store.list("caches/")


def test_a_tampered_archive_cannot_write_outside(harness: AgentHarness) -> None:
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    harness.store.put(cache_key("shop", "main", "evil", "nokey"), evil.getvalue())
    out = harness.run(context(cache_restore("evil")), variables=MAIN)
    assert out.status == "Failed" and "cache evil refused" in (out.result.reason or "")
    assert not list(harness.root.rglob("escaped"))


def test_a_tampered_symlink_cannot_lead_out(harness: AgentHarness) -> None:
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        link = tarfile.TarInfo("deps")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
    harness.store.put(cache_key("shop", "main", "evil", "nokey"), evil.getvalue())
    out = harness.run(context(cache_restore("evil"), sh("test ! -e deps")), variables=MAIN)
    assert out.status == "Failed"
    assert "symlink `deps` points out of the workspace" in (out.result.reason or "")
    assert [p.name for p in out.workspace.iterdir()] == []  # nothing left, no staging


def test_the_content_key_hashes_names_and_contents(tmp_path: Any) -> None:
    (tmp_path / "a").write_text("1")
    assert content_key(tmp_path, []) == "nokey"
    first = content_key(tmp_path, ["a"])
    (tmp_path / "a").write_text("2")
    assert content_key(tmp_path, ["a"]) != first


def test_a_restore_merges_into_directories_and_never_follows_a_symlink(
    harness: AgentHarness, tmp_path: Path
) -> None:
    make = sh("mkdir -p vendor/gems && echo a > vendor/gems/a && echo b > vendor/b")
    assert harness.run(context(make, cache_save("gems", "vendor")), variables=MAIN).status == (
        "Success"
    )
    outside = tmp_path / "outside"
    outside.mkdir()
    present = sh("mkdir -p vendor/gems && echo mine > vendor/gems/mine && echo old > vendor/b")
    merged = harness.run(
        context(present, cache_restore("gems"), sh("cat vendor/gems/mine vendor/gems/a vendor/b")),
        variables=MAIN,
    )
    assert merged.status == "Success"
    assert merged.log(2).splitlines()[-3:] == ["mine", "a", "b"]
    linked = harness.run(
        context(sh(f"ln -s {outside} vendor"), cache_restore("gems"), sh("test ! -L vendor")),
        variables=MAIN,
    )
    assert linked.status == "Success"
    assert list(outside.iterdir()) == []  # replaced, not written through

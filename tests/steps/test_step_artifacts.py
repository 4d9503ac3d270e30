"""`archive` and `unarchive`: artifacts between contexts, and every way out refused."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from agentkit import AgentHarness, context, sh, spec
from otto.steps.artifacts import BUNDLE_TYPE, artifact_key, bundle_key


def test_one_file_is_stored_as_is(harness: AgentHarness) -> None:
    out = harness.run(
        context(sh("mkdir -p dist && echo binary > dist/app.bin"), spec("archive", "dist/app.bin"))
    )
    assert out.status == "Success"
    assert harness.store.get(artifact_key(harness.pipeline, "app.bin")) == b"binary\n"
    named = harness.run(
        context(sh("echo v > f.txt"), spec("archive", artifacts="f.txt", name="ver"))
    )
    assert harness.store.get(artifact_key(harness.pipeline, "ver")) == b"v\n"
    assert named.log(1) == "stored f.txt as artifact `ver` (2 bytes)\n"


def test_a_directory_round_trips_through_another_context(harness: AgentHarness) -> None:
    build = sh(
        "mkdir -p out/sub && echo a > out/a.txt && echo b > out/sub/b.txt "
        "&& ln -s a.txt out/link && chmod +x out/a.txt"
    )
    first = harness.run(context(build, spec("archive", artifacts="out", name="build")))
    assert first.status == "Success"
    info = harness.store.head(bundle_key(harness.pipeline, "build"))
    assert info.content_type == BUNDLE_TYPE
    check = sh("test -x out/a.txt && test -L out/link && cat out/link out/sub/b.txt")
    second = harness.run(context(spec("unarchive", "build"), check))
    assert second.status == "Success", second.log(1)
    assert second.log(1).splitlines()[-2:] == ["a", "b"]


def test_a_glob_needs_a_name_when_it_matches_several(harness: AgentHarness) -> None:
    make = sh("mkdir -p dist && touch dist/a.whl dist/b.whl dist/c.txt")
    unnamed = harness.run(context(make, spec("archive", "dist/*.whl")))
    assert unnamed.status == "Failed"
    assert "give the artifact a name" in (unnamed.result.reason or "")
    named = harness.run(context(make, spec("archive", artifacts="dist/*.whl", name="wheels")))
    assert named.status == "Success"
    with tarfile.open(
        fileobj=io.BytesIO(harness.store.get(bundle_key(harness.pipeline, "wheels")))
    ) as tar:
        assert sorted(tar.getnames()) == ["dist/a.whl", "dist/b.whl"]


def test_unarchive_in_a_dir_and_one_file_artifacts(harness: AgentHarness) -> None:
    harness.run(context(sh("echo hi > note"), spec("archive", "note")))
    out = harness.run(context(spec("dir", "x", [spec("unarchive", "note")]), sh("cat x/note")))
    assert out.status == "Success"
    assert out.log(1).splitlines()[-1] == "hi"


def test_missing_things_fail_the_step(harness: AgentHarness) -> None:
    none = harness.run(context(spec("archive", "nothing-here")))
    assert (none.status, none.result.reason) == ("Failed", "`nothing-here` does not exist")
    glob = harness.run(context(spec("archive", artifacts="*.zip", name="z")))
    assert glob.result.reason == "no file matches `*.zip`"
    absent = harness.run(context(spec("unarchive", "never-stored")))
    assert absent.result.reason == "no artifact `never-stored` in this pipeline"


@pytest.mark.parametrize(
    ("setup", "artifacts", "message"),
    [
        ("true", "../../../etc", "outside the step's directory"),
        ("ln -s /etc/hostname leak", "leak", "a symlink pointing outside the workspace"),
        ("mkdir d && ln -s /etc d/etc", "d", "`d/etc` is a symlink pointing outside"),
        ("mkdir d && ln -s /etc d/etc", "d/**", "`d/etc` is a symlink pointing outside"),
        ("ln -s / root", "root/etc/hostname", "a path leading outside the workspace"),
    ],
)
def test_archive_refuses_paths_leaving_the_workspace(
    harness: AgentHarness, setup: str, artifacts: str, message: str
) -> None:
    out = harness.run(context(sh(setup), spec("archive", artifacts=artifacts, name="x")))
    assert out.status == "Failed"
    assert message in (out.result.reason or "")
    assert harness.store.list(f"{harness.pipeline}/artifacts/") == []


def test_archive_follows_symlinks_inside_only_when_asked(harness: AgentHarness) -> None:
    setup = sh("mkdir -p d real && echo data > real/f && ln -s ../real/f d/f")
    linked = harness.run(context(setup, spec("archive", artifacts="d", name="l")))
    followed = harness.run(
        context(setup, spec("archive", artifacts="d", name="f", followSymlinks="true"))
    )
    assert linked.status == followed.status == "Success"

    def member(name: str) -> tarfile.TarInfo:
        data = harness.store.get(bundle_key(harness.pipeline, name))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return tar.getmember("d/f")

    assert member("l").issym() and member("l").linkname == "../real/f"
    assert member("f").isfile() and member("f").size == 5


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), b"pwned\n"


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, b""


@pytest.mark.parametrize(
    "members",
    [
        [_file("../escaped")],
        [_file("ok/../../escaped")],
        [_file("/tmp/otto-absolute-escape")],
        [_link("up", "../.."), _file("up/escaped")],
        [_link("here", "."), _file("here/x")],
        [_link("abs", "/tmp")],
        [_link("hard", "/etc/passwd", tarfile.LNKTYPE)],
        [(tarfile.TarInfo("dev"), b"")],
    ],
    ids=[
        "dotdot",
        "inner-dotdot",
        "absolute",
        "symlink-up",
        "below-symlink",
        "abs-symlink",
        "hardlink",
        "device",
    ],
)
def test_unarchive_refuses_a_malicious_archive(
    harness: AgentHarness, tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]]
) -> None:
    for info, _ in members:
        if info.name == "dev":
            info.type = tarfile.CHRTYPE
    harness.store.put(bundle_key(harness.pipeline, "evil"), _tar(members), BUNDLE_TYPE)
    out = harness.run(context(spec("dir", "a/b", [spec("unarchive", "evil")])))
    assert out.status == "Failed"
    assert "artifact `evil` refused" in (out.result.reason or "")
    assert not (out.workspace.parent / "escaped").exists()
    assert not (out.workspace / "a" / "escaped").exists()
    assert not Path("/tmp/otto-absolute-escape").exists()


def test_unarchive_does_not_write_through_a_symlink_in_the_workspace(
    harness: AgentHarness, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    harness.store.put(bundle_key(harness.pipeline, "tricky"), _tar([_file("out/x")]), BUNDLE_TYPE)
    out = harness.run(context(sh(f"ln -s {outside} out"), spec("unarchive", "tricky")))
    assert out.status == "Failed"
    assert list(outside.iterdir()) == []


def test_a_filesystem_refusal_fails_the_step(harness: AgentHarness) -> None:
    harness.run(context(sh("echo hi > note"), spec("archive", "note")))
    out = harness.run(context(sh("mkdir -p note/inside"), spec("unarchive", "note")))
    assert out.status == "Failed"
    assert (out.result.reason or "").startswith("`unarchive`: [Errno 21] Is a directory")

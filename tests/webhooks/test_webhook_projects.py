"""Project files: defaults, validation with file and line, refspec matching."""

from __future__ import annotations

from pathlib import Path

from otto.webhooks.projects import load_projects


def write(directory: Path, name: str, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)


def test_defaults(tmp_path: Path) -> None:
    write(tmp_path, "app.yml", "source: {url: 'https://x/app.git'}\nsecret_env: S\n")
    (project,), problems = load_projects(tmp_path)
    assert problems == []
    assert project.name == "app" and project.pipeline.path == "Ottofile"
    assert project.checkout is True and project.statuses is None
    assert project.supersede == "none" and project.default_branches == ["main", "master"]
    assert project.wants("refs/heads/anything") and project.wants("refs/tags/v1")


def test_statuses_defaults(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", "source: {url: u}\nsecret_env: S\nstatuses: {token_env: T}\n")
    (project,), _ = load_projects(tmp_path)
    assert project.statuses is not None
    assert project.statuses.api_url == "https://api.github.com"
    assert project.statuses.context == "otto" and project.statuses.unstable_as == "success"


def test_refspec_globs(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", "source: {url: u, refspec: ['main', 'release/*']}\nsecret_env: S\n")
    (project,), _ = load_projects(tmp_path)
    assert project.wants("refs/heads/main") and project.wants("refs/heads/release/2.0")
    assert not project.wants("refs/heads/feature") and not project.wants("refs/heads/mainline")


def test_problems_name_file_and_line_and_the_others_load(tmp_path: Path) -> None:
    write(tmp_path, "good.yml", "source: {url: u}\nsecret_env: S\n")
    write(tmp_path, "nosecret.yml", "title: t\nsource:\n  url: v\n")
    write(tmp_path, "typo.yml", "source:\n  url: w\n  refspecs: [x]\nsecret_env: S\n")
    write(tmp_path, "yaml.yml", "source: {url: [\n")
    write(tmp_path, "list.yml", "- a\n")
    write(tmp_path, "zdup.yml", "source: {url: u}\nsecret_env: S2\n")
    projects, problems = load_projects(tmp_path)
    assert [p.name for p in projects] == ["good"]
    found = {p.file.name: (p.line, p.message) for p in problems}
    assert found["nosecret.yml"] == (1, "missing key 'secret_env'")
    assert found["typo.yml"][0] == 3 and "refspecs" in found["typo.yml"][1]
    assert found["yaml.yml"][0] == 1 and "not valid YAML" in found["yaml.yml"][1]
    assert found["list.yml"][0] == 1
    assert "another project already has u" in found["zdup.yml"][1]
    assert str(problems[0]).startswith(str(tmp_path))


def test_no_directory_no_projects(tmp_path: Path) -> None:
    assert load_projects(tmp_path / "missing") == ([], [])


def test_outbound_webhook_subscribers(tmp_path: Path) -> None:
    write(
        tmp_path,
        "app.yml",
        "source: {url: u}\nsecret_env: S\nwebhooks:\n"
        "  - url: https://hooks.example.com/otto\n    secret_env: HOOK\n"
        "  - url: http://127.0.0.1:9000/x\n    secret_env: HOOK2\n"
        "    entities: [pipeline, context]\n    states: [Complete, Failed]\n",
    )
    (project,), problems = load_projects(tmp_path)
    assert problems == []
    everything, some = project.webhooks
    assert everything.entities == ["pipeline", "batch", "context", "step"]
    assert everything.states == [] and everything.wants("step", "Running", None)
    assert some.wants("pipeline", "Complete", "Success") and some.wants(
        "context", "Failed", "Failed"
    )
    assert not some.wants("pipeline", "Running", None) and not some.wants("step", "Failed", None)
    assert project.public()["webhooks"][1]["secret_env"] == "HOOK2"


def test_bad_subscribers_are_reported_with_file_and_line(tmp_path: Path) -> None:
    head = "source: {url: u}\nsecret_env: S\nwebhooks:\n"
    write(tmp_path, "a.yml", head + "  - url: ftp://x\n    secret_env: H\n")
    write(tmp_path, "b.yml", head + "  - url: http://x\n")
    write(tmp_path, "c.yml", head + "  - url: http://x\n    secret_env: H\n    states: [Done]\n")
    write(tmp_path, "d.yml", head + "  - url: http://x\n    secret_env: H\n    entities: [job]\n")
    write(tmp_path, "e.yml", head + "  - url: http://x\n    secret_env: H\n    token: t\n")
    projects, problems = load_projects(tmp_path)
    assert projects == []
    found = {p.file.name: (p.line, p.message) for p in problems}
    assert found["a.yml"][0] == 4 and found["a.yml"][1].startswith("webhooks.0.url: ")
    assert found["b.yml"] == (4, "missing key 'secret_env' in webhooks.0")
    assert found["c.yml"][0] == 6 and "unknown state 'Done'; one of Aborted" in found["c.yml"][1]
    assert found["d.yml"][0] == 6 and found["d.yml"][1].startswith("webhooks.0.entities.0: ")
    assert found["e.yml"] == (6, "unknown key 'token' in webhooks.0")


def test_every_problem_of_a_file_at_once_each_at_its_line_naming_the_key(tmp_path: Path) -> None:
    write(
        tmp_path,
        "app.yml",
        "title: App\n"  # 1
        "source:\n"  # 2
        "  url: https://x/app.git\n"  # 3
        "  refspecs: [main]\n"  # 4
        "statuses:\n"  # 5
        "  context: ci\n"  # 6
        "secert_env: APP_SECRET\n"  # 7
        "supersede: sometimes\n"  # 8
        "checkout: maybe\n",  # 9
    )
    projects, problems = load_projects(tmp_path)
    assert projects == []
    assert [p.at_line() for p in problems] == [
        "line 1: missing key 'secret_env'",
        "line 4: unknown key 'refspecs' in source (did you mean 'refspec'?)",
        "line 7: unknown key 'secert_env' (did you mean 'secret_env'?)",
        "line 8: supersede: input should be 'none', 'pending' or 'running'",
        "line 9: checkout: input should be a valid boolean, unable to interpret input",
    ]
    assert str(problems[2]) == f"{tmp_path / 'app.yml'}:7: " + problems[2].message

"""User step libraries: a shell-script step fetched from the object store and run."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from agentkit import CONTROL, AgentHarness, context, sh, spec
from otto.steps.library import library_key

MANIFEST = """\
symbol: greet
description: Greet someone, from a shell script.
entrypoint: bin/greet.sh
parameters:
  - name: who
    required: true
  - name: greeting
    default: Hello
"""

# Shell only: the parameters are read with sed from the one-line JSON invocation file.
SCRIPT = f"""\
#!/bin/sh
set -e
cp "$1" "$OTTO_WORKSPACE/invocation.json"
who=$(sed -n 's/.*"who": *"\\([^"]*\\)".*/\\1/p' "$1")
greeting=$(sed -n 's/.*"greeting": *"\\([^"]*\\)".*/\\1/p' "$1")
echo "$greeting, $who!"
{CONTROL} capture GREETED "$who"
"""


def library(files: dict[str, tuple[str | bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (content, mode) in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


GREET = {"manifest.yml": (MANIFEST, 0o644), "bin/greet.sh": (SCRIPT, 0o755)}
LIBRARIES = [{"name": "greeter", "version": "1.0"}]


@pytest.fixture
def greeter(harness: AgentHarness) -> AgentHarness:
    harness.store.put(library_key("greeter", "1.0"), library(GREET))
    return harness


def test_a_library_step_runs_with_its_invocation_file(greeter: AgentHarness) -> None:
    ctx = context(spec("greet", "world"), sh('echo "greeted $VAR_GREETED"'))
    out = greeter.run(ctx, libraries=LIBRARIES)
    assert out.status == "Success", out.context_log
    assert out.log(0).splitlines() == ["+ greet (step library greeter 1.0)", "Hello, world!"]
    assert out.log(1).splitlines()[-1] == "greeted world"
    invocation = json.loads((out.workspace / "invocation.json").read_text())
    assert invocation["parameters"] == {"who": "world", "greeting": "Hello"}
    config = invocation["configuration"]
    assert config["pipeline"] == greeter.pipeline
    assert config["step"] == ctx.steps[0].uuid
    assert config["object_store"] == str(greeter.root / "objects")
    assert Path(config["cache_dir"]).is_dir()
    assert config["control_socket"].endswith("control.sock")
    assert len(config["control_token"]) >= 32
    assert config["context"] == ctx.uuid
    assert not Path(invocation["configuration"]["control_socket"]).exists()  # gone with the run


def test_library_parameters_are_validated_before_the_run(greeter: AgentHarness) -> None:
    ctx = context(sh("touch ran"), spec("greet", greeting="Hi"))
    out = greeter.run(ctx, libraries=LIBRARIES)
    assert out.status == "Failed"
    assert "`greet` is missing required parameter `who`" in (out.result.reason or "")
    assert not (out.workspace / "ran").exists()


def test_a_library_step_is_unknown_unless_listed(greeter: AgentHarness) -> None:
    out = greeter.run(context(spec("greet", "world")))
    assert "unknown step `greet`" in (out.result.reason or "")


def test_the_library_is_cached(greeter: AgentHarness) -> None:
    first = greeter.run(context(spec("greet", "a")), libraries=LIBRARIES)
    cached = list((greeter.root / "cache" / "step-libraries" / "greeter" / "1.0").iterdir())
    assert [p.name for p in cached] == [greeter.store.head(library_key("greeter", "1.0")).sha256]
    marker = cached[0] / "marker"
    marker.touch()
    second = greeter.run(context(spec("greet", "b")), libraries=LIBRARIES)
    assert first.status == second.status == "Success"
    assert marker.exists()
    # A new upload of the same version is fetched again.
    changed = {**GREET, "bin/greet.sh": (SCRIPT.replace("$greeting,", "$greeting;"), 0o755)}
    greeter.store.put(library_key("greeter", "1.0"), library(changed))
    third = greeter.run(context(spec("greet", "c")), libraries=LIBRARIES)
    assert third.log(0).splitlines()[-1] == "Hello; c!"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"bin/greet.sh": (SCRIPT, 0o755)}, "manifest.yml"),
        ({**GREET, "../evil": ("x", 0o644)}, "leaves the destination"),
        ({**GREET, "bin/greet.sh": (SCRIPT, 0o644)}, "is not executable"),
        ({"manifest.yml": (MANIFEST.replace("greet.sh", "../../x"), 0o644)}, "not a file of"),
        (
            {**GREET, "manifest.yml": (MANIFEST.replace("symbol: greet", "symbol: sh"), 0o644)},
            "`sh` is a standard step",
        ),
        ({"manifest.yml": ("symbol: [", 0o644)}, "not valid YAML"),
    ],
)
def test_a_broken_library_fails_the_context_before_anything_runs(
    harness: AgentHarness, files: dict[str, tuple[str, int]], message: str
) -> None:
    harness.store.put(library_key("greeter", "1.0"), library(files))
    out = harness.run(context(sh("touch ran")), libraries=LIBRARIES)
    assert out.status == "Failed"
    assert message in (out.result.reason or "")
    assert not (out.workspace / "ran").exists()
    assert message in out.context_log


def test_a_missing_library_fails_the_context(harness: AgentHarness) -> None:
    out = harness.run(context(sh("true")), libraries=[{"name": "nope", "version": "9"}])
    assert out.status == "Failed"
    assert out.result.reason == "no step library nope 9 (step-libraries/nope/9.tar.gz)"

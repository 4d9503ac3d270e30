"""`runtime { … }` and `image = '…'`: what a stage asks of the machine it runs on, as
stage properties of the one model."""

from __future__ import annotations

import pytest

from otto.parser import ParseError, parse, render


def properties(text: str) -> dict[str, str]:
    return parse(text).batches[0].contexts[0].properties


def test_runtime_docker_block_sets_the_image_and_its_limits() -> None:
    found = properties(
        """pipeline { stage {
            name = 'Test'
            runtime { arch = 'x86_64' docker { image = 'python:3.12' cpus = '2' memory = '2g' } }
            steps { sh 'pytest' }
        } }"""
    )
    assert found == {
        "name": "Test",
        "arch": "x86_64",
        "image": "python:3.12",
        "cpus": "2",
        "memory": "2g",
    }


def test_the_short_forms_mean_the_same() -> None:
    long = properties(
        "pipeline { stage { runtime { os = 'linux' docker { image = 'alpine' } } "
        "steps { sh 'true' } } }"
    )
    short = properties(
        "pipeline { stage { runtime = 'linux' image = 'alpine' steps { sh 'true' } } }"
    )
    assert long == short == {"runtime": "linux", "image": "alpine"}


def test_a_rendered_runtime_block_parses_back_to_the_same_properties() -> None:
    model = parse(
        "pipeline { stage { runtime { docker { image = 'alpine' memory = '1g' } } "
        "steps { sh 'true' } } }"
    )
    again = parse(render(model))
    assert again.batches[0].contexts[0].properties == model.batches[0].contexts[0].properties


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        (
            "pipeline { stage { runtime { docker { imag = 'x' } } steps { sh 'x' } } }",
            (1, 39),
            "unknown setting 'imag' in 'docker' (one of image, cpus, memory)",
        ),
        (
            "pipeline { stage { runtime { disk = 'x' } steps { sh 'x' } } }",
            (1, 30),
            "unknown setting 'disk' in 'runtime' (one of os, arch, labels, image)",
        ),
    ],
)
def test_an_unknown_setting_is_an_error_at_its_name(
    text: str, where: tuple[int, int], words: str
) -> None:
    with pytest.raises(ParseError) as caught:
        parse(text)
    assert (caught.value.line, caught.value.column) == where
    assert caught.value.message == words

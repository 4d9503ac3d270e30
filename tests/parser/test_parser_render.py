"""The canonical renderer: its style, and the models it refuses."""

from __future__ import annotations

from typing import Any

import pytest
from parserkit import normalise

from otto.model import Batch, BatchMode, Context, Pipeline, Step, load, new_uuid
from otto.parser import MAX_BLOCK_DEPTH, parse, render

ORIGINAL_JSON = {
    "uuid": "2265b5d0-1f70-46de-bf50-f1050e9fac9a",
    "batches": [
        {
            "mode": "Linear",
            "contexts": [
                {
                    "uuid": "3ce1f6fb-79ca-4564-a47e-98265f53ef7f",
                    "properties": {"name": "Build"},
                    "environment": None,
                    "steps": [
                        {
                            "uuid": "5599cffb-f23a-4e0f-a0b9-f74654641b2b",
                            "context": "3ce1f6fb-79ca-4564-a47e-98265f53ef7f",
                            "symbol": "sh",
                            "parameters": ["ls -lah | tail -n 5"],
                        }
                    ],
                }
            ],
        }
    ],
}

MESSY = """// a comment that goes away
pipeline { steps { sh 'ls' }
  stage { environment { CC='gcc' } name = 'Build'
  steps { sh 'a' 'b' git url: 'u'
  branch: 'b' dir 'x' { sh 'it''s' } echo message: 'multi
  line' { echo 'in a keyword block' } } }
  parallel { stage { name = 'p' steps { sh 'p' } } }
  fanout { }
}"""

CANONICAL = """pipeline {
    steps {
        sh 'ls'
    }
    stage {
        name = 'Build'
        environment {
            CC = 'gcc'
        }
        steps {
            sh 'a', 'b'
            git url: 'u', branch: 'b'
            dir 'x' {
                sh 'it''s'
            }
            echo message: 'multi
  line' {
                echo 'in a keyword block'
            }
        }
    }
    parallel {
        stage {
            name = 'p'
            steps {
                sh 'p'
            }
        }
    }
    fanout {
    }
}
"""


def test_canonical_style() -> None:
    assert render(parse(MESSY)) == CANONICAL
    assert render(parse(CANONICAL)) == CANONICAL


def test_empty_pipeline() -> None:
    assert render(parse("pipeline {}")) == "pipeline {\n}\n"


def test_original_model_renders() -> None:
    pipeline = load(ORIGINAL_JSON)
    text = render(pipeline)
    assert text == (
        "pipeline {\n    stage {\n        name = 'Build'\n        steps {\n"
        "            sh 'ls -lah | tail -n 5'\n        }\n    }\n}\n"
    )
    assert normalise(parse(text)) == normalise(pipeline)


def test_context_with_environment_but_no_properties_is_a_stage() -> None:
    text = "pipeline { stage { environment { A = 'b' } steps { sh 'x' } } }"
    assert render(parse(text)).split("\n")[1] == "    stage {"
    assert render(parse("pipeline { stage { steps { sh 'x' } } }")).split("\n")[1] == "    steps {"


def model(*batches: tuple[str, list[Context]]) -> Pipeline:
    return Pipeline(batches=[Batch(mode=BatchMode(mode), contexts=ctxs) for mode, ctxs in batches])


def context(*steps: tuple[str, Any], **properties: str) -> Context:
    uuid = new_uuid()
    return Context(
        uuid=uuid,
        properties=properties,
        steps=[Step(context=uuid, symbol=s, parameters=p) for s, p in steps],
    )


def block(*steps: tuple[str, Any]) -> list[dict[str, Any]]:
    return [{"uuid": new_uuid(), "context": "x", "symbol": s, "parameters": p} for s, p in steps]


@pytest.mark.parametrize(
    ("pipeline", "fragment"),
    [
        (
            model(("Linear", [context(("sh", ["a"])), context(("sh", ["b"]))])),
            "exactly one context",
        ),
        (model(("Linear", [])), "exactly one context, not 0"),
        (model(("Linear", [context()])), "needs at least one step"),
        (model(("Linear", [context(("sh", [1]))])), "parameters[0]: only strings"),
        (model(("Linear", [context(("sh", {"a": True}))])), "parameters.a: only strings"),
        (model(("Linear", [context(("sh", [None]))])), "only strings"),
        (model(("Linear", [context(("sh", []))])), "at least one argument"),
        (model(("Linear", [context(("sh", {}))])), "at least one argument"),
        (model(("Linear", [context(("dir", [block(("sh", ["x"]))]))])), "besides its block"),
        (model(("Linear", [context(("dir", {"block": block(("sh", ["x"]))}))])), "besides its"),
        (model(("Linear", [context(("sh", [block(("sh", ["x"])), "a"]))])), "only strings"),
        (model(("Linear", [context(("sh", {"other": block(("sh", ["x"]))}))])), "only strings"),
        (model(("Linear", [context(("sh", ["a\r\nb"]))])), "carriage return"),
        (model(("Linear", [context(("sh-x", ["a"]))])), "not a valid step name"),
        (model(("Linear", [context(("sh", {"a-b": "x"}))])), "not a valid keyword name"),
        (model(("Linear", [context(("sh", ["a"]), **{"my prop": "x"})])), "property name"),
        (model(("Parallel", [context(("sh", ["a"]), name="a")])), None),
        (
            model(("Linear", [context(("dir", ["d", block(("sh", {"x": 1}))]))])),
            "[1][0].parameters.x",
        ),
        (model(("Linear", [context(("dir", ["d", block(("1x", ["a"]))]))])), "step name"),
    ],
)
def test_models_the_language_cannot_say(pipeline: Pipeline, fragment: str | None) -> None:
    if fragment is None:
        assert render(pipeline)
        return
    with pytest.raises(ValueError) as info:
        render(pipeline)
    assert fragment in str(info.value)


def test_error_names_the_path() -> None:
    pipeline = model(("Linear", [context(("sh", ["ok"]), ("sh", ["a", 2]))]))
    with pytest.raises(ValueError) as info:
        render(pipeline)
    assert str(info.value).startswith("batches[0].contexts[0].steps[1].parameters[1]:")


def test_bad_environment_name_and_unknown_mode() -> None:
    uuid = new_uuid()
    ctx = Context(
        uuid=uuid,
        environment={"A-B": "x"},
        steps=[Step(context=uuid, symbol="sh", parameters=["x"])],
    )
    with pytest.raises(ValueError, match="variable name"):
        render(model(("Linear", [ctx])))
    weird = Pipeline.model_construct(
        uuid=new_uuid(), batches=[Batch.model_construct(mode="Weird", contexts=[])]
    )
    with pytest.raises(ValueError, match="unknown batch mode"):
        render(weird)


def test_blocks_deeper_than_the_parser_takes_are_refused() -> None:
    inner: list[Any] = ["x"]
    for _ in range(MAX_BLOCK_DEPTH + 1):
        inner = ["d", block(("dir", inner))]
    with pytest.raises(ValueError, match="nested more than"):
        render(model(("Linear", [context(("dir", inner))])))


def test_a_block_key_holding_a_string_is_a_plain_argument() -> None:
    text = render(model(("Linear", [context(("sh", {"block": "just a string"}))])))
    assert "sh block: 'just a string'" in text
    assert parse(text).batches[0].contexts[0].steps[0].parameters == {"block": "just a string"}

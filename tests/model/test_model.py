"""The pipeline model: the original Otto's JSON loads unchanged; invariants name the bad field."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from otto.model import ModelError, Pipeline, load, loads

ORIGINAL = (
    '{"uuid":"2265b5d0-1f70-46de-bf50-f1050e9fac9a","batches":[{"mode":"Linear","contexts":'
    '[{"uuid":"3ce1f6fb-79ca-4564-a47e-98265f53ef7f","properties":{"name":"Build"},'
    '"environment":null,"steps":[{"uuid":"5599cffb-f23a-4e0f-a0b9-f74654641b2b","context":'
    '"3ce1f6fb-79ca-4564-a47e-98265f53ef7f","symbol":"sh","parameters":'
    '["ls -lah | tail -n 5"]}]}]}]}'
)


def test_the_original_parsers_json_loads_unchanged() -> None:
    pipeline = loads(ORIGINAL)
    assert pipeline.uuid == "2265b5d0-1f70-46de-bf50-f1050e9fac9a"
    context = pipeline.batches[0].contexts[0]
    assert context.name == "Build"
    assert context.environment == {}
    step = context.steps[0]
    assert (step.symbol, step.parameters, step.context) == (
        "sh",
        ["ls -lah | tail -n 5"],
        context.uuid,
    )
    dumped = json.loads(pipeline.to_json())
    original = json.loads(ORIGINAL)
    original["batches"][0]["contexts"][0]["environment"] = {}
    assert dumped == original  # the same field names, in the same shape


# What the original parser emits for `pipeline { steps { sh 'make all' } stage { name =
# 'Build' steps { git url: 'u' } } }`: the orphan step's `context` is the pipeline's uuid.
ORIGINAL_ORPHAN = """{"uuid":"6a1c0d55-2a5b-4c1e-9f59-8d2f3b0c7a10","batches":[
 {"mode":"Linear","contexts":[{"uuid":"0c2d7f7e-4f7e-4d61-a8a9-1f1f6c0e2b11","properties":{},
  "environment":null,"steps":[{"symbol":"sh","uuid":"b6c2c9a4-77a1-4a2e-8c55-3c1b0f9e5d12",
  "context":"6a1c0d55-2a5b-4c1e-9f59-8d2f3b0c7a10","parameters":["make all"]}]}]},
 {"mode":"Linear","contexts":[{"uuid":"5e0b8f3a-1c7d-4e29-b0c4-7d9a2e6f4c13",
  "properties":{"name":"Build"},"environment":null,"steps":[{"symbol":"git",
  "uuid":"f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a14","context":"5e0b8f3a-1c7d-4e29-b0c4-7d9a2e6f4c13",
  "parameters":{"url":"u"}}]}]}]}"""


def test_an_original_orphan_step_gets_its_own_context() -> None:
    pipeline = loads(ORIGINAL_ORPHAN)
    orphan, stage = (batch.contexts[0] for batch in pipeline.batches)
    assert orphan.steps[0].context == orphan.uuid == "0c2d7f7e-4f7e-4d61-a8a9-1f1f6c0e2b11"
    assert stage.steps[0].context == stage.uuid
    assert loads(pipeline.to_json()) == pipeline  # stored normalised, loads again as it is


def test_only_an_orphan_step_may_name_the_pipeline() -> None:
    data = json.loads(ORIGINAL_ORPHAN)
    stage = data["batches"][1]["contexts"][0]
    stage["steps"][0]["context"] = data["uuid"]
    with pytest.raises(ModelError) as caught:
        load(data)
    assert caught.value.path == "batches[1].contexts[0].steps[0].context"


def test_json_and_yaml_round_trip() -> None:
    pipeline = loads(ORIGINAL)
    assert loads(pipeline.to_json()) == pipeline
    assert loads(pipeline.to_yaml()) == pipeline
    assert list(yaml.safe_load(pipeline.to_yaml())) == ["uuid", "batches"]


def test_keyword_parameters_and_blocks_load() -> None:
    data = json.loads(ORIGINAL)
    ctx = data["batches"][0]["contexts"][0]
    inner = {
        "uuid": "9a9cc3bf-2d5f-4e4b-9d43-000000000001",
        "context": ctx["uuid"],
        "symbol": "sh",
        "parameters": ["make"],
    }
    ctx["steps"].append(
        {
            "uuid": "9a9cc3bf-2d5f-4e4b-9d43-000000000002",
            "context": ctx["uuid"],
            "symbol": "dir",
            "parameters": {"directory": "d", "block": [inner]},
        }
    )
    pipeline = load(data)
    assert [s.symbol for s in pipeline.batches[0].contexts[0].steps[1].block_steps()] == ["sh"]


def _broken(change: object) -> str:
    data = json.loads(ORIGINAL)
    change(data)  # type: ignore[operator]
    with pytest.raises(ModelError) as caught:
        load(data)
    return caught.value.path


def test_invariant_violations_name_the_field() -> None:
    def foreign_context(d: dict) -> None:
        d["batches"][0]["contexts"][0]["steps"][0]["context"] = d["uuid"]

    def duplicate(d: dict) -> None:
        d["batches"][0]["contexts"][0]["steps"][0]["uuid"] = d["batches"][0]["contexts"][0]["uuid"]

    def bad_mode(d: dict) -> None:
        d["batches"][0]["mode"] = "Serial"

    def extra_field(d: dict) -> None:
        d["batches"][0]["contexts"][0]["colour"] = "red"

    def not_uuid(d: dict) -> None:
        d["uuid"] = "nope"

    def nested_foreign(d: dict) -> None:
        step = d["batches"][0]["contexts"][0]["steps"][0]
        step["parameters"] = [
            "x",
            [
                {
                    "uuid": "9a9cc3bf-2d5f-4e4b-9d43-000000000003",
                    "context": d["uuid"],
                    "symbol": "sh",
                    "parameters": [],
                }
            ],
        ]

    assert _broken(foreign_context) == "batches[0].contexts[0].steps[0].context"
    assert _broken(duplicate) == "batches[0].contexts[0].steps[0].uuid"
    assert _broken(bad_mode) == "batches[0].mode"
    assert _broken(extra_field) == "batches[0].contexts[0].colour"
    assert _broken(not_uuid) == "uuid"
    assert _broken(nested_foreign) == "batches[0].contexts[0].steps[0].parameters[1][0].context"


def test_garbage_is_a_model_error() -> None:
    with pytest.raises(ModelError):
        loads("{not json: [")
    with pytest.raises(ModelError):
        load(["a", "list"])
    assert isinstance(Pipeline().to_dict()["batches"], list)
    assert copy.deepcopy(loads(ORIGINAL)) == loads(ORIGINAL)

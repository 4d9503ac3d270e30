"""The PSM's public HTTP contract, against a real `otto server` process."""

from __future__ import annotations

import json
import time
import uuid as uuidlib

import httpx
from executorkit import award_open, drive_context, drive_pipeline

from serverkit import Server

THREE_STAGES = """
pipeline {
    stage { name = 'Build'  steps { sh 'make' } }
    parallel {
        stage { name = 'Unit' steps { sh 'make test' } }
        stage { name = 'Lint' steps { sh 'make lint' } }
    }
    stage { name = 'Ship' steps { sh 'make ship' } }
}
"""


def create(client: httpx.Client, text: str = THREE_STAGES, **extra: object) -> httpx.Response:
    return client.post("/v1/pipelines", json={"ottofile": text, **extra})


def test_health_and_openapi(server: Server) -> None:
    with server.client() as c:
        assert c.get("/health").json() == {"status": "ok"}
        doc = c.get("/openapi.json").json()
        assert doc["openapi"].startswith("3.")
        assert "post" in doc["paths"]["/v1/pipelines"]
        assert "CreatePipeline" in doc["components"]["schemas"]


def test_answers_on_a_kept_alive_connection_leave_at_once(server: Server) -> None:
    """TCP_NODELAY: with Nagle's algorithm on, an answer written in two parts (head, then
    body) waits for the client's delayed ACK, at least 40 ms for every request on a
    kept-alive connection after the first. (The fastest of 20, not a mean: a busy machine
    slows some requests, never all.)"""
    took = []
    with server.client() as c:
        assert c.get("/health").status_code == 200  # the connection is open
        for _ in range(20):
            start = time.monotonic()
            assert c.get("/health").status_code == 200
            took.append(time.monotonic() - start)
    assert min(took) < 0.03, took


def test_create_show_and_run_to_success(server: Server) -> None:
    with server.client() as c:
        created = create(c)
        assert created.status_code == 201
        uuid = created.json()["uuid"]
        run = c.get(f"/v1/pipelines/{uuid}").json()
        assert run["state"] == "Running"
        assert [b["mode"] for b in run["batches"]] == ["Linear", "Parallel", "Linear"]
        assert run["batches"][0]["state"] == "AuctionStarted"
        assert run["batches"][1]["contexts"][1]["name"] == "Lint"
        assert run["model"]["uuid"] == uuid

        final = drive_pipeline(c, uuid, orchestrator="orch-1")
        assert (final["state"], final["status"]) == ("Complete", "Success")
        ctx = final["batches"][1]["contexts"][0]
        assert (ctx["state"], ctx["orchestrator"], ctx["attempt"]) == ("Success", "orch-1", 1)
        assert ctx["steps"][0]["exit_code"] == 0

        transitions = c.get(f"/v1/pipelines/{uuid}/transitions").json()["transitions"]
        seqs = [t["seq"] for t in transitions]
        assert seqs == sorted(seqs)
        assert transitions[0]["from"] is None and transitions[0]["to"] == "Pending"
        assert transitions[-1]["entity"] == "pipeline" and transitions[-1]["status"] == "Success"
        award = next(t for t in transitions if t["to"] == "AuctionCompleted")
        assert set(award["data"]["awards"].values()) == {"orch-1"}
        assert set(transitions[0]) >= {
            "seq",
            "pipeline",
            "entity",
            "id",
            "from",
            "to",
            "status",
            "reason",
            "actor",
            "at",
            "data",
        }


def test_failing_context_fails_the_run(server: Server) -> None:
    with server.client() as c:
        uuid = create(c).json()["uuid"]
        award_open(c, "o", uuid)
        build = c.get(f"/v1/pipelines/{uuid}").json()["batches"][0]["contexts"][0]
        drive_context(c, build, "o", exit_code=1)
        run = c.get(f"/v1/pipelines/{uuid}").json()
        assert (run["state"], run["status"]) == ("Complete", "Failed")
        assert [b["state"] for b in run["batches"]] == ["Complete", "NotRun", "NotRun"]
        assert run["batches"][0]["contexts"][0]["steps"][0]["state"] == "Failed"


def test_dedup_by_repo_and_sha(server: Server) -> None:
    with server.client() as c:
        first = create(c, repo="r", ref="refs/heads/main", sha="abc")
        again = create(c, repo="r", ref="refs/heads/other", sha="abc")
        assert first.status_code == 201
        assert again.status_code == 200
        assert again.json() == {"uuid": first.json()["uuid"], "duplicate": True}
        forced = create(c, repo="r", sha="abc", force=True)
        assert forced.status_code == 201 and forced.json()["uuid"] != first.json()["uuid"]


def test_list_is_newest_first_filtered_and_paged(server: Server) -> None:
    with server.client() as c:
        uuids = [
            create(c, repo="a" if i % 2 else "b", ref=f"r{i}").json()["uuid"] for i in range(5)
        ]
        listed = c.get("/v1/pipelines").json()["pipelines"]
        assert [p["uuid"] for p in listed] == uuids[::-1]
        only_a = c.get("/v1/pipelines", params={"repo": "a"}).json()["pipelines"]
        assert [p["uuid"] for p in only_a] == [uuids[3], uuids[1]]
        page = c.get("/v1/pipelines", params={"limit": 2}).json()
        rest = c.get("/v1/pipelines", params={"limit": 10, "cursor": page["next_cursor"]}).json()
        assert [p["uuid"] for p in page["pipelines"] + rest["pipelines"]] == uuids[::-1]
        assert rest["next_cursor"] is None
        assert c.get("/v1/pipelines", params={"state": "Complete"}).json()["pipelines"] == []


def test_bad_input_gets_a_4xx_naming_the_problem(server: Server) -> None:
    with server.client() as c:
        bad = create(c, "pipeline {\n  stage {\n    steps { }\n  }\n}\n")
        assert bad.status_code == 400
        error = bad.json()["error"]
        assert (error["code"], error["line"], error["column"]) == ("invalid_ottofile", 3, 13)

        model = c.post("/v1/pipelines", json={"model": {"batches": [{"mode": "Serial"}]}})
        assert model.status_code == 422
        assert model.json()["error"]["field"] == "model.batches[0].mode"

        json_type = {"Content-Type": "application/json"}
        assert c.post("/v1/pipelines", content=b"{nope", headers=json_type).status_code == 400
        unknown = c.post("/v1/pipelines", json={"ottofile": THREE_STAGES, "colour": "red"})
        assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "colour"
        both = c.post("/v1/pipelines", json={})
        assert both.status_code == 422
        assert c.get("/v1/pipelines/no-such-uuid").status_code == 404
        assert c.get("/v1/pipelines", params={"limit": "many"}).status_code == 400
        assert c.get("/v1/pipelines", params={"cursor": "garbage"}).status_code == 400
        assert c.get("/v1/pipelines").json()["pipelines"] == []  # nothing half-written


WRONG_STEP = (
    "pipeline {\n"
    "  stage { name = 'fine' steps { sh 'true' } }\n"
    "  stage { name = 'bad' steps { sh scritp: 'make' } }\n"
    "}\n"
)


def test_a_step_called_wrongly_is_an_error_run_that_never_starts(server: Server) -> None:
    with server.client() as c:
        created = create(c, WRONG_STEP, repo="r", sha="bad1")
        assert created.status_code == 201
        uuid = created.json()["uuid"]
        run = c.get(f"/v1/pipelines/{uuid}").json()
        assert (run["state"], run["status"], run["batches"]) == ("Complete", "Error", [])
        assert run["rejected"]["reason"] == "config_error"
        line = WRONG_STEP.splitlines()[2]
        column = line.index("sh scritp") + 1
        message = run["rejected"]["message"].splitlines()
        assert message[0].startswith(f"ottofile:3:{column}: `sh` has no parameter `scritp`")
        assert message[1:] == [line, " " * (column - 1) + "^"]
        transitions = c.get(f"/v1/pipelines/{uuid}/transitions").json()["transitions"]
        assert {t["entity"] for t in transitions} == {"pipeline"}
        assert c.get("/v1/contexts/open").json() == {"contexts": []}  # nothing to auction
        listed = c.get("/v1/pipelines").json()["pipelines"]
        assert next(p for p in listed if p["uuid"] == uuid)["rejected"] == run["rejected"]
        retry = c.post(f"/v1/pipelines/{uuid}/retry")
        assert retry.status_code == 409
        assert "never ran (config_error)" in retry.json()["error"]["message"]


def test_a_model_calling_a_step_wrongly_is_an_error_run_naming_the_field(server: Server) -> None:
    ids = [str(uuidlib.uuid4()) for _ in range(4)]
    inner = {"uuid": ids[3], "context": ids[1], "symbol": "nope", "parameters": ["x"]}
    step = {"uuid": ids[2], "context": ids[1], "symbol": "dir", "parameters": ["sub", [inner]]}
    model = {"uuid": ids[0], "batches": [{"contexts": [{"uuid": ids[1], "steps": [step]}]}]}
    with server.client() as c:
        created = c.post("/v1/pipelines", json={"model": model})
        assert created.status_code == 201 and created.json()["uuid"] == ids[0]
        run = c.get(f"/v1/pipelines/{ids[0]}").json()
        assert (run["status"], run["batches"]) == ("Error", [])
        assert run["rejected"]["message"].startswith(
            "model.batches[0].contexts[0].steps[0].parameters[1][0]: unknown step `nope`"
        )
        assert c.get("/v1/contexts/open").json() == {"contexts": []}


def test_parse_endpoint(server: Server) -> None:
    with server.client() as c:
        ok = c.post("/v1/parse", json={"ottofile": "pipeline { steps { sh 'ls' } }"})
        assert ok.status_code == 200
        assert ok.json()["batches"][0]["contexts"][0]["steps"][0]["parameters"] == ["ls"]
        bad = c.post("/v1/parse", json={"ottofile": "pipeline {"})
        assert bad.status_code == 400
        assert {"line", "column", "message"} <= set(bad.json()["error"])


def test_abort_then_abort_again(server: Server) -> None:
    with server.client() as c:
        uuid = create(c).json()["uuid"]
        award_open(c, "o", uuid)
        build = c.get(f"/v1/pipelines/{uuid}").json()["batches"][0]["contexts"][0]
        lease = c.post(f"/v1/contexts/{build['uuid']}/claim", json={"orchestrator": "o"}).json()
        assert c.post(f"/v1/pipelines/{uuid}/abort").status_code == 202
        ref = {"orchestrator": "o", "epoch": lease["epoch"]}
        renewed = c.post(f"/v1/contexts/{build['uuid']}/lease", json=ref).json()
        assert renewed["aborting"] is True
        c.post(f"/v1/contexts/{build['uuid']}/finished", json={**ref, "status": "Aborted"})
        run = c.get(f"/v1/pipelines/{uuid}").json()
        assert (run["state"], run["status"]) == ("Complete", "Aborted")
        again = c.post(f"/v1/pipelines/{uuid}/abort")
        assert again.status_code == 409 and again.json()["error"]["current"] == "Complete"
        reasons = {
            t["reason"] for t in c.get(f"/v1/pipelines/{uuid}/transitions").json()["transitions"]
        }
        assert "user_abort" in reasons


def test_stale_and_terminal_reports_are_refused_and_change_nothing(server: Server) -> None:
    with server.client() as c:
        uuid = create(c, "pipeline { steps { sh 'a' } }").json()["uuid"]
        award_open(c, "o", uuid)
        ctx = c.get(f"/v1/pipelines/{uuid}").json()["batches"][0]["contexts"][0]
        epoch = c.post(f"/v1/contexts/{ctx['uuid']}/claim", json={"orchestrator": "o"}).json()[
            "epoch"
        ]
        before = c.get(f"/v1/pipelines/{uuid}/transitions").json()
        stale = c.post(
            f"/v1/contexts/{ctx['uuid']}/finished",
            json={"orchestrator": "o", "epoch": epoch + 1, "status": "Success"},
        )
        assert stale.status_code == 409 and stale.json()["error"]["code"] == "stale_lease"
        assert c.get(f"/v1/pipelines/{uuid}/transitions").json() == before
        ref = {"orchestrator": "o", "epoch": epoch}
        assert c.post(
            f"/v1/contexts/{ctx['uuid']}/finished", json={**ref, "status": "Success"}
        ).is_success
        late = c.post(f"/v1/contexts/{ctx['uuid']}/finished", json={**ref, "status": "Failed"})
        assert late.status_code == 409 and late.json()["error"]["current"] == "Success"
        assert (
            c.post(f"/v1/contexts/{ctx['uuid']}/claim", json={"orchestrator": "o"}).status_code
            == 409
        )
        bad_status = c.post(f"/v1/contexts/{ctx['uuid']}/finished", json={**ref, "status": "Great"})
        assert bad_status.status_code == 422 and bad_status.json()["error"]["field"] == "status"


def test_transition_table_is_served(server: Server) -> None:
    with server.client() as c:
        table = c.get("/v1/transitions").json()["transitions"]
        assert table["batch"]["AuctionStarted"] == ["AuctionCompleted", "Complete"]
        assert table["context"]["Success"] == []
        assert "Aborting" in table["context"]["Running"]
        assert "Skipped" in table["context"]["Pending"] and table["context"]["Skipped"] == []


def test_events_json_and_sse_resume(server: Server) -> None:
    with server.client() as c:
        uuid = create(c).json()["uuid"]
        events = c.get("/v1/events", params={"after": 0}).json()["events"]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert all(e["pipeline"] == uuid for e in events)
        middle = events[1]["seq"]

        def read_sse(headers: dict[str, str], count: int) -> list[dict[str, object]]:
            got: list[dict[str, object]] = []
            with c.stream(
                "GET", "/v1/events", headers={"Accept": "text/event-stream", **headers}
            ) as r:
                assert r.headers["content-type"].startswith("text/event-stream")
                ident = None
                for line in r.iter_lines():
                    if line.startswith("id: "):
                        ident = int(line[4:])
                    elif line.startswith("data: "):
                        event = json.loads(line[6:])
                        assert event["seq"] == ident
                        got.append(event)
                        if len(got) == count:
                            return got
            return got

        resumed = read_sse({"Last-Event-ID": str(middle)}, len(events) - middle)
        assert [e["seq"] for e in resumed] == [e["seq"] for e in events[middle:]]
        # A transition committed while a subscriber is connected arrives live.
        award_open(c, "o", uuid)
        live = read_sse({"Last-Event-ID": str(events[-1]["seq"])}, 2)
        assert [e["to"] for e in live] == ["AuctionCompleted", "Provisioning"]

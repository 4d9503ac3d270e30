"""`POST /v1/contexts/{uuid}/finished` takes the variables the context's steps captured:
a bad name is refused with a 4xx naming the field, a good one reaches the next claim."""

from __future__ import annotations

from executorkit import award_open

from serverkit import Server


def test_finished_refuses_a_bad_variable_and_passes_a_good_one_on(server: Server) -> None:
    with server.client() as c:
        ottofile = "pipeline { stage { steps { sh 'true' } } stage { steps { sh 'true' } } }"
        uuid = c.post("/v1/pipelines", json={"ottofile": ottofile}).json()["uuid"]
        award_open(c, "o", uuid)
        first = c.get(f"/v1/pipelines/{uuid}").json()["batches"][0]["contexts"][0]
        claim = c.post(f"/v1/contexts/{first['uuid']}/claim", json={"orchestrator": "o"})
        ref = {"orchestrator": "o", "epoch": claim.json()["epoch"]}
        finished = f"/v1/contexts/{first['uuid']}/finished"

        bad = c.post(finished, json={**ref, "status": "Success", "variables": {"9lives": "1"}})
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"]["field"].startswith("variables")
        assert "`9lives` is not a variable name" in bad.json()["error"]["message"]

        good = c.post(finished, json={**ref, "status": "Success", "variables": {"OK": "yes"}})
        assert good.status_code == 200, good.text
        award_open(c, "o", uuid)
        second = c.get(f"/v1/pipelines/{uuid}").json()["batches"][1]["contexts"][0]
        order = c.post(f"/v1/contexts/{second['uuid']}/claim", json={"orchestrator": "o"})
        assert order.json()["variables"]["VAR_OK"] == "yes"

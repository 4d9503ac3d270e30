"""`POST /v1/parse` against a real `otto server`: a JSON body or the Ottofile as text/plain,
as the original Otto's parser service was called; any other body is a clear 415."""

from __future__ import annotations

from serverkit import Server

OTTOFILE = "pipeline {\n    stage { name = 'Build' steps { sh 'make' } }\n}\n"


def test_a_text_body_is_parsed_like_a_json_one(server: Server) -> None:
    with server.client() as c:
        as_json = c.post("/v1/parse", json={"ottofile": OTTOFILE})
        as_text = c.post(
            "/v1/parse",
            content=OTTOFILE.encode(),
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
    assert as_json.status_code == as_text.status_code == 200
    for model in (as_json.json(), as_text.json()):
        context = model["batches"][0]["contexts"][0]
        assert context["properties"] == {"name": "Build"}
        assert context["steps"][0]["parameters"] == ["make"]


def test_a_bad_text_body_names_line_and_column(server: Server) -> None:
    with server.client() as c:
        bad = c.post(
            "/v1/parse",
            content=b"pipeline {\n    stage { nmae = 'x' steps { sh 'a' } }\n}\n",
            headers={"Content-Type": "text/plain"},
        )
        latin = c.post(
            "/v1/parse",
            content="pipeline { steps { sh 'é' } }".encode("latin-1"),
            headers={"Content-Type": "text/plain"},
        )
    assert bad.status_code == 400
    error = bad.json()["error"]
    assert (error["code"], error["line"], error["column"]) == ("invalid_ottofile", 2, 13)
    assert error["message"].startswith("unknown stage property 'nmae' (did you mean 'name'?)")
    assert latin.status_code == 400
    assert "invalid UTF-8 byte 0xe9" in latin.json()["error"]["message"]


def test_other_bodies_are_refused_with_415(server: Server) -> None:
    with server.client() as c:
        form = c.post("/v1/parse", data={"ottofile": OTTOFILE})
        latin = c.post(
            "/v1/parse",
            content=OTTOFILE.encode(),
            headers={"Content-Type": "text/plain; charset=iso-8859-1"},
        )
        elsewhere = c.post(
            "/v1/pipelines", content=OTTOFILE.encode(), headers={"Content-Type": "text/plain"}
        )
        cross_site = c.post(
            "/v1/parse",
            content=OTTOFILE.encode(),
            headers={"Content-Type": "text/plain", "Origin": "http://elsewhere.example"},
        )
    assert form.status_code == 415
    assert form.json()["error"]["message"] == (
        "send the request body as Content-Type: application/json or text/plain"
    )
    assert latin.status_code == 415
    assert "UTF-8, not iso-8859-1" in latin.json()["error"]["message"]
    assert elsewhere.status_code == 415  # only parsing, which changes nothing, takes text
    assert cross_site.status_code == 403  # and never for another site's page


def test_the_openapi_document_says_so(server: Server) -> None:
    with server.client() as c:
        operation = c.get("/openapi.json").json()["paths"]["/v1/parse"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "text/plain"}
    assert content["text/plain"]["schema"]["type"] == "string"
    assert "text/plain" in operation["responses"]["415"]["description"]

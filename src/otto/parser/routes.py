"""The parser's HTTP API: `POST /v1/parse`, an Ottofile in, its pipeline model out.

Parsing changes nothing, so it is served apart from the PSM (which takes models): a
JSON body `{"ottofile"}`, or the Ottofile itself as `text/plain` (UTF-8), as the
original Otto's parser service was called. A bad file is a 400 naming its line and
column.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otto.endpoints import ApiError, Endpoint, parse_body
from otto.parser.errors import ParseError
from otto.parser.parsing import parse


class ParseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ottofile: str


def endpoints() -> list[Endpoint]:
    return [
        Endpoint(
            "POST",
            "/v1/parse",
            parse_ottofile,
            "Parse an Ottofile into a pipeline model: a JSON body {ottofile}, or the "
            "Ottofile itself as text/plain",
            ParseRequest,
            {
                200: "the model",
                400: "a parse error with line and column, or bad JSON",
                415: "a body that is neither application/json nor text/plain, or text "
                "in a charset other than UTF-8",
            },
            text_body="the Ottofile, UTF-8",
        ),
    ]


def parse_ottofile(request: Request) -> Response:
    text: str | bytes
    if _is_plain_text(request):
        text = request.state.body
    else:
        text = parse_body(ParseRequest, request.state.body).ottofile
    try:
        return JSONResponse(parse(text, filename="ottofile").to_dict())
    except ParseError as exc:
        raise invalid_ottofile(exc) from None


def invalid_ottofile(exc: ParseError) -> ApiError:
    """A parse error as a 400 that names the line and column."""
    return ApiError(
        400, "invalid_ottofile", exc.message, line=exc.line, column=exc.column, field="ottofile"
    )


def _is_plain_text(request: Request) -> bool:
    """Whether the body is `text/plain` (UTF-8: a 415 names any other charset)."""
    media, _, parameters = request.headers.get("content-type", "").partition(";")
    if media.strip().lower() != "text/plain":
        return False
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8", "us-ascii"):
            raise ApiError(
                415,
                "unsupported_media_type",
                f"a text/plain Ottofile is UTF-8, not {charset}",
                field="content-type",
            )
    return True

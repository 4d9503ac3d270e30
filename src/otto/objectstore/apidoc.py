"""The object store's routes in the server's OpenAPI document.

They are served by `otto.objectstore.routes` (Starlette routes of their own, raw bytes
rather than JSON bodies), so they are described here, answers included, for the
document to list every endpoint and every 4xx it may give.
"""

from __future__ import annotations

from typing import Any

KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
COMMON = {
    "400": "an invalid key or argument",
    "401": "missing or wrong API token (when the server has one)",
    "421": "the Host header names no host this server answers to",
}
MUTATING = {
    "403": "a request from another origin",
    "413": "a body over the object store's size limit",
    "408": "a body that stalled",
}


def _op(summary: str, answers: dict[str, str], mutating: bool = False) -> dict[str, Any]:
    responses = {**answers, **COMMON, **(MUTATING if mutating else {})}
    return {
        "summary": summary,
        "parameters": [KEY],
        "responses": {code: {"description": text} for code, text in sorted(responses.items())},
    }


def object_paths(document: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `paths` entries of the object store's routes."""
    listing = {
        "summary": "Objects under a prefix (?prefix=)",
        "responses": {
            code: {"description": text}
            for code, text in sorted({"200": "a list of objects", **COMMON}.items())
        },
    }
    found = {"404": "no such object"}
    return {
        "/v1/objects": {"get": listing},
        "/v1/objects/{key}": {
            "get": _op(
                "An object's content (Range honoured)",
                {"200": "OK", "206": "a range", **found, "416": "a range past the end"},
            ),
            "head": _op("An object's headers", {"200": "OK", **found}),
            "put": _op(
                "Store an object, or append (X-Otto-Append-Offset)",
                {
                    "200": "stored",
                    "409": "a key conflict, or a wrong append offset",
                    "507": "the store's disk is full (disk_full): nothing of it was kept",
                },
                mutating=True,
            ),
            "delete": _op("Delete an object", {"204": "deleted", **found}, mutating=True),
            "post": _op(
                "Compact an appended object (?action=compact)",
                {"200": "OK", **found, "415": "a body that is not application/json"},
                mutating=True,
            ),
        },
    }

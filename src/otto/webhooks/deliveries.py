"""`GET /v1/deliveries` (the outbound delivery log) and `POST /v1/deliveries/{id}/replay`."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otto.endpoints import ApiError, Endpoint, query_int
from otto.webhooks.outbox import KINDS, STATES, Outbox, as_dict

MAX_LIMIT = 500


class DeliveriesApi:
    def __init__(self, outbox: Outbox, replayed: Callable[[], None]) -> None:
        self.outbox, self.replayed = outbox, replayed

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(
                "GET",
                "/v1/deliveries",
                self.list,
                "Outbound deliveries (webhooks, commit statuses), newest first;"
                " filters: project, pipeline, kind, state, event; limit, cursor",
                responses={200: "a page of deliveries", 400: "a bad filter (names it)"},
            ),
            Endpoint(
                "GET",
                "/v1/deliveries/{id}",
                self.get,
                "One outbound delivery",
                responses={200: "the delivery", 404: "no such delivery"},
            ),
            Endpoint(
                "POST",
                "/v1/deliveries/{id}/replay",
                self.replay,
                "Send a delivery again (as a new delivery, at once)",
                responses={202: "the new delivery, queued", 404: "no such delivery"},
            ),
        ]

    def list(self, request: Request) -> Response:
        q = request.query_params
        unknown = set(q) - {"project", "pipeline", "kind", "state", "event", "limit", "cursor"}
        if unknown:
            name = sorted(unknown)[0]
            raise ApiError(400, "invalid_query", f"{name}: not a filter", field=name)
        for name, allowed in (("state", STATES), ("kind", KINDS)):
            if q.get(name) is not None and q[name] not in allowed:
                raise ApiError(
                    400, "invalid_query", f"{name}: one of {', '.join(allowed)}", field=name
                )
        limit = query_int(request, "limit", 50, minimum=1)
        if limit > MAX_LIMIT:
            raise ApiError(400, "invalid_query", f"limit: at most {MAX_LIMIT}", field="limit")
        try:
            found, following = self.outbox.list(
                limit,
                q.get("cursor"),
                **{k: q.get(k) for k in ("project", "pipeline", "kind", "state", "event")},
            )
        except ValueError as exc:
            raise ApiError(400, "invalid_query", str(exc), field="cursor") from None
        return JSONResponse({"deliveries": [as_dict(d) for d in found], "next_cursor": following})

    def get(self, request: Request) -> Response:
        found = self.outbox.get(request.path_params["id"])
        if found is None:
            raise _unknown(request.path_params["id"])
        return JSONResponse(as_dict(found))

    def replay(self, request: Request) -> Response:
        copy = self.outbox.replay(request.path_params["id"])
        if copy is None:
            raise _unknown(request.path_params["id"])
        self.replayed()
        return JSONResponse(as_dict(copy), status_code=202)


def _unknown(ident: str) -> ApiError:
    return ApiError(404, "not_found", f"no delivery {ident!r}", field="id")

"""The executors' HTTP endpoints: what an orchestrator on another machine calls.

- `POST /v1/contexts/{uuid}/claim`: start an attempt of an awarded context; the answer is
  the whole work order: the lease (its fields at the top level), the context's model
  under `model` and the commit its workspace starts from under `checkout` (or null);
- `POST /v1/contexts/{uuid}/lease`: renew the lease (the answer says whether to abort);
- `POST /v1/contexts/{uuid}/steps/{step}/started`, `…/finished`: a step's reports;
- `POST /v1/contexts/{uuid}/finished`: the context's outcome (`variables`: what its
  steps captured, which later contexts' steps see as `VAR_<name>`);
- `POST /v1/contexts/{uuid}/release`, `/hand-back`: give an awarded context back before
  starting it, or a running one when the executor shuts down.

Every report names its lease by (orchestrator, epoch); a stale one is refused (409).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otto.endpoints import ApiError, Endpoint, parse_body
from otto.psm.errors import Conflict, IllegalTransition, NotFound, StaleLease
from otto.psm.machine import PipelineStateMachine
from otto.psm.records import Lease, WorkOrder
from otto.status import Status
from otto.steps.variables import check_variable

EXECUTOR_ANSWERS = {
    200: "OK",
    404: "unknown context, step or lease",
    409: "a stale lease, or a move the state does not allow",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Release(_Body):
    orchestrator: str = Field(min_length=1)


class Claim(Release):
    isolation: str | None = Field(None, max_length=100)  # bubblewrap, none, podman, …


class LeaseRef(_Body):
    orchestrator: str = Field(min_length=1)
    epoch: int = Field(ge=1)


class StepFinished(LeaseRef):
    exit_code: int | None = None
    status: Status | None = None
    reason: str | None = None


class ContextFinished(LeaseRef):
    status: Status
    reason: str | None = None
    variables: dict[str, str] = Field(default_factory=dict)  # what its steps captured

    @field_validator("variables")
    @classmethod
    def _capturable(cls, variables: dict[str, str]) -> dict[str, str]:
        for name, value in variables.items():
            check_variable(name, value)
        return variables


class HandBack(LeaseRef):
    pass


_CONFLICT_CODES = {StaleLease: "stale_lease", IllegalTransition: "illegal_transition"}


def refusal(exc: NotFound | Conflict) -> ApiError:
    """The HTTP answer to a PSM refusal: 404, or 409 naming the current state."""
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    code = _CONFLICT_CODES.get(type(exc), "conflict")
    return ApiError(409, code, str(exc), current=exc.current)


class ExecutorApi:
    """`released` is told when an awarded context was given back (auction it again)."""

    def __init__(self, psm: PipelineStateMachine, released: Callable[[], None]) -> None:
        self.psm = psm
        self.released = released

    def endpoints(self) -> list[Endpoint]:
        context = "/v1/contexts/{uuid}"
        return [
            Endpoint(
                "POST",
                f"{context}/claim",
                self.claim,
                "Start an attempt of an awarded context; returns its work order: the lease "
                "(with the stage's deadline, Unix time, by which its steps must be stopped), "
                "the context's model (model), the commit its workspace starts from "
                "(checkout, null: none), the run's variables for its steps (variables: "
                "OTTO_EVENT, OTTO_BRANCH, …) and whether it is untrusted (untrusted: a "
                "fork's pull request, never unsandboxed, no passthrough variables)",
                Claim,
                EXECUTOR_ANSWERS,
            ),
            Endpoint(
                "POST",
                f"{context}/lease",
                self.renew,
                "Renew a lease; says whether the context is to be aborted",
                LeaseRef,
                EXECUTOR_ANSWERS,
            ),
            Endpoint(
                "POST",
                f"{context}/steps/{{step}}/started",
                self.step_started,
                "Report a step started",
                LeaseRef,
                EXECUTOR_ANSWERS,
            ),
            Endpoint(
                "POST",
                f"{context}/steps/{{step}}/finished",
                self.step_finished,
                "Report a step's outcome",
                StepFinished,
                EXECUTOR_ANSWERS,
            ),
            Endpoint(
                "POST",
                f"{context}/finished",
                self.context_finished,
                "Report a context's outcome",
                ContextFinished,
                EXECUTOR_ANSWERS,
            ),
            Endpoint(
                "POST",
                f"{context}/release",
                self.release,
                "Give back an awarded context that was not started",
                Release,
            ),
            Endpoint(
                "POST",
                f"{context}/hand-back",
                self.hand_back,
                "Give back a running context unfinished (its executor shuts down)",
                HandBack,
                {
                    200: "OK",
                    404: "unknown context",
                    409: "a stale lease, or a move the state does not allow",
                },
            ),
        ]

    def claim(self, request: Request) -> Response:
        body = parse_body(Claim, request.state.body)
        uuid = request.path_params["uuid"]
        return _answer(lambda: self.psm.claim_work(uuid, body.orchestrator, body.isolation))

    def renew(self, request: Request) -> Response:
        lease = self._lease(request, LeaseRef)
        return _answer(lambda: self.psm.renew(lease))

    def step_started(self, request: Request) -> Response:
        lease = self._lease(request, LeaseRef)
        return _answer(lambda: self.psm.step_started(lease, request.path_params["step"]))

    def step_finished(self, request: Request) -> Response:
        body = parse_body(StepFinished, request.state.body)
        if body.exit_code is None and body.status is None:
            raise ApiError(
                422,
                "invalid_request",
                "exit_code: give an exit code or a status",
                field="exit_code",
            )
        lease = self._lease(request, StepFinished, body)
        step = request.path_params["step"]
        return _answer(
            lambda: {
                "status": self.psm.step_finished(
                    lease, step, body.exit_code, body.status, body.reason
                )
            }
        )

    def context_finished(self, request: Request) -> Response:
        body = parse_body(ContextFinished, request.state.body)
        lease = self._lease(request, ContextFinished, body)
        return _answer(
            lambda: self.psm.context_finished(lease, body.status, body.reason, body.variables)
        )

    def release(self, request: Request) -> Response:
        body = parse_body(Release, request.state.body)
        self.psm.release(request.path_params["uuid"], body.orchestrator)
        self.released()
        return JSONResponse({"ok": True})

    def hand_back(self, request: Request) -> Response:
        lease = self._lease(request, HandBack)
        return _answer(lambda: self.psm.hand_back(lease))

    def _lease(self, request: Request, kind: type[LeaseRef], body: LeaseRef | None = None) -> Lease:
        ref = body or parse_body(kind, request.state.body)
        try:
            return self.psm.lease(request.path_params["uuid"], ref.orchestrator, ref.epoch)
        except NotFound as exc:
            raise refusal(exc) from None


def _answer(action: Callable[[], Any]) -> Response:
    try:
        result = action()
    except (NotFound, Conflict) as exc:
        raise refusal(exc) from None
    if isinstance(result, Lease | WorkOrder):
        return JSONResponse(result.to_dict())
    return JSONResponse(result if isinstance(result, dict) else {"ok": True})

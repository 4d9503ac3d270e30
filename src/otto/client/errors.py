"""What can go wrong talking to an Otto server, each with the exit code the CLI uses.

Exit codes come from sysexits(3), so they never read as a pipeline status (0–4):
64 EX_USAGE a bad option value,
65 EX_DATAERR the server refused the request (unknown uuid, a run already complete…),
69 EX_UNAVAILABLE the server cannot be reached or failed (5xx),
77 EX_NOPERM a missing or wrong API token.
The server's answer is read by `otto.httpclient`, the base of every client of it.
"""

from __future__ import annotations

import httpx

from otto.httpclient import Unauthorized, read_error

EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_NOPERM = 77


class ClientError(Exception):
    """The server refused a request; `message` is the server's own explanation."""

    exit_code = EX_DATAERR

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code

    def __str__(self) -> str:
        return self.message


class UsageProblem(ClientError):
    """A command line the client itself can tell is wrong (a bad --state, say)."""

    exit_code = EX_USAGE


class ServerUnavailable(ClientError):
    """No answer: connection refused, a timeout, a dropped connection, or a 5xx."""

    exit_code = EX_UNAVAILABLE


class NotPermitted(ClientError, Unauthorized):
    """401/403: the server wants a (different) API token."""

    exit_code = EX_NOPERM


def error_from(response: httpx.Response) -> ClientError:
    """The ClientError for an HTTP error answer, with the server's message when it sent one."""
    status = response.status_code
    answer = read_error(response)
    message, code = answer.message, answer.code
    if message is None:
        request = response.request
        message = f"{request.method} {request.url.path}: HTTP {status} {response.reason_phrase}"
        if status in (404, 405) and request.method != "GET":
            message += " (this server does not offer that action)"
    kind = ClientError
    if status in (401, 403):
        kind = NotPermitted
    elif status >= 500:
        kind = ServerUnavailable
    return kind(message, status=status, code=code)

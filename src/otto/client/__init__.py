"""The client side of Otto: its HTTP API as Python calls, and what the CLI shows.

Entry point: `OttoClient(base_url, token=None)` (`otto.client.ottoclient`), raising
`ClientError` (`ServerUnavailable`, `NotPermitted`) with the server's message.
`client.stream_events()` follows transitions over SSE and resumes after a
dropped connection. The `otto` commands built on it live in
`otto.client.commands` (ps, show, logs, abort, retry, artifacts, events) and
`otto.client.run` (`otto run`, on an embedded server or a running one, its
workspaces a copy of the directory it runs in: `otto.client.workspace`).
"""

from otto.client.errors import ClientError, NotPermitted, ServerUnavailable
from otto.client.ottoclient import Created, OttoClient, Page
from otto.client.sse import EventStream

__all__ = [
    "ClientError",
    "Created",
    "EventStream",
    "NotPermitted",
    "OttoClient",
    "Page",
    "ServerUnavailable",
]

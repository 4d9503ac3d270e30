"""The control socket: how a running step talks back to its agent.

HTTP + JSON over a per-context unix socket (mode 0600, in a 0700
directory in `$XDG_RUNTIME_DIR`, else `/dev/shm`, else the temp dir: a memory
filesystem where there is one); every request carries the per-run token as
`Authorization: Bearer <token>`. Steps find both in their environment
(`OTTO_CONTROL_SOCKET`, `OTTO_CONTROL_TOKEN`).

`POST /v1/control` with one message:

    {"type": "SetPipelineStatus", "status": "Unstable"}   # the context ends no better
    {"type": "CaptureVariable", "name": "VERSION", "value": "1.2"}   # later: VAR_VERSION
    {"type": "DropVariable", "name": "VERSION"}
    {"type": "Terminate", "status": "Success", "reason": "nothing to do"}  # end it now
    {"type": "RetrieveCredential", "name": "npm-token"}   # → {"value": …}; 409 when the
                                                          # stage did not ask for it

From a shell: `python -m otto.agent.control set-status Unstable` (see
`otto.agent.control.client`). This package imports only the standard
library, so the client starts fast.
"""

ENV_SOCKET = "OTTO_CONTROL_SOCKET"
ENV_TOKEN = "OTTO_CONTROL_TOKEN"
ENV_CREDENTIALS = "OTTO_CREDENTIALS"  # the directory of the stage's credentials, one file each
PATH = "/v1/control"

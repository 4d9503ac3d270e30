"""The agent: runs one context's steps, in order, in the context's own workspace.

1. open the object store and the context's log (`<pipeline>/<context>/context.log`);
2. fetch the step libraries the invocation lists (`workspace.py`), then check every
   step (nested blocks included) against its manifest: any problem fails the context
   before anything runs, each problem written to the context's log and the reason
   reported;
3. make the workspace and the steps' home afresh and check out the invocation's commit
   into it if asked (`workspace.py`: a failed checkout is an Error);
4. start the control socket; write the stage's credentials as files (`OTTO_CREDENTIALS`,
   also served over the socket); provision the context's isolation (`workspace.py`:
   `provision_failed` is an Error); run the steps, each process isolated as the
   invocation says (`otto.isolation`): in the container, else in the host sandbox, with
   a clean environment (`step_env`). A step's exit code 0 is Success, any other Failed;
   what it wrote to its `$OTTO_STATUS` and `$OTTO_VARIABLES` files is read once it has
   ended (`channels.py`). The first step that fails ends the context (an Unstable one
   does not). Its status is the worst of its steps' and the floor a step set over the
   control socket; an abort or a terminate request ends it at once, and
   so does the stage's deadline (the running step is stopped: `Failed`, `timeout`);
5. store and seal every log, report `context_finished` with the variables the steps
   captured (later contexts' steps see them), then remove the container.

Each step runs through a `StepRun` (`steprun.py`) that is given only the context's
`ContextRuntime`: what this agent lends its steps.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import BaseModel, Field, JsonValue

from otto.agent.channels import ENV_STATUS, StepChannels
from otto.agent.control import ENV_CREDENTIALS, ENV_SOCKET, ENV_TOKEN
from otto.agent.control.server import ControlServer
from otto.agent.control.state import ControlState
from otto.agent.invocation import Invocation
from otto.agent.logstream import LOG_LIMIT, LogStream, LogWriter
from otto.agent.masking import Masker, url_secrets
from otto.agent.process import Interrupter, Stop
from otto.agent.reporter import Reporter
from otto.agent.steprun import ContextRuntime, StepRun
from otto.agent.validate import Plan, plan_steps
from otto.agent.workspace import ContextEnded, Workspace
from otto.model import Step
from otto.objectstore import ObjectStore, ObjectStoreError, open_store
from otto.objectstore.keys import context_log_key, step_log_key
from otto.status import Status
from otto.steps.builtins import BUILTINS
from otto.steps.library import run_library_step
from otto.steps.manifest import Manifest, standard_manifests
from otto.steps.runtime import StepFailure, StepOutcome
from otto.steps.variables import VariablesError


class StepResult(BaseModel):
    step: str
    symbol: str
    exit_code: int | None
    status: Status
    reason: str | None = None


class ContextResult(BaseModel):
    status: Status
    reason: str | None = None
    steps: list[StepResult] = Field(default_factory=list)
    variables: dict[str, str] = Field(default_factory=dict)
    workspace: str = ""


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run_agent(invocation: Invocation, reporter: Reporter) -> ContextResult:
    """Run the invocation's context to its end and report as it goes."""
    return Agent(invocation, reporter).run()


class Agent:
    """One context's run. `abort()` may be called from any thread or a signal handler."""

    def __init__(self, invocation: Invocation, reporter: Reporter) -> None:
        self.invocation = invocation
        self.reporter = reporter
        self.pipeline = invocation.pipeline
        self.context = invocation.context.uuid
        self.token = secrets.token_hex(24)
        hidden = [
            *invocation.secrets.values(),
            *invocation.credentials.values(),
            *invocation.masked,
            *url_secrets(invocation.object_store),
        ]
        self.masker = Masker(hidden, exact=[self.token])
        self.interrupter = Interrupter()
        self.control = ControlState(self.interrupter, self._say, invocation.credentials)
        self.workspace = Workspace(invocation, self._say)
        self.results: list[StepResult] = []
        self.plan = Plan()
        self._store: ObjectStore | None = None
        self._writer: LogWriter | None = None
        self._log: LogStream | None = None
        self._runtime: ContextRuntime | None = None
        self._control: ControlServer | None = None
        self._base_env: dict[str, str] = {}
        self._credentials: Path | None = None  # the directory of the stage's credentials
        # What Otto's own tools (the checkout, git mirrors) run with: nothing of a stage's,
        # and no home whose .gitconfig a step could have written.
        self.tool_env = {
            "PATH": os.environ.get("PATH") or DEFAULT_PATH,
            "LANG": "C.UTF-8",
            "HOME": "/nonexistent",
        }

    # -- public --------------------------------------------------------------

    def abort(self, reason: str = "aborted") -> None:
        """Stop the running step's process group (SIGTERM, then SIGKILL); end Aborted."""
        self.interrupter.request(Stop(Status.ABORTED, reason))

    def run(self) -> ContextResult:
        """Run the context to its end (once per Agent), report and return its outcome."""
        status, reason = Status.ERROR, "internal error"
        try:
            try:
                self._open_store()
                self._say(f"context {self.invocation.context.name or self.context}")
                self._prepare()
                socket = self.workspace.control_socket()
                self._control = ControlServer(socket, self.token, self.control.handle)
                self._credentials = self.workspace.write_credentials(self.invocation.credentials)
                self._base_env = self._environment()
                self.workspace.provision(self.runtime, self.context_log, self.masker.mask_text)
                status, reason = self.run_steps(
                    self.invocation.context.steps, self.workspace.path, self._stage_deadline()
                )
                status, reason = self._final(status, reason)
            except ContextEnded as end:
                status, reason = end.status, end.reason
        except Exception as exc:  # never a traceback: the context ends in Error, saying why
            status, reason = Status.ERROR, f"agent error: {type(exc).__name__}: {exc}"
        try:
            status, reason = self._finish(status, reason)
        except Exception as exc:
            status, reason = Status.ERROR, f"agent error: {type(exc).__name__}: {exc}"
        try:
            self.reporter.context_finished(status, reason, self.control.variables())
        finally:
            self.workspace.release()  # after the report: the next context need not wait
        return ContextResult(
            status=status,
            reason=reason,
            steps=self.results,
            variables=self.control.variables(),
            workspace=str(self.workspace.path),
        )

    def _finish(self, status: Status, reason: str | None) -> tuple[Status, str | None]:
        """Stop the control socket, store and seal every log, clean up."""
        try:
            if self._control is not None:
                self._control.close()
            reason = self.masker.mask_text(reason) if reason else None
            self._say(f"context {status.value}" + (f": {reason}" if reason else ""))
            if self._log is not None:
                self._log.close()
            if self._writer is not None and (errors := self._writer.close()):
                status, reason = Status.ERROR, errors[0]
        finally:
            self.workspace.remove()
            self.interrupter.close()
        return status, reason

    # -- preparing -----------------------------------------------------------

    def _open_store(self) -> None:
        """Open the object store and the context's log; make what the steps are lent."""
        try:
            self._store = open_store(self.invocation.object_store)
        except (ObjectStoreError, ValueError) as exc:
            raise ContextEnded(Status.ERROR, f"cannot open the object store: {exc}") from None
        self._writer = LogWriter(
            self._store,
            self.masker,
            max_bytes=self.invocation.max_log_bytes,
            on_stop=self._log_stop,
        )
        self._log = self._writer.open(context_log_key(self.pipeline, self.context))
        self._runtime = ContextRuntime(
            pipeline=self.pipeline,
            context=self.context,
            place=self.workspace,
            store=self._store,
            object_store_url=self.invocation.object_store,
            control_token=self.token,
            tool_env=self.tool_env,
            interrupter=self.interrupter,
            kill_grace=self.invocation.kill_grace,
            log_tick=self._writer.tick,
            watches=self.control_wakeup,
            run_block=self.run_steps,
        )

    def _log_stop(self, log: LogStream, stop: Stop) -> None:
        """A step's log cut at `max_log_bytes`, or refused by a full store: stop the step's
        process as a timeout does (SIGTERM, then SIGKILL); the context log stops nothing."""
        if log is not self._log:
            self.interrupter.request(stop)

    @property
    def store(self) -> ObjectStore:
        assert self._store is not None
        return self._store

    @property
    def logs(self) -> LogWriter:
        assert self._writer is not None
        return self._writer

    @property
    def context_log(self) -> LogStream:
        assert self._log is not None
        return self._log

    @property
    def runtime(self) -> ContextRuntime:
        assert self._runtime is not None
        return self._runtime

    def _prepare(self) -> None:
        """Fetch the libraries, check every step, make the workspace, check out."""
        manifests = dict(standard_manifests())
        self.workspace.load_libraries(self.store, self.invocation.libraries, manifests)
        self.plan = self._plan(manifests)
        # Credentials inside repository URLs (https://user:token@...) stay out of logs too.
        urls = [str(p["url"]) for p in self.plan.params.values() if isinstance(p.get("url"), str)]
        checkout = self.invocation.checkout
        if checkout is not None:
            urls.append(checkout.url)
        self.masker.add([secret for url in urls for secret in url_secrets(url)])
        self.workspace.make_fresh()
        if checkout is not None:
            self.workspace.check_out(checkout, self.runtime, self.context_log)

    def _plan(self, manifests: dict[str, Manifest]) -> Plan:
        """Every step checked against its manifest; any problem ends the context."""
        checks = {symbol: b.check for symbol, b in BUILTINS.items() if b.check is not None}
        plan, problems = plan_steps(self.invocation.context.steps, manifests, checks)
        if problems:
            for problem in problems:
                self._say(f"invalid: {problem}")
            raise ContextEnded(Status.FAILED, "; ".join(problems))
        return plan

    def _environment(self) -> dict[str, str]:
        """A step's environment: only what its run declared, nothing of the agent's own
        (the server's token, webhook secrets and object-store keys live there)."""
        inv = self.invocation
        env = {
            "PATH": os.environ.get("PATH") or DEFAULT_PATH,
            "HOME": str(self.workspace.home),
            "LANG": "C.UTF-8",
        }
        env.update(inv.passthrough)
        env.update(inv.context.environment)
        env.update(inv.variables)
        env.update(inv.secrets)
        env.update(
            OTTO="true",
            CI="true",
            OTTO_PIPELINE=self.pipeline,
            OTTO_CONTEXT=self.context,
            OTTO_WORKSPACE=str(self.workspace.path),
        )
        if self._control is not None:  # not yet while the workspace's checkout runs
            env[ENV_SOCKET] = str(self._control.path)
            env[ENV_TOKEN] = self.token
        if self._credentials is not None:
            env[ENV_CREDENTIALS] = str(self._credentials)
        return env

    # -- running -------------------------------------------------------------

    def _stage_deadline(self) -> float | None:
        """The stage's deadline (Unix time, from the PSM) on this process's monotonic clock."""
        deadline = self.invocation.deadline
        if deadline is None:
            return None
        return time.monotonic() + (deadline - time.time())

    def run_steps(
        self, steps: list[Step], cwd: Path, deadline: float | None = None
    ) -> tuple[Status, str | None]:
        """Run steps in order until one fails (an Unstable one does not stop them); (the
        worst status, its reason)."""
        status, reason = Status.SUCCESS, None
        for step in steps:
            if self.interrupter.stop is not None:
                return self.interrupter.stop.status, self.interrupter.stop.reason
            result = self._run_step(step, cwd, deadline)
            if result.status.rank > status.rank:
                status, reason = result.status, result.reason
            if result.status.is_failure:
                return status, reason
        stop = self.interrupter.stop
        return (stop.status, stop.reason) if stop else (status, reason)

    def _run_step(self, step: Step, cwd: Path, parent_deadline: float | None) -> StepResult:
        params = self.plan.params[step.uuid]
        deadline = parent_deadline
        if step.uuid in self.plan.timeouts:
            own = time.monotonic() + self.plan.timeouts[step.uuid]
            deadline = own if deadline is None else min(deadline, own)
        self.reporter.step_started(step)
        log = self.logs.open(step_log_key(self.pipeline, self.context, step.uuid))
        channels = StepChannels.make(self.workspace.steps_dir, step.uuid)
        env = self.step_env(step) | channels.env()
        run = StepRun(self.runtime, step, cwd, log, deadline, env, own_dir=channels.directory)
        exit_code: int | None
        try:
            outcome = self._execute(run, step, params)
            exit_code, status, reason = outcome.exit_code, outcome.final_status, outcome.reason
            self._capture(outcome.variables, log)
        except StepFailure as exc:
            log.text(exc.message)
            exit_code, status, reason = exc.exit_code, Status.FAILED, exc.message
        except ObjectStoreError as exc:
            log.text(f"object store: {exc}")
            exit_code, status, reason = None, Status.ERROR, f"object store: {exc}"
        except OSError as exc:  # the workspace's filesystem refused something
            message = f"`{step.symbol}`: {exc}"
            log.text(message)
            exit_code, status, reason = 1, Status.FAILED, message
        except Exception as exc:
            message = f"internal error in `{step.symbol}`: {type(exc).__name__}: {exc}"
            log.text(message)
            exit_code, status, reason = None, Status.ERROR, message
        status, reason = self._hear(channels, log, status, reason)
        stop = run.stop
        if stop is None and deadline is not None and time.monotonic() >= deadline:
            stop = Stop(Status.FAILED, "timeout")
        if stop is None and log.cut:  # cut while no process of its ran (a built-in's output)
            stop = Stop(Status.FAILED, LOG_LIMIT)
        if stop is not None and status is not Status.ERROR:
            status, reason = stop.status, stop.reason
            log.text(f"[otto] step stopped: {stop.reason}")
        if status is not Status.SUCCESS and reason is None:
            reason = f"exit code {exit_code}"
        if error := log.close():
            status, reason = Status.ERROR, error
        reason = self.masker.mask_text(reason) if reason else None
        result = StepResult(
            step=step.uuid, symbol=step.symbol, exit_code=exit_code, status=status, reason=reason
        )
        self.results.append(result)
        self._say(
            f"step {step.symbol} {step.uuid}: {status.value}" + (f" ({reason})" if reason else "")
        )
        self.reporter.step_finished(step, exit_code, status, reason)
        return result

    def _hear(
        self, channels: StepChannels, log: LogStream, status: Status, reason: str | None
    ) -> tuple[Status, str | None]:
        """Fold what the step wrote to `$OTTO_STATUS` / `$OTTO_VARIABLES` into its outcome;
        its directory is removed. Variables that cannot be captured fail the step."""
        try:
            said = channels.read()
        except VariablesError as exc:
            log.text(f"[otto] {exc}")
            return (status, reason) if status.is_failure else (Status.FAILED, str(exc))
        finally:
            channels.remove()
        for note in said.notes:
            log.text(f"[otto] {note}")
        self._capture(said.variables, log)
        if said.status is not None and said.status.rank > status.rank:
            word = said.status.value.lower()
            log.text(f"[otto] ${ENV_STATUS}: the step is {said.status.value}")
            return said.status, f"{word} (${ENV_STATUS})"
        return status, reason

    def _capture(self, variables: Mapping[str, str], log: LogStream) -> None:
        if variables:
            self.control.capture(variables)
            log.text(f"[otto] captured {', '.join(f'VAR_{name}' for name in variables)}")

    def _execute(self, run: StepRun, step: Step, params: dict[str, JsonValue]) -> StepOutcome:
        library = self.workspace.libraries.get(step.symbol)
        if library is not None:
            return run_library_step(run, library, params)
        return BUILTINS[step.symbol].run(run, params)

    def _final(self, status: Status, reason: str | None) -> tuple[Status, str | None]:
        floor = self.control.floor
        if floor.rank > status.rank:
            return floor, "status set by a step"
        return status, reason

    # -- helpers ---------------------------------------------------------------

    def control_wakeup(self) -> dict[int, Callable[[], None]]:
        """What a step's process loop watches: the control socket, until it is served."""
        control = self._control
        if control is None or control.serving:
            return {}
        return {control.fileno: control.serve}

    def step_env(self, step: Step | None) -> dict[str, str]:
        """The environment of a step: the base one, captured variables, OTTO_STEP."""
        env = dict(self._base_env or self._environment())
        env.update({f"VAR_{k}": v for k, v in self.control.variables().items()})
        if step is not None:
            env["OTTO_STEP"] = step.uuid
        return env

    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log.text(f"[otto] {line}")

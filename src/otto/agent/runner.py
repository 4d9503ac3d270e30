"""The agent: runs one context's steps, in order, in the context's own workspace.

1. open the object store and the context's log (`<pipeline>/<context>/context.log`);
2. fetch the step libraries the invocation lists, then check every step (nested
   blocks included) against its manifest: any problem fails the context before
   anything runs, each problem written to the context's log and the reason reported;
3. make the workspace `<workspace_root>/<pipeline>/<context>` (and the steps' home
   beside it) afresh, check out the invocation's commit into it if asked (a failed
   checkout is an Error);
4. start the control socket; provision the context's container if its stage names an
   image (`provision_failed` is an Error); run the steps, each process isolated as the
   invocation says (`otto.isolation`): in the container, else in the host sandbox, with
   a clean environment (`step_env`); the first step that does not succeed
   ends the context. Its status is the worst of that step's and the floor a step
   set over the control socket; an abort or a terminate request ends it at once, and
   so does the stage's deadline (the running step is stopped: `Failed`, `timeout`);
5. store and seal every log, report `context_finished`, then remove the container.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field, JsonValue

from otto.agent.control import ENV_SOCKET, ENV_TOKEN
from otto.agent.control.server import ControlServer
from otto.agent.control.state import ControlState
from otto.agent.invocation import Invocation
from otto.agent.logstream import LOG_LIMIT, LogStream, LogWriter
from otto.agent.masking import Masker, url_secrets
from otto.agent.process import Interrupter, Stop, run_process
from otto.agent.reporter import Reporter, context_log_key, step_log_key
from otto.agent.steprun import StepRun
from otto.agent.validate import Plan, plan_steps
from otto.isolation import (
    Container,
    Isolation,
    Mounts,
    ProvisionError,
    Unsandboxed,
    host_isolation,
)
from otto.model import Step
from otto.objectstore import ObjectStore, ObjectStoreError, open_store
from otto.status import Status
from otto.steps import git
from otto.steps.api import StepFailure, StepOutcome
from otto.steps.builtins import BUILTINS
from otto.steps.library import (
    LibraryError,
    StepLibrary,
    data_dir_of,
    fetch_library,
    run_library_step,
)
from otto.steps.manifest import Manifest, standard_manifests


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


def _new_dir(parent: str) -> Path:
    """A new 0700 directory of this run's own: `tempfile.mkdtemp` without its machinery,
    which a freshly forked agent would pay for in pages copied on write."""
    while True:
        path = Path(parent, f"otto-agent-{os.urandom(4).hex()}")
        try:
            path.mkdir(0o700)
        except FileExistsError:
            continue
        return path


@functools.cache
def runtime_dir() -> str:
    """Where control sockets go: a memory filesystem when there is one, as for any
    runtime socket (XDG_RUNTIME_DIR, else /dev/shm), the temp dir otherwise. A socket
    made and removed per context there costs no disk inode; on some filesystems (ext4
    without a journal) each removed inode slows the next minutes' file creations."""
    for candidate in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return tempfile.gettempdir()


class _Ended(Exception):
    """The context ends before its steps run (bad steps, no workspace, ...)."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Agent:
    """One context's run. `abort()` may be called from any thread or a signal handler."""

    def __init__(self, invocation: Invocation, reporter: Reporter) -> None:
        self.invocation = invocation
        self.reporter = reporter
        self.pipeline = invocation.pipeline
        self.context = invocation.context.uuid
        self.workspace = invocation.workspace.absolute()
        self.cache_dir = invocation.cache.absolute()
        self.token = secrets.token_hex(24)
        self.home = invocation.home.absolute()
        hidden = [
            *invocation.secrets.values(),
            *invocation.masked,
            *url_secrets(invocation.object_store),
        ]
        self.masker = Masker(hidden, exact=[self.token])
        self.interrupter = Interrupter()
        self.control = ControlState(self.interrupter, self._say)
        self.results: list[StepResult] = []
        self.plan = Plan()
        self.libraries: dict[str, StepLibrary] = {}
        self._store: ObjectStore | None = None
        self._writer: LogWriter | None = None
        self._log: LogStream | None = None
        self._private: Path | None = None  # made when first asked for
        self._control_dir: Path | None = None
        self._control: ControlServer | None = None
        self._base_env: dict[str, str] = {}
        self.host_isolation: Isolation = host_isolation(invocation.sandbox)
        self.container = Container(invocation.container) if invocation.container else None
        self.isolation: Isolation = self.container or self.host_isolation
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
                self._control = self._open_control()
                self._base_env = self._environment()
                self._provision()
                status, reason = self.run_steps(
                    self.invocation.context.steps, self.workspace, self._stage_deadline()
                )
                status, reason = self._final(status, reason)
            except _Ended as end:
                status, reason = end.status, end.reason
        except Exception as exc:  # never a traceback: the context ends in Error, saying why
            status, reason = Status.ERROR, f"agent error: {type(exc).__name__}: {exc}"
        try:
            status, reason = self._finish(status, reason)
        except Exception as exc:
            status, reason = Status.ERROR, f"agent error: {type(exc).__name__}: {exc}"
        try:
            self.reporter.context_finished(status, reason)
        finally:
            if self.container is not None:  # told first: the next context need not wait
                self.container.release()
        return ContextResult(
            status=status,
            reason=reason,
            steps=self.results,
            variables=self.control.variables(),
            workspace=str(self.workspace),
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
            if self._control_dir is not None:
                shutil.rmtree(self._control_dir, ignore_errors=True)
            if self._private is not None:
                shutil.rmtree(self._private, ignore_errors=True)
            self.interrupter.close()
        return status, reason

    # -- preparing -----------------------------------------------------------

    def _open_store(self) -> None:
        try:
            self._store = open_store(self.invocation.object_store)
        except (ObjectStoreError, ValueError) as exc:
            raise _Ended(Status.ERROR, f"cannot open the object store: {exc}") from None
        self._writer = LogWriter(
            self._store,
            self.masker,
            max_bytes=self.invocation.max_log_bytes,
            on_stop=self._log_stop,
        )
        self._log = self._writer.open(context_log_key(self.pipeline, self.context))

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
    def private_dir(self) -> Path:
        """This run's 0700 directory for files (library invocations, archives in the
        making), in the temp dir; made on first use."""
        if self._private is None:
            self._private = _new_dir(tempfile.gettempdir())
        return self._private

    def _prepare(self) -> None:
        manifests = dict(standard_manifests())
        self._load_libraries(manifests)
        checks = {symbol: b.check for symbol, b in BUILTINS.items() if b.check is not None}
        self.plan, problems = plan_steps(self.invocation.context.steps, manifests, checks)
        if problems:
            for problem in problems:
                self._say(f"invalid: {problem}")
            raise _Ended(Status.FAILED, "; ".join(problems))
        # Credentials inside repository URLs (https://user:token@...) stay out of logs too.
        urls = [str(p["url"]) for p in self.plan.params.values() if isinstance(p.get("url"), str)]
        if self.invocation.checkout is not None:
            urls.append(self.invocation.checkout.url)
        self.masker.add([secret for url in urls for secret in url_secrets(url)])
        try:
            for fresh in (self.workspace, self.home):
                if fresh.exists():
                    shutil.rmtree(fresh)
                fresh.mkdir(parents=True)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _Ended(Status.ERROR, f"cannot prepare the workspace: {exc}") from None
        self._say(f"workspace {self.workspace}")
        checkout = self.invocation.checkout
        if checkout is not None:
            assert self._log is not None
            # The agent's own clone of the project's commit: not a step, not sandboxed.
            run = StepRun(self, None, self.workspace, self._log, None, Unsandboxed(), self.tool_env)
            try:
                git.clone(
                    run, checkout.url, self.workspace, branch=checkout.branch, ref=checkout.sha
                )
            except StepFailure as exc:
                stop = self.interrupter.stop
                if stop is not None:
                    raise _Ended(stop.status, stop.reason) from None
                raise _Ended(Status.ERROR, f"checkout failed: {exc.message}") from None

    def _open_control(self) -> ControlServer:
        try:
            self._control_dir = _new_dir(runtime_dir())
        except OSError:  # e.g. XDG_RUNTIME_DIR removed when its user logged out
            self._control_dir = _new_dir(tempfile.gettempdir())
        return ControlServer(self._control_dir / "control.sock", self.token, self.control.handle)

    def _load_libraries(self, manifests: dict[str, Manifest]) -> None:
        for ref in self.invocation.libraries:
            try:
                library = fetch_library(self.store, ref.name, ref.version, self.cache_dir)
            except LibraryError as exc:
                self._say(f"invalid: {exc}")
                raise _Ended(Status.FAILED, str(exc)) from None
            except ObjectStoreError as exc:
                raise _Ended(Status.ERROR, f"cannot fetch step library {ref.name}: {exc}") from None
            symbol = library.manifest.symbol
            if symbol in manifests:
                what = "a standard step" if symbol in BUILTINS else "another library's step"
                message = f"step library {ref.name} {ref.version}: `{symbol}` is {what}"
                self._say(f"invalid: {message}")
                raise _Ended(Status.FAILED, message)
            manifests[symbol] = library.manifest
            self.libraries[symbol] = library

    def _provision(self) -> None:
        """Say how the steps are isolated; start the context's container, if it has one."""
        if self.container is None:
            if self.host_isolation.kind == "none":
                self._say("sandbox: none — steps run unsandboxed, with the agent's access")
            else:
                self._say(f"sandbox: {self.host_isolation.kind}")
            return
        spec = self.container.spec
        self._say(f"container: {spec.image} ({spec.engine}, {spec.name})")
        # A container's mounts are fixed when it starts: what this context's libraries
        # need, and no other library's files or data.
        data = tuple(data_dir_of(self.cache_dir, lib) for lib in self.libraries.values())
        for directory in data:
            directory.mkdir(parents=True, exist_ok=True)
        libraries = tuple(lib.root for lib in self.libraries.values())
        mounts = self.mounts() + Mounts(writable=data, readable=(*libraries, self.private_dir))
        try:
            self.container.provision(mounts, self.workspace, self._run_on_host)
        except ProvisionError as exc:
            raise _Ended(Status.ERROR, f"provision_failed: {exc}") from None
        stop = self.interrupter.stop
        if stop is not None:
            raise _Ended(stop.status, stop.reason)

    def _run_on_host(self, argv: Sequence[str], stdin: int | None = None) -> tuple[int, str]:
        """A provisioning command of the agent's own (`otto.isolation.HostRunner`)."""
        assert self._log is not None
        log = self._log
        tail = bytearray()

        def output(data: bytes) -> None:
            log.write(data)
            tail.extend(data)
            del tail[:-4096]

        result = run_process(
            argv,
            cwd=self.workspace,
            env=os.environ,
            output=output,
            interrupter=self.interrupter,
            grace=self.invocation.kill_grace,
            tick=self.logs.tick,
            stdin=stdin,
        )
        return result.exit_code, self.masker.mask_text(tail.decode(errors="replace"))

    def mounts(self) -> Mounts:
        """What every step process sees besides the system: its workspace, its home,
        its control socket, the files the agent made for it."""
        control = (self._control_dir,) if self._control_dir is not None else ()
        private = (self._private,) if self._private is not None else ()
        return Mounts(writable=(self.workspace, self.home, *control), readable=private)

    def _environment(self) -> dict[str, str]:
        """A step's environment: only what its run declared, nothing of the agent's own
        (the server's token, webhook secrets and object-store keys live there)."""
        inv = self.invocation
        env = {
            "PATH": os.environ.get("PATH") or DEFAULT_PATH,
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
        }
        env.update(inv.passthrough)
        env.update(inv.context.environment)
        env.update(inv.secrets)
        env.update(
            OTTO="true",
            CI="true",
            OTTO_PIPELINE=self.pipeline,
            OTTO_CONTEXT=self.context,
            OTTO_WORKSPACE=str(self.workspace),
        )
        if self._control is not None:  # not yet while the workspace's checkout runs
            env[ENV_SOCKET] = str(self._control.path)
            env[ENV_TOKEN] = self.token
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
        """Run steps in order until one does not succeed; (its status, its reason)."""
        for step in steps:
            if self.interrupter.stop is not None:
                return self.interrupter.stop.status, self.interrupter.stop.reason
            result = self._run_step(step, cwd, deadline)
            if result.status is not Status.SUCCESS:
                return result.status, result.reason
        stop = self.interrupter.stop
        return (stop.status, stop.reason) if stop else (Status.SUCCESS, None)

    def _run_step(self, step: Step, cwd: Path, parent_deadline: float | None) -> StepResult:
        params = self.plan.params[step.uuid]
        deadline = parent_deadline
        if step.uuid in self.plan.timeouts:
            own = time.monotonic() + self.plan.timeouts[step.uuid]
            deadline = own if deadline is None else min(deadline, own)
        self.reporter.step_started(step)
        log = self.logs.open(step_log_key(self.pipeline, self.context, step.uuid))
        run = StepRun(self, step, cwd, log, deadline)
        exit_code: int | None
        try:
            outcome = self._execute(run, step, params)
            exit_code, status, reason = outcome.exit_code, outcome.final_status, outcome.reason
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

    def _execute(self, run: StepRun, step: Step, params: dict[str, JsonValue]) -> StepOutcome:
        library = self.libraries.get(step.symbol)
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

"""Real parts for webhook tests: a git daemon on 127.0.0.1, repositories, pushes,
GitHub push payloads, and a fake GitHub statuses API that checks each request."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx

from serverkit import free_port

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@contextmanager
def git_daemon(root: Path) -> Iterator[str]:
    """Serve the bare repositories under `root` at git://127.0.0.1:PORT/ (push allowed)."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack",
         f"--base-path={root}", "--listen=127.0.0.1", f"--port={port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "git daemon did not come up"
                time.sleep(0.05)
        yield f"git://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(5)


@dataclass
class SilentServer:
    listener: socket.socket
    held: list[socket.socket] = field(default_factory=list)  # accepted, never answered

    @property
    def address(self) -> str:
        """host:port"""
        host, port = self.listener.getsockname()
        return f"{host}:{port}"

    def hang_up(self) -> None:
        """Stop listening and close the connections held: their clients see the end of
        the stream, and a new one is refused."""
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.listener.close()
        for connection in self.held:
            connection.close()


@contextmanager
def silent_server() -> Iterator[SilentServer]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a hanging
    repository), until the block ends or it hangs up."""
    server = SilentServer(socket.create_server(("127.0.0.1", 0)))

    def accept() -> None:
        while True:
            try:
                server.held.append(server.listener.accept()[0])
            except OSError:
                return  # closed

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server
    finally:
        server.hang_up()


@dataclass
class Repo:
    """A bare repository served by the daemon, and a working copy that pushes to it."""

    url: str
    work: Path

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        for name, text in files.items():
            (self.work / name).write_text(text)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self, branch: str = "main") -> None:
        git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)


def make_repo(served: Path, base_url: str, name: str, tmp: Path) -> Repo:
    bare = served / name
    bare.parent.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "--bare", "-b", "main", str(bare))
    url = f"{base_url}/{name}"
    work = tmp / f"work-{uuid.uuid4().hex[:8]}"
    git("init", "-q", "-b", "main", str(work))
    git("remote", "add", "origin", url, cwd=work)
    return Repo(url, work)


def push_payload(repo_url: str, full_name: str, ref: str, sha: str, **extra: Any) -> bytes:
    """A push event as GitHub documents it (the fields Otto reads, and some it does not)."""
    owner, name = full_name.split("/")
    payload = {
        "ref": ref,
        "before": "0" * 40,
        "after": sha,
        "created": False,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/{full_name}/compare/{sha[:12]}",
        "commits": [{"id": sha, "message": "change", "distinct": True}],
        "head_commit": {"id": sha, "message": "change", "timestamp": "2026-01-01T00:00:00Z"},
        "repository": {
            "id": 1296269,
            "name": name,
            "full_name": full_name,
            "owner": {"login": owner, "name": owner},
            "clone_url": repo_url,
            "html_url": f"https://github.com/{full_name}",
            "default_branch": "main",
        },
        "pusher": {"name": "ada", "email": "ada@example.com"},
        "sender": {"login": "ada", "type": "User"},
    }
    payload.update(extra)
    return json.dumps(payload).encode()


def as_form(body: bytes) -> bytes:
    """A JSON payload as GitHub's default content type sends it: `payload=<url-encoded>`."""
    return b"payload=" + quote_plus(body.decode()).encode()


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(
    client: httpx.Client,
    body: bytes,
    secret: str | None,
    event: str = "push",
    delivery: str | None = None,
    content_type: str = "application/json",
) -> httpx.Response:
    headers = {
        "Content-Type": content_type,
        "User-Agent": "GitHub-Hookshot/abc123",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    return client.post("/v1/webhooks/github", content=body, headers=headers)


@dataclass
class FakeGitHub:
    """`POST /repos/{owner}/{repo}/statuses/{sha}` as GitHub documents it; anything off is
    answered 4xx like GitHub would, and noted in `problems`."""

    token: str
    url: str = ""
    down: bool = False  # answer 503 to everything (GitHub having a bad day)
    refused: int = 0  # requests answered 503 while down
    statuses: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, str]:
        parts = path.split("/")
        if method != "POST":
            return 404, f"{method} {path}: not found"
        if len(parts) != 6 or parts[1] != "repos" or parts[4] != "statuses":
            return 404, f"{path}: not a statuses path"
        if len(parts[5]) != 40 or not all(c in "0123456789abcdef" for c in parts[5]):
            return 422, f"{parts[5]}: not a commit SHA"
        if headers.get("Authorization") not in (f"Bearer {self.token}", f"token {self.token}"):
            return 401, f"Authorization: {headers.get('Authorization')!r}"
        accept = headers.get("Accept", "")
        if "application/vnd.github" not in accept and "application/json" not in accept:
            return 415, f"Accept: {accept!r}"
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, "body is not JSON"
        if not isinstance(body, dict) or set(body) - {
            "state",
            "target_url",
            "description",
            "context",
        }:
            return 422, f"unexpected fields in {body}"
        if body.get("state") not in ("error", "failure", "pending", "success"):
            return 422, f"state: {body.get('state')!r}"
        for name in ("target_url", "description", "context"):
            if not isinstance(body.get(name), str):
                return 422, f"{name}: not a string"
        if not body["target_url"].startswith(("http://", "https://")):
            return 422, f"target_url: {body['target_url']!r}"
        if len(body["description"]) > 140:
            return 422, "description: over 140 characters"
        with self.lock:
            self.statuses.append({"repo": f"{parts[2]}/{parts[3]}", "sha": parts[5], **body})
        return 201, ""

    def of(self, sha: str) -> list[str]:
        with self.lock:
            return [s["state"] for s in self.statuses if s["sha"] == sha]


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on a free loopback port (its base URL) until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def fake_github(token: str) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(token)

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with fake.lock:
                down = fake.down
                fake.refused += down
            code, problem = (503, "") if down else fake.check("POST", self.path, self.headers, raw)
            if problem:
                with fake.lock:
                    fake.problems.append(problem)
            answer = json.dumps({"message": problem} if problem else {"id": 1}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    with serving(Handler) as url:
        fake.url = url
        yield fake


@dataclass
class FakeSubscriber:
    """An outbound webhook receiver: checks each request's shape and signature
    (HMAC-SHA256 over `timestamp.body`), records the good ones, and answers
    `fail` (an HTTP status) to the first `failures` requests; `hold` keeps
    every answer back until it is set."""

    secret: str
    url: str = ""
    failures: int = 0
    fail: int = 503
    hold: threading.Event | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, path: str, headers: Any, raw: bytes) -> str:
        timestamp = headers.get("X-Otto-Timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
            return f"X-Otto-Timestamp: {timestamp!r}"
        signed = timestamp.encode() + b"." + raw
        expected = "sha256=" + hmac.new(self.secret.encode(), signed, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("X-Otto-Signature", "")):
            return "X-Otto-Signature does not match"
        if not headers.get("X-Otto-Delivery"):
            return "X-Otto-Delivery missing"
        if headers.get("Content-Type") != "application/json":
            return f"Content-Type: {headers.get('Content-Type')!r}"
        try:
            body = json.loads(raw)
        except ValueError:
            return "body is not JSON"
        if set(body) != {"event", "project", "pipeline", "transition"}:
            return f"unexpected body fields {sorted(body)}"
        with self.lock:
            self.received.append(
                {"path": path, "delivery": headers["X-Otto-Delivery"], "body": body}
            )
        return ""

    def transitions(self) -> list[tuple[str, str, str | None]]:
        """(entity, to-state, status) of every delivery received, as received."""
        with self.lock:
            return [
                (r["body"]["transition"]["entity"], r["body"]["transition"]["to"],
                 r["body"]["transition"]["status"])
                for r in self.received
            ]  # fmt: skip

    def deliveries(self) -> list[str]:
        with self.lock:
            return [r["delivery"] for r in self.received]


@contextmanager
def fake_subscriber(secret: str, **options: Any) -> Iterator[FakeSubscriber]:
    fake = FakeSubscriber(secret, **options)

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if fake.hold is not None:
                fake.hold.wait(30)
            with fake.lock:
                fake.attempts += 1
                failing = fake.failures > 0
                fake.failures -= 1 if failing else 0
            problem = "" if failing else fake.check(self.path, self.headers, raw)
            if problem:
                with fake.lock:
                    fake.problems.append(problem)
            code = fake.fail if failing else 400 if problem else 204
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serving(Handler) as url:
        fake.url = f"{url}/hook"
        try:
            yield fake
        finally:
            if fake.hold is not None:
                fake.hold.set()


def pull_request_payload(
    repo_url: str,
    full_name: str,
    number: int,
    action: str,
    head_sha: str,
    source_branch: str,
    head_full_name: str | None = None,
    **extra: Any,
) -> bytes:
    """A `pull_request` event as GitHub documents it (`head_full_name`: a fork's)."""
    owner = full_name.split("/")[0]
    head_name = head_full_name or full_name

    def repository(full: str, url: str) -> dict[str, Any]:
        return {
            "id": 1296269 if full == full_name else 7,
            "name": full.split("/")[1],
            "full_name": full,
            "owner": {"login": full.split("/")[0]},
            "clone_url": url,
            "html_url": f"https://github.com/{full}",
            "fork": full != full_name,
            "default_branch": "main",
        }

    pull = {
        "url": f"https://api.github.com/repos/{full_name}/pulls/{number}",
        "id": 1000 + number,
        "number": number,
        "state": "closed" if action == "closed" else "open",
        "locked": False,
        "title": "Add the feature\n",
        "user": {"login": "alice", "id": 5, "type": "User"},
        "body": "Please pull.",
        "merged": False,
        "merge_commit_sha": None,
        "head": {
            "label": f"{head_name.split('/')[0]}:{source_branch}",
            "ref": source_branch,
            "sha": head_sha,
            "user": {"login": head_name.split("/")[0]},
            "repo": repository(head_name, f"https://github.com/{head_name}.git"),
        },
        "base": {
            "label": f"{owner}:main",
            "ref": "main",
            "sha": "0" * 39 + "1",
            "user": {"login": owner},
            "repo": repository(full_name, repo_url),
        },
    }
    pull.update(extra)
    payload = {
        "action": action,
        "number": number,
        "pull_request": pull,
        "repository": repository(full_name, repo_url),
        "sender": {"login": "alice", "type": "User"},
    }
    return json.dumps(payload).encode()


def merge_request_payload(
    repo_url: str,
    path: str,
    iid: int,
    action: str,
    last_commit: str,
    source_branch: str,
    fork: bool = False,
    **attributes: Any,
) -> bytes:
    """A `Merge Request Hook` as GitLab documents it (`fork`: from another project)."""
    project = {
        "id": 1,
        "name": path.split("/")[1],
        "web_url": f"http://gitlab.example/{path}",
        "git_ssh_url": f"git@gitlab.example:{path}.git",
        "git_http_url": repo_url,
        "namespace": path.split("/")[0],
        "path_with_namespace": path,
        "default_branch": "main",
    }
    object_attributes = {
        "id": 90,
        "iid": iid,
        "target_branch": "main",
        "source_branch": source_branch,
        "source_project_id": 2 if fork else 1,
        "target_project_id": 1,
        "author_id": 51,
        "title": "Make it faster",
        "state": "opened",
        "merge_status": "unchecked",
        "url": f"http://gitlab.example/{path}/merge_requests/{iid}",
        "last_commit": {"id": last_commit, "message": "faster\n", "title": "faster"},
        "merge_commit_sha": None,
        "action": action,
        **attributes,
    }
    payload = {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {"id": 1, "name": "Bob Smith", "username": "bob"},
        "project": project,
        "object_attributes": object_attributes,
        "repository": {"name": project["name"], "url": project["git_ssh_url"]},
    }
    return json.dumps(payload).encode()

"""A fake Kubernetes API server for executor tests: a real HTTP server, not a Python mock.

It listens on 127.0.0.1, speaks the API's REST paths, watch streams (newline-delimited
events), the log endpoint and the exec WebSocket (v4.channel.k8s.io framing), and answers
with JSON recorded in the shape a v1.33 API server returns (tests/k8s/recordings). The
official `kubernetes` client talks to it through a generated kubeconfig, so the executor's
HTTP, watch, 410-Gone, log and exec handling are all exercised for real.

A scenario is the timeline of the job pod's states, played out as watch events, and the Job
status to report once the timeline is spent.

It is a hand-written fake, not a recording of a live cluster: no real cluster is available
where these tests run (k8s/e2e/ holds the script an operator runs against kind or k3s).
Two parts are real rather than canned: with `Scenario.output_files`, the exec endpoint
runs the command the executor sent (the collector's packer) as a real Python process over
a directory holding those files, as a hostile job would have left /output; and the log
endpoint honours ``timestamps`` and ``sinceSeconds``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

RECORDINGS = Path(__file__).parent / "recordings"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recording(name: str) -> dict[str, Any]:
    return json.loads((RECORDINGS / f"{name}.json").read_text())


@dataclass
class Scenario:
    pod_states: list[str]  # recording names, e.g. ["pod_pending", "pod_running", "pod_succeeded"]
    final_job: str = "job_complete"  # recording reported once every pod state was delivered
    delete_pod_at_end: bool = False  # the job controller deleted the pod (deadline)
    gone_on_first_watch: str | None = None  # "event" (ERROR 410 in a 200 stream) or "status" (HTTP 410)
    hang: bool = False  # the Job never finishes on its own
    logs: bytes = b""
    output_tar: bytes = b""
    exec_status: str = "exec_success"
    # How the exec stream ends: "status" (normal), "drop" (TCP cut mid-stream, no status),
    # "no_status" (a clean WebSocket close without the exit status), "cut_tar" (the tar is
    # cut at a member boundary but the status says Success).
    exec_end: str = "status"
    log_cut: bool = False  # the log connection drops before the body announced is complete
    # Run the exec command for real over these files (relative path -> bytes), as /output.
    output_files: dict[str, bytes] | None = None
    exec_dir: Path | None = None  # set by FakeApiServer: where output_files are written
    # Answer the first N requests of a kind with a recorded 503 (etcd leader change).
    # Refuse creating these (plural resource name -> the quota resource named in the 403), as
    # the ResourceQuota admission plugin does once the project's quota is used up.
    quota_exceeded: dict[str, str] = field(default_factory=dict)
    # keys: "get_job", "list_pods", "list_collector" (lists and watches of the collector
    # pod), "create_pod" (creating the collector pod)
    unavailable: dict[str, int] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any = None


@dataclass
class FakeCluster:
    scenario: Scenario
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    delivered: int = 0
    watches: int = 0
    log_requests: list[dict[str, list[str]]] = field(default_factory=list)
    exec_commands: list[list[str]] = field(default_factory=list)
    log_bytes_sent: int = 0  # how much of the log body the client took before it hung up
    rv: int = 5000
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    # -- the job pod, derived from the Job and the scenario timeline -------------------
    def job(self) -> dict[str, Any] | None:
        return next(
            (o for k, o in self.objects.items() if k.startswith("/apis/batch/v1/") and "/jobs/" in k), None
        )

    def pod_at(self, index: int) -> dict[str, Any] | None:
        job = self.job()
        if job is None or index < 0:
            return None
        pod = recording(self.scenario.pod_states[index])
        tmpl = job["spec"]["template"]
        pod["metadata"].update(
            name=f"{job['metadata']['name']}-x7k2p",
            generateName=f"{job['metadata']['name']}-",
            namespace=job["metadata"]["namespace"],
            labels={**tmpl["metadata"]["labels"], "batch.kubernetes.io/job-name": job["metadata"]["name"]},
            resourceVersion=str(5100 + index),
        )
        pod["metadata"]["ownerReferences"][0].update(name=job["metadata"]["name"], uid=job["metadata"]["uid"])
        pod["spec"] = copy.deepcopy(tmpl["spec"])
        for cs in pod["status"].get("containerStatuses", []):
            cs["name"] = "job"
            cs["image"] = tmpl["spec"]["containers"][0]["image"]
        return pod

    def pod_events(self) -> list[tuple[str, dict[str, Any]]]:
        """Events not yet delivered; consumes them."""
        out: list[tuple[str, dict[str, Any]]] = []
        total = len(self.scenario.pod_states)
        while self.delivered < total:
            pod = self.pod_at(self.delivered)
            assert pod is not None
            out.append(("ADDED" if self.delivered == 0 else "MODIFIED", pod))
            self.delivered += 1
        if out and self.scenario.delete_pod_at_end:
            out.append(("DELETED", out[-1][1]))
        return out

    def job_status(self) -> dict[str, Any]:
        done = self.delivered >= len(self.scenario.pod_states) and not self.scenario.hang
        return recording(self.scenario.final_job if done else "job_active")["status"]


def _status(name: str, **subst: str) -> bytes:
    text = json.dumps(recording(name))
    for k, v in subst.items():
        text = text.replace(k, v)
    return text.encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    cluster: FakeCluster  # set on the subclass per server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    # -- plumbing --------------------------------------------------------------------------
    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj).encode())

    def _record(self, method: str) -> tuple[str, dict[str, list[str]], Any]:
        url = urlparse(self.path)
        # The client must present the kubeconfig's bearer token on every call.
        assert self.headers.get("Authorization") == "Bearer test-token", self.headers.get("Authorization")
        q = parse_qs(url.query)
        body = None
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            raw = self.rfile.read(n)
            body = json.loads(raw)
        with self.cluster.lock:
            self.cluster.requests.append(Request(method, url.path, q, body))
        return url.path, q, body

    # -- verbs -----------------------------------------------------------------------------
    def do_POST(self) -> None:
        path, _, body = self._record("POST")
        if path.endswith("/pods") and self._unavailable("create_pod"):
            return
        plural = path.rsplit("/", 1)[1]
        if plural in self.cluster.scenario.quota_exceeded:
            name = body["metadata"]["name"]
            res = self.cluster.scenario.quota_exceeded[plural]
            self._send(403, _status("status_403_quota", NAME=name, KIND=f"{plural}", RESOURCE=res))
            return
        name = body["metadata"]["name"]
        key = f"{path}/{name}"
        c = self.cluster
        with c.lock:
            if key in c.objects:
                self._send(409, _status("status_409", NAME=name, KIND=body["kind"].lower() + "s"))
                return
            obj = copy.deepcopy(body)
            obj["metadata"].update(
                uid=str(uuid.uuid4()), resourceVersion=c.next_rv(), creationTimestamp="2025-06-02T10:15:01Z"
            )
            if body["kind"] == "Job":
                obj["status"] = {}
            c.objects[key] = obj
        self._json(201, obj)

    def do_PATCH(self) -> None:
        path, _, body = self._record("PATCH")
        with self.cluster.lock:
            obj = self.cluster.objects.get(path)
            if obj is None:
                self._send(404, _status("status_404", NAME=path.rsplit("/", 1)[1], KIND="object"))
                return
            obj.update({k: v for k, v in body.items() if k != "metadata"})
        self._json(200, obj)

    def do_DELETE(self) -> None:
        path, _, _ = self._record("DELETE")
        with self.cluster.lock:
            obj = self.cluster.objects.pop(path, None)
        name = path.rsplit("/", 1)[1]
        if obj is None:
            self._send(404, _status("status_404", NAME=name, KIND="object"))
        else:
            self._send(
                200,
                _status(
                    "status_deleted", NAME=name, KIND=obj["kind"].lower() + "s", JOBUID=obj["metadata"]["uid"]
                ),
            )

    def do_GET(self) -> None:
        path, q, _ = self._record("GET")
        c = self.cluster
        if self.headers.get("Upgrade", "").lower() == "websocket" and path.endswith("/exec"):
            self._exec()
            return
        m = re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs/([^/]+)", path)
        if m and self._unavailable("get_job"):
            return
        if m:
            with c.lock:
                obj = c.objects.get(path)
                if obj is not None:
                    obj = copy.deepcopy(obj)
                    obj["status"] = c.job_status()
            if obj is None:
                self._send(404, _status("status_404", NAME=m.group(2), KIND="jobs"))
            else:
                self._json(200, obj)
            return
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log", path)
        if m:
            assert q.get("follow") == ["true"], "logs must be followed"
            body = self._log_body(q)
            if c.scenario.log_cut:  # chunked, as a followed log is, and cut before the last chunk
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(f"{len(body):x}\r\n".encode() + body + b"\r\n")
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self._send_log(body)
            return
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", path)
        if m:
            if "metadata.name=" in (q.get("fieldSelector") or [""])[0]:
                self._collector_pods(path, q)
            elif q.get("watch") == ["true"]:
                self._watch_job_pods(q)
            elif self._unavailable("list_pods"):
                return
            else:
                with c.lock:
                    if c.delivered == 0 and c.job() is not None:
                        c.delivered = 1
                    pod = c.pod_at(c.delivered - 1)
                    gone = c.scenario.delete_pod_at_end and c.delivered >= len(c.scenario.pod_states)
                    items = [] if pod is None or gone else [pod]
                self._json(
                    200,
                    {
                        "kind": "PodList",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": c.next_rv()},
                        "items": items,
                    },
                )
            return
        with c.lock:
            stored = copy.deepcopy(c.objects.get(path))
        if stored is not None:
            self._json(200, stored)
            return
        self._send(404, _status("status_404", NAME=path.rsplit("/", 1)[1], KIND="object"))

    def _log_body(self, q: dict[str, list[str]]) -> bytes:
        """The scenario's log, one line per half second from 10:15:03Z, as the kubelet serves it."""
        lines = self.cluster.scenario.logs.splitlines(keepends=True)
        with self.cluster.lock:
            self.cluster.log_requests.append(q)
        if q.get("timestamps") != ["true"]:
            return b"".join(lines)
        out = []
        start = datetime(2025, 6, 2, 10, 15, 3, tzinfo=UTC)
        for i, line in enumerate(lines):
            secs, half = divmod(i, 2)
            frac = ".5" if half else ""  # RFC 3339 with trailing zeros trimmed, like the kubelet
            stamp = (start + timedelta(seconds=secs)).strftime("%Y-%m-%dT%H:%M:%S")
            out.append(f"{stamp}{frac}Z ".encode() + line)
        return b"".join(out)

    def _send_log(self, body: bytes) -> None:
        """The log as one body, written in 64 KiB pieces; counts what got out before the
        client closed the connection (a follower that stops reading at its budget)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for i in range(0, len(body), 64 * 1024):
                self.wfile.write(body[i : i + 64 * 1024])
                with self.cluster.lock:
                    self.cluster.log_bytes_sent += len(body[i : i + 64 * 1024])
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _unavailable(self, what: str) -> bool:
        with self.cluster.lock:
            left = self.cluster.scenario.unavailable.get(what, 0)
            if left <= 0:
                return False
            self.cluster.scenario.unavailable[what] = left - 1
        self._send(503, _status("status_503"))
        return True

    # -- watch -----------------------------------------------------------------------------
    def _stream(self, lines: list[bytes]) -> None:
        """A watch response: chunked newline-delimited JSON, ended after the events (window closed)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line in lines:
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _watch_job_pods(self, q: dict[str, list[str]]) -> None:
        c = self.cluster
        with c.lock:
            c.watches += 1
            first = c.watches == 1
            gone = c.scenario.gone_on_first_watch if first else None
        if gone == "status":
            self._send(410, json.dumps(recording("watch_error_410")["object"]).encode())
            return
        if gone == "event":
            self._stream([json.dumps(recording("watch_error_410")).encode() + b"\n"])
            return
        with c.lock:
            events = c.pod_events()
        if not events:
            time.sleep(0.2)  # an idle watch window
        self._stream([json.dumps({"type": t, "object": o}).encode() + b"\n" for t, o in events])

    def _collector_pods(self, path: str, q: dict[str, list[str]]) -> None:
        if self._unavailable("list_collector"):
            return
        name = q["fieldSelector"][0].split("=", 1)[1]
        with self.cluster.lock:
            obj = copy.deepcopy(self.cluster.objects.get(f"{path}/{name}"))
        if obj is not None:
            running = recording("pod_running")
            running["status"]["containerStatuses"][0]["name"] = "collector"
            obj["status"] = running["status"]
            obj["metadata"]["resourceVersion"] = self.cluster.next_rv()
        if q.get("watch") == ["true"]:
            self._stream([json.dumps({"type": "MODIFIED", "object": obj}).encode() + b"\n"] if obj else [])
        else:
            self._json(
                200,
                {
                    "kind": "PodList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": self.cluster.next_rv()},
                    "items": [obj] if obj else [],
                },
            )

    # -- exec over WebSocket (RFC 6455, server frames unmasked) ----------------------------
    def _exec(self) -> None:
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()  # noqa: S324
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        assert "v4.channel.k8s.io" in offered
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        self.end_headers()
        sc = self.cluster.scenario
        command = parse_qs(urlparse(self.path).query).get("command", [])
        with self.cluster.lock:
            self.cluster.exec_commands.append(command)
        if sc.output_files is not None:
            self._exec_for_real(command)
            return
        data = sc.output_tar
        if sc.exec_end == "cut_tar":
            data = data[: _first_member_end(data)]
        if sc.exec_end == "drop":
            data = data[: len(data) // 2]
        for i in range(0, len(data), 32 * 1024):
            self._frame(b"\x01" + data[i : i + 32 * 1024])
        if sc.exec_end == "drop":
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # no status, no close frame
            self.close_connection = True
            return
        if sc.exec_status != "exec_success":
            self._frame(b"\x02outputs exceed the limit\n")
        if sc.exec_end != "no_status":
            self._frame(b"\x03" + json.dumps(recording(sc.exec_status)).encode())
        self._close_ws()

    def _close_ws(self) -> None:
        self._frame(b"\x03\xe8", opcode=0x8)
        self.wfile.flush()
        try:
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.close_connection = True

    def _exec_for_real(self, command: list[str]) -> None:
        """Run the executor's command over the scenario's files, laid out as a job left /output.

        The process starts in that directory (the old collector's WORKDIR /output) with
        PYTHONPATH pointing there too: the worst case for an import hijack. `python3` is
        this interpreter and `/output` that directory; everything else runs as sent.
        """
        sc = self.cluster.scenario
        assert sc.exec_dir is not None and sc.output_files is not None
        root = sc.exec_dir
        for rel, data in sc.output_files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        argv = [
            sys.executable if a in ("python", "python3") else str(root) if a == "/output" else a
            for a in command
        ]
        env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        while chunk := proc.stdout.read(32 * 1024):
            self._frame(b"\x01" + chunk)
        err = proc.stderr.read()
        code = proc.wait(timeout=60)
        if err:
            self._frame(b"\x02" + err[:8192])
        if code == 0:
            status = recording("exec_success")
        else:
            status = recording("exec_exit3")
            status["details"]["causes"][0]["message"] = str(code)
            status["message"] = f"command terminated with non-zero exit code: exit code {code}"
        self._frame(b"\x03" + json.dumps(status).encode())
        self._close_ws()

    def _frame(self, payload: bytes, opcode: int = 0x2) -> None:
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([n])
        elif n < 65536:
            head += bytes([126]) + n.to_bytes(2, "big")
        else:
            head += bytes([127]) + n.to_bytes(8, "big")
        self.wfile.write(head + payload)


def _first_member_end(tar: bytes) -> int:
    """Offset just past the first member's data: a cut there leaves a well-formed, shorter tar."""
    size = int(tar[124:136].rstrip(b"\0 ") or b"0", 8)
    return 512 + -(-size // 512) * 512


class FakeApiServer:
    """Starts the server in a thread and writes a kubeconfig pointing at it."""

    def __init__(self, scenario: Scenario, tmp: Path) -> None:
        self.cluster = FakeCluster(scenario)
        scenario.exec_dir = tmp / "fake-output-volume"
        scenario.exec_dir.mkdir(exist_ok=True)
        handler = type("BoundHandler", (Handler,), {"cluster": self.cluster})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.kubeconfig = tmp / "kubeconfig"
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "fake",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "tre-controller", "user": {"token": "test-token"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tre-controller"}}],
                }
            )
        )
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def seed(self, path: str, obj: dict[str, Any]) -> None:
        """Put an object in the fake's store, as if an administrator had created it."""
        self.cluster.objects[path] = obj

    def seed_admission_policies(self) -> None:
        """The policy bindings k8s/base installs first; the executor checks they exist."""
        for name in ("tre-job-pods", "tre-worker-claims", "tre-project-namespaces", "tre-worker-exec"):
            self.seed(
                f"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/{name}",
                {
                    "apiVersion": "admissionregistration.k8s.io/v1",
                    "kind": "ValidatingAdmissionPolicyBinding",
                    "metadata": {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": "17"},
                    "spec": {"policyName": name, "validationActions": ["Deny", "Audit"]},
                },
            )

    def seed_dataset_claim(self, namespace: str, name: str) -> None:
        self.seed(
            f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}",
            {
                "kind": "PersistentVolumeClaim",
                "apiVersion": "v1",
                "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())},
                "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "2Ti"}}},
                "status": {"phase": "Bound", "accessModes": ["ReadOnlyMany"], "capacity": {"storage": "2Ti"}},
            },
        )

    def calls(self, method: str, pattern: str) -> list[Request]:
        return [r for r in self.cluster.requests if r.method == method and re.search(pattern, r.path)]

"""The federation as separate processes on 127.0.0.1: a hub and three nodes, each a full tre
with its own state directory, database, DICOM data, DAC and sandbox (bubblewrap).

One story: a job submitted once with `tre submit` against the hub runs at all three nodes and
is released by each node's DAC; a second job is refused by one node's admin (image not
approved there), rejected by another node's DAC, and survives the third node being killed
mid-job and restarted: the hub ends "partial" with exactly that node's released file,
hashes and the node's signed checkpoint verified. The hub never opens a connection (its
process runs under a connect audit hook), and the bytes on the wire between nodes and hub,
and everything the hub stores, hold nothing of what the job wrote but did not release.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.data import get_testdata_file

from tests.federation.wiretap import WireTap
from tests.ports import free_port
from tre import audit, committees, registry
from tre.audit.note import VerifierKey
from tre.audit.signing import get_signer
from tre.audit.verify import verify_bundle
from tre.auth.tokens import TokenIssuer
from tre.config import Settings
from tre.federation.hub import nodes as hub_nodes
from tre.federation.keys import hub_key, node_key
from tre.federation.node.config import join
from tre.federation.node.mapping import map_project
from tre.federation.signing import encode_public_key
from tre.images import catalog
from tre.jobs.paths import log_path, output_dir
from tre.store.db import init_db, make_engine, session_scope
from tre.store.federation_models import FedChild, FedNodeChild, FedResultFile
from tre.store.models import AuditEntry, Job

pytestmark = pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")

REPO = Path(__file__).resolve().parents[2]
AUDITED = REPO / "tests" / "federation" / "connect_audit.py"
IMAGE = "registry.tre.local/tre-job-cpu@sha256:" + "ab" * 32
IMAGE2 = "registry.tre.local/tre-job-cpu@sha256:" + "cd" * 32
# A log line the node's researcher screening lets through: it reaches the hub in the node's
# screened log (the TES FULL view, round 13). A hex run the screening withholds (encoded
# data) and a file never released must never reach the hub.
LOG_MARKER = "the screened log reaches the hub: LOGLINE 7F3A shown"
ENCODED_MARKER = hashlib.sha512(b"ENCODED-c0ffee-never-leaves").hexdigest()
RAW_MARKER = "RAWFILE-51be02-never-leaves"
# The markers appear in the code reversed (the code itself goes to the hub and the nodes);
# only what the job prints and writes holds them the right way round.
# A run waits while its node's dataset holds HOLD (the test removes it): a run the test
# kills must still be running when it is killed, however slow the machine. Before, the job
# slept 6 s, and on a loaded machine the test could see it "running" only after it had
# ended (or kill the node after it had), and then waited for a state that never came.
HOLD = ".hold-while-the-test-kills-the-node"
ANALYSIS = f"""
import pathlib, sys, time
time.sleep(float(sys.argv[1]))
held = time.monotonic()
while pathlib.Path("/data/{HOLD}").exists() and time.monotonic() - held < 600:
    time.sleep(0.1)
files = [p for p in pathlib.Path("/data").rglob("*.dcm") if p.is_file()]
print("{LOG_MARKER[::-1]}"[::-1], flush=True)
print("{ENCODED_MARKER[::-1]}"[::-1], flush=True)
pathlib.Path("/output/result.txt").write_text(f"images read: {{len(files)}}\\n")
if len(sys.argv) > 2:
    pathlib.Path("/output/raw.txt").write_text("{RAW_MARKER[::-1]}"[::-1])
"""
NODES = ("node-a", "node-b", "node-c")
DEADLINE_S = 150


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 90, every_s: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@dataclass
class Site:
    name: str
    home: Path
    port: int
    env: dict[str, str]
    settings: Settings
    proc: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def engine(self):  # type: ignore[no-untyped-def]
        return make_engine(self.settings.resolved_database_url)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRE_")}
    env.update(
        TRE_HOME=str(home),
        TRE_POLICIES_DIR=str(REPO / "policies"),
        TRE_SANDBOX_HOST_TOOLCHAIN="1",
        TRE_WORKER_POLL_S="0.1",
        TRE_WORKER_HEARTBEAT_S="0.5",
        TRE_WORKER_STALE_AFTER_S="3",
        TRE_FEDERATION_LEASE_S="4",
        TRE_FEDERATION_POLL_WAIT_S="1",
        TRE_FEDERATION_RETRY_S="0.3",
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


def start(site: Site, args: list[str], log: Path) -> None:
    with log.open("ab") as out:
        site.proc = subprocess.Popen(
            [sys.executable, *args], env=site.env, stdout=out, stderr=out, start_new_session=True
        )


def kill(site: Site) -> None:
    """SIGKILL the whole process group: API, worker, agent and any sandbox they started."""
    assert site.proc is not None
    try:
        os.killpg(site.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    site.proc.wait(timeout=20)


def _setup_node(tmp: Path, name: str, hub_url: str, hub_pub: str, approved: list[str]) -> Site:
    home, data = tmp / name / "home", tmp / name / "data"
    data.mkdir(parents=True)
    for f in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copyfile(get_testdata_file(f), data / f)
    settings = Settings(home=home, policies_dir=REPO / "policies", sandbox_host_toolchain=True)
    settings.ensure_dirs()
    site = Site(name, home, free_port(), _env(home), settings)
    engine = site.engine()
    init_db(engine)
    audit.configure(engine, settings.keys_dir)
    users = {"root": ["admin"], "alice": ["researcher"], "dac1": ["dac"], "dac2": ["dac"]}
    with session_scope(engine) as s:
        for user, roles in users.items():
            registry.create_user(s, "test", user, roles)
        registry.create_project(s, "root", "lung-local", "Lung (local)")
        registry.add_member(s, "root", "lung-local", "alice")
        registry.register_dataset(s, "root", "ct", "CT", data)
        for reviewer in ("dac1", "dac2"):  # the dataset's DAC committee (tre.committees)
            committees.assign(s, "root", "ct", reviewer, settings.resolved_policies_dir)
        registry.grant_access(s, "root", "lung-local", "ct", days=1)
        for ref in approved:
            catalog.approve(s, settings, "root", ref, "lung-local", external=True)
        map_project(s, "root", "fedlung", "lung-local", ["ct"])
    engine.dispose()
    join(settings, name, hub_url, hub_pub)
    issuer = TokenIssuer.from_settings(settings)
    site.tokens = {u: issuer.mint(u, r) for u, r in users.items()}
    return site


@dataclass
class Federation:
    hub: Site
    nodes: dict[str, Site]
    tap: WireTap
    connect_log: Path
    logs: Path
    researcher: str

    def hub_get(self, path: str) -> Any:
        resp = httpx.get(
            self.hub.url + path, headers={"Authorization": f"Bearer {self.researcher}"}, timeout=30
        )
        resp.raise_for_status()
        return resp.json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self.hub_get(f"/hub/v1/jobs/{job_id}")

    def child(self, job_id: str, node: str) -> dict[str, Any]:
        return next(c for c in self.job(job_id)["children"] if c["node"] == node)

    def start_node(self, name: str) -> None:
        site = self.nodes[name]
        start(
            site,
            ["-m", "tre.cli.main", "serve", "--node", "--port", str(site.port)],
            self.logs / f"{name}.log",
        )

    def dac_decide(self, name: str, vote: str) -> None:
        """Both DAC members of node ``name`` vote on its one open request (over its own API)."""
        site = self.nodes[name]

        def open_request() -> str | None:
            rows = httpx.get(
                f"{site.url}/api/v1/egress/requests",
                params={"state": "awaiting_review"},
                headers={"Authorization": f"Bearer {site.tokens['dac1']}"},
                timeout=30,
            ).json()
            return rows[0]["id"] if rows else None

        req = wait_for(f"an egress request at {name}", open_request)
        for member in ("dac1", "dac2"):
            resp = httpx.post(
                f"{site.url}/api/v1/egress/requests/{req}/votes",
                json={"vote": vote, "comment": "federated release review"},
                headers={"Authorization": f"Bearer {site.tokens[member]}"},
                timeout=30,
            )
            assert resp.status_code == 201, resp.text


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    logs = tmp_path / "logs"
    logs.mkdir()
    hub_home = tmp_path / "hub"
    hub_settings = Settings(home=hub_home, policies_dir=REPO / "policies")
    hub_settings.ensure_dirs()
    hub = Site("hub", hub_home, free_port(), _env(hub_home), hub_settings)
    tap = WireTap(hub.port)
    hub_url = f"http://127.0.0.1:{tap.port}"  # nodes reach the hub through the recording relay
    hub_pub = encode_public_key(hub_key(hub_settings))
    sites = {
        "node-a": _setup_node(tmp_path, "node-a", hub_url, hub_pub, [IMAGE, IMAGE2]),
        "node-b": _setup_node(tmp_path, "node-b", hub_url, hub_pub, [IMAGE, IMAGE2]),
        "node-c": _setup_node(tmp_path, "node-c", hub_url, hub_pub, [IMAGE]),  # not IMAGE2
    }
    engine = hub.engine()
    init_db(engine)
    audit.configure(engine, hub_settings.keys_dir)
    with session_scope(engine) as s:
        registry.create_user(s, "test", "root", ["admin"])
        registry.create_user(s, "test", "alice", ["researcher"])
        registry.create_user(s, "test", "aud", ["auditor"])
        for name, site in sites.items():
            audit_key = get_signer(site.settings.keys_dir).verifier_key.encode()
            hub_nodes.add_node(s, "root", name, encode_public_key(node_key(site.settings)), audit_key)
        hub_nodes.create_project(s, "root", "fedlung", "Federated lung", list(NODES))
        registry.add_member(s, "root", "fedlung", "alice")
    engine.dispose()
    researcher = TokenIssuer.from_settings(hub_settings).mint("alice", ["researcher"])
    connect_log = logs / "hub-connects.log"
    start(hub, [str(AUDITED), str(connect_log), "hub", "serve", "--port", str(hub.port)], logs / "hub.log")
    fed = Federation(hub, sites, tap, connect_log, logs, researcher)
    try:
        wait_for("the hub", lambda: httpx.get(hub.url + "/api/v1/me", timeout=5).status_code == 401)
        for name in NODES:
            fed.start_node(name)
        for name in NODES:
            wait_for(
                f"{name} online",
                lambda: httpx.get(sites[name].url + "/api/v1/me", timeout=5).status_code == 401,
            )
        yield fed
    finally:
        for site in (hub, *sites.values()):
            if site.proc is not None and site.proc.poll() is None:
                kill(site)
        tap.close()
        for log in sorted(logs.glob("*.log")):
            sys.stderr.write(f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}\n")


def cli(fed: Federation, *args: str, code_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = _env(fed.hub.home.parent / "researcher", TRE_API_URL=fed.hub.url, TRE_TOKEN=fed.researcher)
    return subprocess.run(
        [sys.executable, "-m", "tre.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=code_dir,
    )


def test_one_submission_each_node_deciding_for_itself(federation: Federation, tmp_path: Path) -> None:
    fed = federation
    code = tmp_path / "code"
    code.mkdir()
    (code / "analysis.py").write_text(ANALYSIS)

    # 1. Submitted once with the ordinary CLI against the hub; code travels by hash.
    done = cli(
        fed,
        "submit",
        "-p",
        "fedlung",
        "--image",
        IMAGE,
        "--code",
        str(code),
        "--",
        "python3",
        "analysis.py",
        "0",
    )
    assert done.returncode == 0, done.stderr
    job1 = done.stdout.split("submitted job ")[1].split()[0]
    for name in NODES:
        wait_for(f"{name} awaiting review", lambda: fed.child(job1, name)["state"] == "awaiting_review")
        fed.dac_decide(name, "approve")
    final = wait_for("job 1 complete", lambda: (j := fed.job(job1))["state"] == "complete" and j)
    assert {c["node"]: [f["name"] for f in c["files"]] for c in final["children"]} == {
        n: ["result.txt"] for n in NODES
    }

    # 2. Second job: node-c's admin never approved IMAGE2; node-b's DAC rejects; node-a is
    #    killed while the job runs (held there until then) and restarted.
    hold = fed.nodes["node-a"].home.parent / "data" / HOLD
    hold.touch()
    resp = httpx.post(
        fed.hub.url + "/api/v1/jobs",
        json={
            "project_id": "fedlung",
            "image": IMAGE2,
            "command": ["python3", "analysis.py", "0", "raw"],
            "code_hash": final["spec"]["code_hash"],
            "release": ["result.txt"],
        },
        headers={"Authorization": f"Bearer {fed.researcher}"},
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    job2 = resp.json()["id"]
    wait_for("node-c refuses", lambda: fed.child(job2, "node-c")["state"] == "refused")
    assert fed.child(job2, "node-c")["reason"] == "image_not_approved"
    wait_for("node-a running", lambda: fed.child(job2, "node-a")["state"] == "running")
    kill(fed.nodes["node-a"])
    hold.unlink()  # the run after the restart goes straight through
    wait_for("node-a offline", lambda: fed.child(job2, "node-a")["node_status"] == "offline", timeout_s=30)
    wait_for("node-b awaiting review", lambda: fed.child(job2, "node-b")["state"] == "awaiting_review")
    fed.dac_decide("node-b", "reject")
    wait_for("node-b refused", lambda: fed.child(job2, "node-b")["state"] == "refused")
    assert fed.child(job2, "node-b")["reason"] == "dac_rejected"
    # node-a is away: the others went on; nothing was released yet.
    assert fed.job(job2)["state"] == "failed"

    fed.start_node("node-a")
    wait_for("node-a back online", lambda: fed.child(job2, "node-a")["node_status"] == "online", timeout_s=60)
    wait_for(
        "node-a awaiting review",
        lambda: fed.child(job2, "node-a")["state"] == "awaiting_review",
        timeout_s=90,
    )
    fed.dac_decide("node-a", "approve")
    final2 = wait_for("job 2 partial", lambda: (j := fed.job(job2))["state"] == "partial" and j)
    by_node = {c["node"]: c for c in final2["children"]}
    assert [f["name"] for f in by_node["node-a"]["files"]] == ["result.txt"]
    assert by_node["node-b"]["files"] == [] and by_node["node-c"]["files"] == []

    shown = cli(fed, "hub", "job", "show", job2)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "partial" in lines[0]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["node-a", "online", "released"],
        ["node-b", "online", "refused"],
        ["node-c", "online", "refused"],
    ]
    assert "(dac_rejected)" in lines[2] and "(image_not_approved)" in lines[3]

    # 3. The researcher downloads per node, side by side, hashes verified by the CLI.
    out = tmp_path / "results"
    got = cli(fed, "hub", "results", job2, "-o", str(out))
    assert got.returncode == 0, got.stderr
    # It says what it did, not only the job's table.
    assert got.stdout.splitlines()[-1].startswith("downloaded 1 file from 1 node into "), got.stdout
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "job.json",
        "node-a/checkpoint.note",
        "node-a/disclosure.json",
        "node-a/result.txt",
    ]
    data = (out / "node-a" / "result.txt").read_bytes()
    assert data == b"images read: 2\n"
    assert hashlib.sha256(data).hexdigest() == by_node["node-a"]["files"][0]["sha256"]
    record = json.loads((out / "node-a" / "disclosure.json").read_text())
    assert (
        record["released"] is True and record["files"][0]["sha256"] == by_node["node-a"]["files"][0]["sha256"]
    )

    # 4. Nothing lost or duplicated: node-a kept one record of the child and ran it twice
    #    (the first run died with the node); the hub has one child per node.
    engine = fed.nodes["node-a"].engine()
    with session_scope(engine, read_only=True) as s:
        rows = s.query(FedNodeChild).filter(FedNodeChild.fed_job_id == job2).all()
        assert len(rows) == 1 and rows[0].attempts == 2 and rows[0].state == "released"
        local_job_id = rows[0].local_job_id
        states = sorted(j.state for j in s.query(Job).filter(Job.project_id == "lung-local").all())
        assert states == ["failed", "succeeded", "succeeded"]
    engine.dispose()
    engine = fed.hub.engine()
    with session_scope(engine, read_only=True) as s:
        assert s.query(FedChild).filter(FedChild.job_id == job2).count() == 3
        stored = {(f.child_id, f.name) for f in s.query(FedResultFile).all()}
        assert len(stored) == 4  # three from job 1, one from job 2
    engine.dispose()

    # 5. A federated search reaches every node through its agent; each answers for itself,
    #    under its own policy, and logs the query in its own audit log.
    resp = httpx.post(
        fed.hub.url + "/hub/v1/search",
        json={"modality": "CT"},
        headers={"Authorization": f"Bearer {fed.researcher}"},
        timeout=60,
    )
    assert resp.status_code == 201, resp.text
    search_id = resp.json()["id"]

    def answered() -> dict[str, Any] | None:
        view: dict[str, Any] = fed.hub_get(f"/hub/v1/search/{search_id}")
        return view if all(n["state"] != "waiting" for n in view["nodes"]) else None

    answers = wait_for("every node's answer", answered, timeout_s=30)
    assert sorted(n["node"] for n in answers["nodes"]) == list(NODES)
    # Each node holds one CT subject: under its policy's min_count, so withheld, never shown.
    for n in answers["nodes"]:
        assert n["state"] == "suppressed", n
        (counted,) = n["answer"]["datasets"]
        assert counted["subjects"] is None and counted["subjects_suppressed"] is True

    # Each node's own signed audit log records the query, from its agent, for the hub's alice.
    for name in NODES:
        with session_scope(fed.nodes[name].engine(), read_only=True) as s:
            logged = [
                json.loads(e.body)
                for e in s.query(AuditEntry).filter(AuditEntry.action == "catalogue.count_query").all()
            ]
        assert logged and all(e["actor"] == "federation-agent" for e in logged), logged
        assert "alice" in json.dumps(logged[0]["details"])
    searched = cli(fed, "hub", "search", "--modality", "CT", "--wait", "20")
    assert searched.returncode == 0, searched.stderr
    assert sorted(line.split()[:2] for line in searched.stdout.splitlines()) == [
        [n, "suppressed"] for n in NODES
    ]

    # The hub's own signed audit log holds the federation's story and verifies offline.
    auditor = {
        "Authorization": f"Bearer {TokenIssuer.from_settings(fed.hub.settings).mint('aud', ['auditor'])}"
    }
    bundle = httpx.get(fed.hub.url + "/api/v1/audit/export", headers=auditor, timeout=60)
    assert bundle.status_code == 200, bundle.text
    pinned = VerifierKey.parse(get_signer(fed.hub.settings.keys_dir).verifier_key.encode())
    assert verify_bundle(bundle.content, pinned).ok
    actions = {json.loads(line)["action"] for line in bundle.text.splitlines() if '"action"' in line}
    assert {"federation.job_submitted", "federation.child_state", "federation.results_received"} <= actions

    # 6. The hub never connected anywhere (the audit hook sees every connect of its process).
    assert fed.connect_log.exists()
    assert fed.connect_log.read_text() == ""
    # ...and the hook does catch connections: the same wrapper around a CLI call to a node.
    probe = fed.logs / "probe-connects.log"
    env = _env(
        tmp_path / "probe", TRE_API_URL=fed.nodes["node-b"].url, TRE_TOKEN=fed.nodes["node-b"].tokens["alice"]
    )
    subprocess.run(
        [sys.executable, str(AUDITED), str(probe), "whoami"],
        env=env,
        timeout=60,
        check=True,
        capture_output=True,
    )
    assert str(fed.nodes["node-b"].port) in probe.read_text()

    # 7. Nothing the job wrote but did not release, and nothing of its log, reached the hub:
    #    not on the wire, not in its database or files.
    #    (They were written: node-a keeps both in its own state directory.)
    node_a = fed.nodes["node-a"].settings
    with session_scope(fed.nodes["node-a"].engine(), read_only=True) as s:
        local = s.get(Job, local_job_id)
        assert local is not None and local.state == "succeeded"
        assert LOG_MARKER.encode() in log_path(node_a, local.id).read_bytes()
        assert ENCODED_MARKER.encode() in log_path(node_a, local.id).read_bytes()
        assert (output_dir(node_a, local.id) / "raw.txt").read_bytes() == RAW_MARKER.encode()
    wire = fed.tap.wire()
    assert b"/hub/v1/agent/" in wire and b"images read: 2" in wire  # the tap saw the traffic
    # Request lines (on a kept-alive connection the next one follows the last body directly).
    requests = re.findall(rb"(GET|POST|PUT|DELETE|PATCH|HEAD) (/\S*) HTTP/1\.1\r\n", bytes(fed.tap.to_hub))
    kinds = {re.sub(rb"[0-9a-f]{32,64}", b"ID", path).decode() for _, path in requests}
    assert kinds == {
        "/hub/v1/agent/poll",
        "/hub/v1/agent/code/ID",
        "/hub/v1/agent/children/ID/state",
        "/hub/v1/agent/children/ID/files/ID",
        "/hub/v1/agent/children/ID/log",
        "/hub/v1/agent/children/ID/release",
        "/hub/v1/agent/searches/ID/answer",
    }, kinds
    # The screened log did come (the line the screening passes, the run it withholds did not),
    # and the researcher reads it in the TES FULL view.
    full = fed.hub_get(f"/ga4gh/tes/v1/tasks/{job2}?view=FULL")
    (shown,) = [log for log in full["logs"] if log["metadata"]["tre.node"] == "node-a"]
    assert LOG_MARKER in shown["logs"][0]["stdout"] and "[tre] withheld" in shown["logs"][0]["stdout"]
    assert LOG_MARKER.encode() in wire
    for marker in (ENCODED_MARKER.encode(), RAW_MARKER.encode()):
        assert marker not in wire
        for path in fed.hub.home.rglob("*"):
            if path.is_file():
                assert marker not in path.read_bytes(), path

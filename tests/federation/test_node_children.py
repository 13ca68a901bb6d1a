"""A node's own decisions on the children it receives, on its real store (SQLite and
PostgreSQL): redeliveries never make a second job; unmapped projects, unapproved images and
non-members are refused with fixed reasons; a job lost with its worker is run once more."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from tests.worlds import IMAGE, WorldFactory
from tre import audit
from tre.federation.node import children
from tre.federation.node.mapping import map_project
from tre.federation.wire import ChildSpec, child_id
from tre.store.db import session_scope
from tre.store.federation_models import FedNodeChild
from tre.store.models import AuditEntry, Job


def spec(job_id: str = "f" * 32, **over: object) -> ChildSpec:
    body: dict[str, object] = {
        "child_id": child_id(job_id, "node-a"),
        "job_id": job_id,
        "project_id": "fedlung",
        "submitted_by": "alice",
        "image": IMAGE,
        "command": ["python3", "-c", "print(1)"],
        "cpu": 1,
        "memory_mb": 256,
        "time_limit_s": 30,
        "output_limit_mb": 16,
    }
    body.update(over)
    return ChildSpec.model_validate(body)


@pytest.fixture
def node(engine_any, settings, dicom_dir):  # type: ignore[no-untyped-def]
    audit.configure(engine_any, settings.keys_dir)
    with session_scope(engine_any) as s:
        make = WorldFactory(s)
        make.users({"root": ["admin"], "alice": ["researcher"], "mallory": ["researcher"]})
        make.project("lung", "Lung", ["alice"])
        make.dataset("ct", dicom_dir)
        make.grant("lung", "ct")
        make.approve_image("lung")
        map_project(s, "root", "fedlung", "lung", ["ct"])
    return engine_any


def _state(engine, cid: str) -> tuple[str, str, str | None]:  # type: ignore[no-untyped-def]
    with session_scope(engine, read_only=True) as s:
        row = s.get(FedNodeChild, cid)
        assert row is not None
        return row.state, row.reason, row.local_job_id


def test_a_redelivered_child_is_the_same_child_and_one_job(node, settings):  # type: ignore[no-untyped-def]
    child = spec()
    for _ in range(3):  # the hub offers it again after a lost acknowledgement
        with session_scope(node) as s:
            children.receive(s, child)
        with session_scope(node) as s:
            children.start(s, settings, child.child_id)
    state, reason, job_id = _state(node, child.child_id)
    assert (state, reason) == ("queued", "")
    with session_scope(node, read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1
        job = s.get(Job, job_id)
        assert job is not None and (job.project_id, job.submitted_by, job.dataset_ids) == (
            "lung",
            "alice",
            ["ct"],
        )
        received = s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "federation.child_received")
        )
        assert received == 1


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"project_id": "other-fed"}, "project_not_mapped"),
        ({"image": "registry.tre.local/x@sha256:" + "cd" * 32}, "image_not_approved"),
        ({"submitted_by": "mallory"}, "not_admitted"),  # a researcher here, not in the project
        ({"submitted_by": "nobody"}, "not_admitted"),  # not a user of this node at all
    ],
)
def test_each_node_refuses_by_its_own_rules_with_a_fixed_reason(node, settings, over, reason):  # type: ignore[no-untyped-def]
    child = spec(**over)
    with session_scope(node) as s:
        children.receive(s, child)
    with session_scope(node) as s:
        children.start(s, settings, child.child_id)
    assert _state(node, child.child_id) == ("refused", reason, None)
    with session_scope(node, read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_a_job_lost_with_its_worker_runs_once_more_then_fails(node, settings):  # type: ignore[no-untyped-def]
    from tre.jobs.worker import WORKER_LOST

    child = spec()
    with session_scope(node) as s:
        children.receive(s, child)
        children.start(s, settings, child.child_id)
    seen = []
    for _ in range(2):
        _, _, job_id = _state(node, child.child_id)
        seen.append(job_id)
        with session_scope(node) as s:
            job = s.get(Job, job_id)
            assert job is not None
            job.state, job.exit_code, job.reason = "failed", None, f"worker w1 {WORKER_LOST}; ..."
        with session_scope(node) as s:
            children.advance(s, settings, None, child.child_id)  # type: ignore[arg-type]
    assert len(set(seen)) == 2  # a second local job for the same child, then no third
    assert _state(node, child.child_id)[:2] == ("failed", "job_failed")


def test_under_code_review_only_approved_code_runs(node, settings, tmp_path):  # type: ignore[no-untyped-def]
    from tests.code.hostile import file, targz
    from tre.code.archive import CodeLimits
    from tre.code.service import record_upload
    from tre.code.store import CodeStore
    from tre.federation.node.mapping import approve_code

    archive = tmp_path / "code.tar.gz"
    archive.write_bytes(targz(file("analysis.py")))
    stored = CodeStore(settings).store_file(archive, CodeLimits())
    with session_scope(node) as s:
        record_upload(s, children.submitter(spec()), "lung", stored)
        map_project(s, "root", "fedlung", "lung", ["ct"], code_review=True)

    def run(job_id: str, code_hash: str | None) -> tuple[str, str, str | None]:
        child = spec(job_id, code_hash=code_hash)
        with session_scope(node) as s:
            children.receive(s, child)
            children.start(s, settings, child.child_id)
        return _state(node, child.child_id)

    assert run("1" * 32, None)[:2] == ("refused", "code_not_approved")  # a bare command line
    assert run("2" * 32, stored.sha256)[:2] == ("refused", "code_not_approved")
    with session_scope(node) as s:
        approve_code(s, "root", "fedlung", stored.sha256)
    state, reason, job_id = run("3" * 32, stored.sha256)
    assert (state, reason) == ("queued", "") and job_id is not None


def test_a_child_received_just_before_a_crash_is_started_by_the_restarted_agent(node, settings):  # type: ignore[no-untyped-def]
    """The agent keeps going with the hub away: it starts what it had received (and reports
    later); its state lives in the node's database, not in the process."""
    import socket

    from egress_review import federated
    from tre.federation.keys import hub_key
    from tre.federation.node.agent import NodeAgent
    from tre.federation.node.config import NodeConfig
    from tre.federation.node.search import answer_counts
    from tre.federation.signing import encode_public_key

    child = spec()
    with session_scope(node) as s:
        children.receive(s, child)  # ...and then the node stopped
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens here once the socket is closed
    config = NodeConfig("node-a", f"http://127.0.0.1:{closed}", encode_public_key(hub_key(settings)))
    agent = NodeAgent(settings, node, config, federated, answer_counts)
    try:
        agent.progress_once()
    finally:
        agent.hub.close()
    state, reason, job_id = _state(node, child.child_id)
    assert (state, reason) == ("queued", "") and job_id is not None
    with session_scope(node, read_only=True) as s:
        row = s.get(FedNodeChild, child.child_id)
        assert row is not None and row.reported == ""  # not acknowledged by the hub yet


def _child_whose_job_succeeded(node, settings, outputs: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    """A child started on the node whose job is marked succeeded with ``outputs`` (path,
    sha256; 10 bytes each) recorded, and no files behind them."""
    from tre.store.models import JobOutput

    child = spec()
    with session_scope(node) as s:
        children.receive(s, child)
        children.start(s, settings, child.child_id)
    _, _, job_id = _state(node, child.child_id)
    with session_scope(node) as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.state, job.exit_code, job.reason = "succeeded", 0, "exited with code 0"
        for path, sha256 in outputs:
            s.add(JobOutput(job_id=job_id, path=path, size=10, sha256=sha256))
    return child


def test_a_release_over_the_request_limits_is_refused_as_blocked(node, settings):  # type: ignore[no-untyped-def]
    """A child asking for every output of a job with more outputs than one egress request may
    hold (the default policy: 50) ends as blocked by the airlock, not as missing outputs."""
    from egress_review import federated

    outputs = [(f"series/{i:02d}.json", f"{i:064x}") for i in range(60)]
    child = _child_whose_job_succeeded(node, settings, outputs)
    with session_scope(node) as s:
        children.advance(s, settings, federated, child.child_id)  # type: ignore[arg-type]
    assert _state(node, child.child_id)[:2] == ("refused", "egress_blocked")


def test_a_release_refused_at_staging_is_audited_once_and_the_child_refused(node, settings):  # type: ignore[no-untyped-def]
    """The node agent catches the airlock's refusal (an output that is no longer the file the
    job recorded) and records the child refused in the same unit of work: the refusal's
    ``egress.stage_refused`` entry is written after it (`tre.store.db.note_refusals`), once."""
    from egress_review import federated

    child = _child_whose_job_succeeded(node, settings, [("table.csv", "ab" * 32)])  # no such file
    with session_scope(node) as s:
        children.advance(s, settings, federated, child.child_id)  # type: ignore[arg-type]
    assert _state(node, child.child_id)[:2] == ("refused", "not_admitted")
    with session_scope(node, read_only=True) as s:
        bodies = s.scalars(select(AuditEntry.body).where(AuditEntry.action == "egress.stage_refused")).all()
    assert [json.loads(b)["details"]["reason"] for b in bodies] == ["output-unavailable"]


class HostileHub:
    """Stands in for a hub that sends what the real hub never would (its own submissions are
    bounded as `JobIn`): a compromised or buggy hub. Records every call the agent makes."""

    def __init__(self, work: dict[str, object]) -> None:
        self.work = work
        self.calls: list[tuple[str, str, object]] = []

    def json(self, method: str, path: str, body: object = None) -> object:
        self.calls.append((method, path, body))
        return self.work if path.endswith("/poll") else {}

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "over",
    [
        {"submitted_by": "a" * 100_000},
        {"submitted_by": "Alice\u202e"},
        {"command": ["x"] * 100_000},
        {"image": "i" * 10_000},
        {"release": ["f" * 5000]},
        {"project_id": "../lung"},
    ],
    ids=["huge-user", "odd-user", "huge-command", "huge-image", "huge-release", "bad-project"],
)
def test_a_child_out_of_bounds_is_refused_unstored_and_the_rest_received(node, settings, over):  # type: ignore[no-untyped-def]
    """A node keeps a child's spec in its store and audit log (which never shrinks): one beyond
    a local submission's bounds is refused (`not_admitted`, reported to the hub) and never
    stored; the good child in the same answer is taken as usual."""
    from egress_review import federated
    from tre.federation.keys import hub_key
    from tre.federation.node.agent import NodeAgent
    from tre.federation.node.config import NodeConfig
    from tre.federation.node.search import answer_counts
    from tre.federation.signing import encode_public_key

    bad = spec("a" * 32).model_dump(mode="json") | over
    good = spec("b" * 32).model_dump(mode="json")
    hub = HostileHub({"children": [bad, good], "searches": []})
    config = NodeConfig("node-a", "http://127.0.0.1:9", encode_public_key(hub_key(settings)))
    agent = NodeAgent(settings, node, config, federated, answer_counts)
    agent.hub.close()
    agent.hub = hub  # type: ignore[assignment]
    agent.poll_once()
    with session_scope(node, read_only=True) as s:
        assert s.get(FedNodeChild, bad["child_id"]) is None
        details = " ".join(e.body for e in s.scalars(select(AuditEntry)))
        assert str(bad["child_id"]) not in details
    assert ("POST", f"/hub/v1/agent/children/{bad['child_id']}/state") in [c[:2] for c in hub.calls]
    refused = next(c[2] for c in hub.calls if c[1].endswith(f"{bad['child_id']}/state"))
    assert refused == {"state": "refused", "reason": "not_admitted"}
    state, reason, job_id = _state(node, str(good["child_id"]))
    assert (state, reason) == ("queued", "") and job_id is not None


def test_a_child_with_a_bad_id_is_dropped_without_a_call_built_from_it(node, settings):  # type: ignore[no-untyped-def]
    from egress_review import federated
    from tre.federation.keys import hub_key
    from tre.federation.node.agent import NodeAgent
    from tre.federation.node.config import NodeConfig
    from tre.federation.node.search import answer_counts
    from tre.federation.signing import encode_public_key

    bad = spec("a" * 32).model_dump(mode="json") | {"child_id": "../../admin"}
    hub = HostileHub({"children": [bad], "searches": []})
    config = NodeConfig("node-a", "http://127.0.0.1:9", encode_public_key(hub_key(settings)))
    agent = NodeAgent(settings, node, config, federated, answer_counts)
    agent.hub.close()
    agent.hub = hub  # type: ignore[assignment]
    agent.poll_once()
    assert [c[1] for c in hub.calls] == ["/hub/v1/agent/poll"]
    with session_scope(node, read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(FedNodeChild)) == 0


@pytest.mark.parametrize(
    ("final", "reason"), [("withdrawn", "release_withdrawn"), ("expired", "release_expired")]
)
def test_a_withdrawn_or_expired_release_is_refused_with_its_own_reason(node, settings, final, reason):  # type: ignore[no-untyped-def]
    """The release request of a child withdrawn on the node (`tre egress withdraw`), or expired
    there (no decision within its review time): the child ends as refused with its own fixed
    reason, not left awaiting review."""
    from egress_review import federated
    from tre.store.models import EgressRequest

    child = spec()
    with session_scope(node) as s:
        children.receive(s, child)
        children.start(s, settings, child.child_id)
    _, _, job_id = _state(node, child.child_id)
    with session_scope(node) as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.state, job.exit_code, job.reason = "succeeded", 0, "exited with code 0"
        req = EgressRequest(
            job_id=job_id,
            project_id=job.project_id,
            requested_by="alice",
            justification="federated",
            state=final,
            policy_name="default",
            policy_version="1",
            required_reviews=2,
        )
        s.add(req)
        s.flush()
        row = s.get(FedNodeChild, child.child_id)
        assert row is not None
        row.egress_request_id = req.id
    with session_scope(node) as s:
        children.advance(s, settings, federated, child.child_id)  # type: ignore[arg-type]
    assert _state(node, child.child_id)[:2] == ("refused", reason)


def test_a_child_not_addressed_to_this_node_is_dropped_and_audited(node, settings):  # type: ignore[no-untyped-def]
    """Round 12: a child whose id is not `child_id(job, this node)` (another node's child, or
    a hub reusing one child id for a second job) was taken, or silently counted as a
    redelivery of the first. It is dropped unstored, without a call, and audited."""
    from egress_review import federated
    from tre.federation.keys import hub_key
    from tre.federation.node.agent import NodeAgent
    from tre.federation.node.config import NodeConfig
    from tre.federation.node.search import answer_counts
    from tre.federation.signing import encode_public_key

    others = spec("b" * 32).model_dump(mode="json") | {"child_id": child_id("b" * 32, "node-b")}
    reused = spec("c" * 32).model_dump(mode="json") | {"child_id": child_id("d" * 32, "node-a")}
    mine = spec("e" * 32).model_dump(mode="json")
    hub = HostileHub({"children": [others, reused, mine], "searches": []})
    config = NodeConfig("node-a", "http://127.0.0.1:9", encode_public_key(hub_key(settings)))
    agent = NodeAgent(settings, node, config, federated, answer_counts)
    agent.hub.close()
    agent.hub = hub  # type: ignore[assignment]
    agent.poll_once()
    with session_scope(node, read_only=True) as s:
        assert list(s.scalars(select(FedNodeChild.child_id))) == [mine["child_id"]]
        bodies = [e.body for e in s.scalars(select(AuditEntry).order_by(AuditEntry.idx))]
    assert not [c for c in hub.calls if others["child_id"] in c[1] or reused["child_id"] in c[1]]
    dropped = [json.loads(b) for b in bodies if '"federation.child_misaddressed"' in b]
    assert [(d["details"]["child"], d["details"]["fed_job"]) for d in dropped] == [
        (others["child_id"], "b" * 32),
        (reused["child_id"], "c" * 32),
    ]


def test_a_child_cancelled_at_the_hub_cancels_its_local_job(node, settings):  # type: ignore[no-untyped-def]
    from egress_review import federated
    from tre.federation.keys import hub_key
    from tre.federation.node.agent import NodeAgent
    from tre.federation.node.config import NodeConfig
    from tre.federation.node.search import answer_counts
    from tre.federation.signing import encode_public_key

    queued, waiting = spec("1" * 32), spec("2" * 32)
    for child in (queued, waiting):
        with session_scope(node) as s:
            children.receive(s, child)
    with session_scope(node) as s:
        children.start(s, settings, queued.child_id)  # its local job is queued; `waiting` is not started
    never = child_id("3" * 32, "node-a")  # a child whose delivery was still pending
    hub = HostileHub({"children": [], "searches": [], "cancels": [queued.child_id, waiting.child_id, never]})
    config = NodeConfig("node-a", "http://127.0.0.1:9", encode_public_key(hub_key(settings)))
    agent = NodeAgent(settings, node, config, federated, answer_counts)
    agent.hub.close()
    agent.hub = hub  # type: ignore[assignment]
    agent.poll_once()
    agent.poll_once()  # told again until the hub sees it final: nothing new happens
    _, _, job_id = _state(node, queued.child_id)
    with session_scope(node, read_only=True) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.state == "cancelled"
        told = s.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "federation.child_cancel_requested")
        )
        assert told == 2
    with session_scope(node) as s:
        children.advance(s, settings, federated, queued.child_id)
    assert _state(node, queued.child_id)[:2] == ("failed", "job_cancelled")
    assert _state(node, waiting.child_id)[:2] == ("failed", "job_cancelled")
    sent = [c for c in hub.calls if c[1] == f"/hub/v1/agent/children/{never}/state"]
    assert sent and all(c[2] == {"state": "failed", "reason": "job_cancelled"} for c in sent)


def test_the_log_a_node_sends_is_the_submitters_screened_view_never_the_raw_log(node, settings):  # type: ignore[no-untyped-def]
    """Round 13: the hub's TES FULL view shows each node's log. What the agent sends is the
    log as the node's researcher screening shows the submitter (a line naming the data's
    patient withheld) and the exit code; nothing while the job runs, nothing for a child
    refused before it ran."""
    import pydicom
    from pydicom.data import get_testdata_file

    from egress_review import federated
    from tre.jobs.paths import log_path

    name = str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PatientName)
    child = spec()
    with session_scope(node) as s:
        children.receive(s, child)
        children.start(s, settings, child.child_id)
    _, _, job_id = _state(node, child.child_id)
    assert job_id is not None
    with session_scope(node) as s:  # queued: no log yet
        assert children.screened_log(s, settings, federated, child.child_id) is None
    raw = f"step 1 done\nname {name}\n".encode()
    path = log_path(settings, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    with session_scope(node) as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.state, job.exit_code = "failed", 3
    with session_scope(node) as s:
        shown = children.screened_log(s, settings, federated, child.child_id)
    assert shown is not None and shown.exit_code == 1  # a class: the job chose 3 (redteam14b)
    assert "step 1 done" in shown.log and name not in shown.log and "[tre] withheld" in shown.log
    refused = spec(job_id="e" * 32, image="registry.tre.local/other@sha256:" + "9" * 64)
    with session_scope(node) as s:
        children.receive(s, refused)
        children.start(s, settings, refused.child_id)
    with session_scope(node) as s:
        assert children.screened_log(s, settings, federated, refused.child_id) is None

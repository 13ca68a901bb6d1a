"""The real py-tes client against a live hub: a TES task becomes a federated job (its inline
inputs the code archive a node fetches by hash), its state sums up the nodes'; a task that
names a dataset is refused, since datasets are each node's choice."""

from __future__ import annotations

import hashlib

import pytest
import requests
import tes

from tests.federation.hubkit import node_identity
from tre import registry
from tre.federation.hub import nodes
from tre.federation.hub.app import create_hub_app
from tre.federation.keys import hub_key
from tre.federation.node.client import HubClient
from tre.federation.node.config import NodeConfig
from tre.federation.signing import encode_public_key
from tre.server import BackgroundServer
from tre.store.db import session_scope

IMAGE = "registry.tre.local/tre-job-cpu@sha256:" + "ab" * 32
CODE = "print('hello from a node')\n"


def task(**extra_inputs: object) -> tes.Task:
    inputs = [tes.Input(path="/code/run.py", content=CODE)]
    if extra_inputs:
        inputs.append(tes.Input(url="tre://dataset/ct", path="/data", type="DIRECTORY"))
    return tes.Task(
        name="federated",
        inputs=inputs,
        executors=[tes.Executor(image=IMAGE, command=["python3", "run.py"], workdir="/code")],
        tags={"Project": "fedlung"},
    )


def test_a_tes_task_is_a_federated_job(settings, engine, token_for, tmp_path):  # type: ignore[no-untyped-def]
    node = node_identity(tmp_path, "node-a")
    app = create_hub_app(settings, engine)
    with session_scope(engine) as s:
        registry.create_user(s, "test", "alice", ["researcher"])
        nodes.add_node(s, "root", node.name, node.public_key, node.audit_key)
        nodes.create_project(s, "root", "fedlung", "Federated lung", ["node-a"])
        registry.add_member(s, "root", "fedlung", "alice")
    with BackgroundServer(app) as server:
        cli = tes.HTTPClient(server.url, token=token_for("alice", "researcher"), timeout=30)
        assert cli.get_service_info().type == {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"}
        with pytest.raises(requests.HTTPError):
            cli.create_task(task(dataset=True))
        task_id = cli.create_task(task())
        agent = HubClient(NodeConfig("node-a", server.url, encode_public_key(hub_key(settings))), node.key)
        try:
            work = agent.json("POST", "/hub/v1/agent/poll", {"wait_s": 5})
            (child,) = work["children"]
            assert child["job_id"] == task_id and child["command"][-2:] == ["python3", "run.py"]
            archive = agent.request("GET", f"/hub/v1/agent/code/{child['code_hash']}")
            assert hashlib.sha256(archive).hexdigest() == child["code_hash"]
        finally:
            agent.close()
        shown = cli.get_task(task_id, "MINIMAL")
        assert shown.state == "RUNNING"
        assert shown.tags["tre.node.node-a"] == "pending" and shown.tags["tre.federation.state"] == "running"

"""The agent's client against a real hub server: it acts only on answers signed by the
pinned hub key. And the federation CLI's errors: one line, non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.federation.hubkit import node_identity
from tre import registry
from tre.federation.hub import nodes
from tre.federation.hub.app import create_hub_app
from tre.federation.keys import hub_key
from tre.federation.node.client import HubClient, HubError
from tre.federation.node.config import NodeConfig
from tre.federation.signing import encode_public_key
from tre.server import BackgroundServer
from tre.store.db import session_scope

REPO = Path(__file__).resolve().parents[2]


def test_the_agent_acts_only_on_answers_signed_by_the_pinned_hub_key(settings, engine, tmp_path):  # type: ignore[no-untyped-def]
    node = node_identity(tmp_path, "node-a")
    app = create_hub_app(settings, engine)
    with session_scope(engine) as s:
        registry.create_user(s, "test", "root", ["admin"])
        nodes.add_node(s, "root", node.name, node.public_key, node.audit_key)
    with BackgroundServer(app) as server:
        good = HubClient(NodeConfig("node-a", server.url, encode_public_key(hub_key(settings))), node.key)
        assert good.json("POST", "/hub/v1/agent/poll", {"wait_s": 0}) == {
            "children": [],
            "searches": [],
            "cancels": [],
        }
        impostor = encode_public_key(Ed25519PrivateKey.generate())
        pinned_other = HubClient(NodeConfig("node-a", server.url, impostor), node.key)
        with pytest.raises(HubError, match="not signed by the pinned key"):
            pinned_other.json("POST", "/hub/v1/agent/poll", {"wait_s": 0})
        unregistered = HubClient(
            NodeConfig("node-a", server.url, encode_public_key(hub_key(settings))),
            Ed25519PrivateKey.generate(),
        )
        with pytest.raises(HubError, match="HTTP 401"):
            unregistered.json("POST", "/hub/v1/agent/poll", {"wait_s": 0})
        for client in (good, pinned_other, unregistered):
            client.close()


def tre(settings, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "TRE_HOME": str(settings.home), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "tre.cli.main", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["node", "join", "--name", "a", "--hub", "ftp://hub", "--hub-key", "ed25519:AAAA"],
            "not an http(s) address",
        ),
        (["node", "join", "--name", "a", "--hub", "http://hub", "--hub-key", "rsa:xyz"], "hub key"),
        (["node", "map", "fedlung", "--project", "nope"], "nope"),
        (["node", "agent"], "tre node join"),
        (["hub", "node", "add", "a", "--key", "ed25519:AAAA", "--audit-key", "x"], "node key"),
        (["hub", "project", "create", "fed", "--nodes", "ghost"], "no node 'ghost'"),
        (["hub", "node", "revoke", "ghost"], "no node 'ghost'"),
    ],
)
def test_federation_cli_errors_are_one_line(settings, args, says):  # type: ignore[no-untyped-def]
    done = tre(settings, *args)
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_node_map_turns_code_review_on_and_off_as_docs_federation_says(settings, engine):  # type: ignore[no-untyped-def]
    """docs/federation.md: `tre node map … --code-review` makes the node run only code its admin
    approved; mapping again without it turns the review off."""
    from tre.store.federation_models import FedNodeProject

    with session_scope(engine) as s:
        registry.create_project(s, "root", "lung", "Lung")
    done = tre(settings, "node", "map", "fedlung", "--project", "lung", "--code-review")
    assert done.returncode == 0, done.stderr
    assert "under code review" in done.stdout
    with session_scope(engine) as s:
        assert s.get(FedNodeProject, "fedlung").code_review is True  # type: ignore[union-attr]
    done = tre(settings, "node", "map", "fedlung", "--project", "lung")
    assert done.returncode == 0, done.stderr
    with session_scope(engine) as s:
        assert s.get(FedNodeProject, "fedlung").code_review is False  # type: ignore[union-attr]


def test_hub_node_revoke_from_the_cli(settings, engine, tmp_path):  # type: ignore[no-untyped-def]
    ident = node_identity(tmp_path, "node-r")
    done = tre(
        settings, "hub", "node", "add", "node-r", "--key", ident.public_key, "--audit-key", ident.audit_key
    )
    assert done.returncode == 0, done.stderr
    done = tre(settings, "hub", "node", "revoke", "node-r")
    assert done.returncode == 0, done.stderr
    assert "revoked" in done.stdout
    listed = tre(settings, "hub", "node", "list")
    assert listed.stdout.split()[:2] == ["node-r", "revoked"], listed.stdout
    again = tre(settings, "hub", "node", "revoke", "node-r")
    assert again.returncode == 1 and again.stderr.strip() == "error: node 'node-r' was already revoked"


def test_tre_submit_with_code_at_the_hub_as_docs_federation_says(settings, engine, tmp_path, token_for):  # type: ignore[no-untyped-def]
    """Round 20 (newcomer, docs/federation.md's researcher line `tre submit -p fedlung --image
    ... --code . -- python3 analysis.py` against the hub): the CLI first asks admission at
    `POST /api/v1/jobs/check` (round 19), a route the hub lacked, so every `--code` submission
    at a hub ended with "no such API route". A refusal there names why, before any upload."""
    node = node_identity(tmp_path, "node-a")
    app = create_hub_app(settings, engine)
    with session_scope(engine) as s:
        registry.create_user(s, "test", "root", ["admin"])
        registry.create_user(s, "alice", "alice", ["researcher"])
        nodes.add_node(s, "root", node.name, node.public_key, node.audit_key)
        nodes.create_project(s, "root", "fedlung", "Federated lung", ["node-a"])
        registry.add_member(s, "root", "fedlung", "alice")
    code = tmp_path / "code"
    code.mkdir()
    (code / "analysis.py").write_text("print('counts')\n")
    image = "registry.tre.local/tre-job-cpu@sha256:" + "ab" * 32
    with BackgroundServer(app) as server:
        env = {
            **os.environ,
            "TRE_HOME": str(tmp_path / "client"),
            "TRE_API_URL": server.url,
            "TRE_TOKEN": token_for("alice", "researcher"),
            "PYTHONPATH": str(REPO),
        }

        def run(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "tre.cli.main", *argv],
                env=env,
                cwd=code,
                capture_output=True,
                text=True,
                timeout=120,
            )

        def submit(project: str) -> subprocess.CompletedProcess[str]:
            argv = ["submit", "-p", project, "--image", image, "--code", ".", "--", "python3", "analysis.py"]
            return subprocess.run(
                [sys.executable, "-m", "tre.cli.main", *argv],
                env=env,
                cwd=code,
                capture_output=True,
                text=True,
                timeout=120,
            )

        done = submit("fedlung")
        assert done.returncode == 0, done.stderr
        assert "submitted job" in done.stdout and done.stderr == ""
        refused = submit("lung-elsewhere")
        assert refused.returncode == 1 and "not a member of project 'lung-elsewhere'" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and "uploaded" not in refused.stdout

        # A single tre's commands at the hub (the README's researcher lines: `--wait`, `tre
        # jobs`, `tre logs`) reach routes it has not: said in one line with what to use there,
        # not "no such API route" / "GET is not allowed here; allowed: POST".
        for argv in (
            ("submit", "-p", "fedlung", "--image", image, "--wait", "--", "python3", "analysis.py"),
            ("jobs",),
            ("logs", "0" * 32),
            ("outputs", "0" * 32),
        ):
            answered = run(*argv)
            assert answered.returncode == 1, (argv, answered.stdout)
            line = answered.stderr.strip()
            assert len(line.splitlines()) == 1 and "Traceback" not in answered.stderr, (argv, line)
            assert "federation hub" in line and "tre hub job show JOB" in line, (argv, line)

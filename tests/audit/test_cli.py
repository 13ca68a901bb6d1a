"""`tre audit ...` commands: offline verify, and search/export/checkpoint/prove against a live API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from tests.audit.conftest import export_bytes
from tests.ports import free_port as _free_port
from tre.audit import AuditEvent, record_events
from tre.audit.api import router
from tre.audit.merkle import leaf_hash
from tre.audit.signing import AuditSigner, configure
from tre.cli.audit import app as audit_app
from tre.cli.client import CliError
from tre.config import Settings, reset_settings_cache
from tre.store.db import session_scope
from tre.store.models import AuditEntry

runner = CliRunner()


def seed(engine: Engine, n: int, actor: str = "alice") -> None:
    with session_scope(engine) as s:
        record_events(
            s, [AuditEvent(actor, "dataset.read", project_id="p1", dataset_id=f"d{i}") for i in range(n)]
        )


def test_verify_offline(engine: Engine, settings: Settings, signer: AuditSigner, tmp_path: Path) -> None:
    configure(engine, settings.keys_dir)
    seed(engine, 6)
    bundle = tmp_path / "b.jsonl"
    bundle.write_bytes(export_bytes(engine, signer))
    key = signer.verifier_key.encode()
    ok = runner.invoke(audit_app, ["verify", str(bundle), "--key", key])
    assert ok.exit_code == 0, ok.output
    assert "OK: 6 entries verified" in ok.output

    lines = bundle.read_bytes().split(b"\n")
    lines[2], lines[3] = lines[3], lines[2]
    bundle.write_bytes(b"\n".join(lines))
    bad = runner.invoke(audit_app, ["verify", str(bundle), "--key", key])
    assert bad.exit_code == 1
    assert isinstance(bad.exception, CliError) and "first bad index 1" in str(bad.exception)


@pytest.fixture
def live(
    app: FastAPI,
    engine: Engine,
    settings: Settings,
    make_user: Callable[..., object],
    token_for: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The real app on a real port; the CLI reaches it through ApiClient like a user would."""
    if not any(getattr(r, "path", "").startswith("/api/v1/audit") for r in app.routes):
        app.include_router(router)
    configure(engine, settings.keys_dir)
    with session_scope(engine) as s:
        make_user(s, "audrey", "auditor")
    seed(engine, 4)
    seed(engine, 2, actor="bob")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "API did not start"
        time.sleep(0.05)
    monkeypatch.setenv("TRE_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TRE_TOKEN", token_for("audrey", "auditor"))
    reset_settings_cache()
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_search_export_and_verify(live: str, tmp_path: Path, signer: AuditSigner) -> None:
    res = runner.invoke(audit_app, ["search", "--user", "bob", "--json"])
    assert res.exit_code == 0, res.output
    assert res.output.count('"actor": "bob"') == 2 and "alice" not in res.output
    res = runner.invoke(audit_app, ["search", "--dataset", "d1", "--project", "p1"])
    # Not a terminal: a header line and one tab-separated row per entry, ids whole.
    rows = res.output.strip().splitlines()
    assert res.exit_code == 0 and rows[0].startswith("idx\t") and len(rows) == 3, res.output
    assert all("\tdataset.read\tp1\td1\t" in row for row in rows[1:]), res.output

    out = tmp_path / "audit.jsonl"
    res = runner.invoke(audit_app, ["export", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(audit_app, ["verify", str(out), "--key", signer.verifier_key.encode()])
    # 6 seeded entries, the first use of the auditor's token and her own 2 searches
    # (recorded: auditors are accountable too).
    assert res.exit_code == 0 and "OK: 9 entries verified" in res.output, res.output
    lines = out.read_text().splitlines()
    assert sum('"action":"audit.search","actor":"audrey"' in line for line in lines) == 2
    assert sum('"action":"auth.token_used","actor":"audrey"' in line for line in lines) == 1


def test_checkpoint_pins_and_catches_a_fork(live: str, engine: Engine, signer: AuditSigner) -> None:
    first = runner.invoke(audit_app, ["checkpoint"])
    assert first.exit_code == 0, first.output
    assert "7 entries" in first.output and "first pin" in first.output  # 6 + the token's first use
    seed(engine, 3)
    again = runner.invoke(audit_app, ["checkpoint"])
    assert again.exit_code == 0 and "consistent with the pinned size 7" in again.output, again.output
    proved = runner.invoke(audit_app, ["prove", "4"])
    assert proved.exit_code == 0 and "entry 4 (dataset.read by bob at " in proved.output, proved.output
    # --json: the same checks, the result as one JSON document for scripts.
    size = int(again.output.split("checkpoint OK: ")[1].split()[0])
    as_json = runner.invoke(audit_app, ["checkpoint", "--json"])
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.output)
    assert doc["tree_size"] >= size and doc["previous_tree_size"] == size and doc["first_pin"] is False
    assert len(bytes.fromhex(doc["root_hash"])) == 32 and doc["key"] == signer.verifier_key.encode()
    proved_json = runner.invoke(audit_app, ["prove", "4", "--json"])
    assert proved_json.exit_code == 0, proved_json.output
    proof = json.loads(proved_json.output)
    assert proof["index"] == 4 and proof["tree_size"] == doc["tree_size"]
    assert proof["root_hash"] == doc["root_hash"]
    assert (proof["entry"]["idx"], proof["entry"]["action"], proof["entry"]["actor"]) == (
        4,
        "dataset.read",
        "bob",
    )

    with session_scope(engine) as s:  # the server's operator quietly rewrites entry 1
        row = s.scalar(select(AuditEntry).where(AuditEntry.idx == 1))
        assert row is not None
        row.body = row.body.replace('"d1"', '"d7"')
        row.leaf_hash = leaf_hash(row.body.encode())
    seed(engine, 1)
    forked = runner.invoke(audit_app, ["checkpoint"])
    assert forked.exit_code == 1
    assert isinstance(forked.exception, CliError) and "FORK" in str(forked.exception)
    bad = runner.invoke(audit_app, ["prove", "1"])
    assert isinstance(bad.exception, CliError) and "NOT proven" in str(bad.exception)


def test_live_database_edits_caught_as_the_readme_says(live: str, engine: Engine, tmp_path: Path) -> None:
    """As README says: `tre audit public-key > log.vkey`, export, `tre audit verify B --key log.vkey`."""
    key = runner.invoke(audit_app, ["public-key"])
    assert key.exit_code == 0
    vkey = tmp_path / "log.vkey"
    vkey.write_text(key.output)
    bundle = tmp_path / "bundle.jsonl"
    assert runner.invoke(audit_app, ["export", str(bundle)]).exit_code == 0
    ok = runner.invoke(audit_app, ["verify", str(bundle), "--key", str(vkey)])
    assert ok.exit_code == 0, ok.output

    with session_scope(engine) as s:  # an insider edits one entry in the live database
        row = s.get(AuditEntry, 2)
        assert row is not None
        row.body = row.body.replace('"actor":"alice"', '"actor":"carol"')
    assert runner.invoke(audit_app, ["export", str(bundle)]).exit_code == 0
    bad = runner.invoke(audit_app, ["verify", str(bundle), "--key", str(vkey)])
    assert bad.exit_code == 1 and "first bad index 2" in str(bad.exception), bad.output

    with session_scope(engine) as s:  # ... and deletes the newest row: the server fails closed
        top = s.scalar(select(AuditEntry).order_by(AuditEntry.idx.desc()).limit(1))
        s.delete(top)
    res = runner.invoke(audit_app, ["export", str(tmp_path / "again.jsonl")])
    assert res.exit_code == 1 and "audit log damaged" in str(res.exception), res.output
    res = runner.invoke(audit_app, ["checkpoint", "--key", str(vkey)])
    assert res.exit_code == 1 and "audit log damaged" in str(res.exception), res.output


def test_an_older_bundle_after_a_newer_pin_says_what_to_do(
    live: str, engine: Engine, tmp_path: Path, signer: AuditSigner
) -> None:
    """The README's auditor lines in order (export and verify, then checkpoint), and the first
    bundle verified again: it fails, rightly (it is shorter than a tree the auditor saw, as a
    truncated log is), but said only "log truncated", not that a newer export settles it."""
    old = tmp_path / "bundle.jsonl"
    key = signer.verifier_key.encode()
    assert runner.invoke(audit_app, ["export", str(old)]).exit_code == 0
    first = runner.invoke(audit_app, ["verify", str(old), "--key", key])
    assert first.exit_code == 0, first.output
    seed(engine, 2)
    assert runner.invoke(audit_app, ["checkpoint"]).exit_code == 0
    again = runner.invoke(audit_app, ["verify", str(old)])
    assert again.exit_code == 1
    said = str(again.exception)
    assert "log truncated: you saw a signed tree of" in said, said
    assert (
        "export a newer bundle (tre audit export); if a new export is still shorter, the log was truncated"
        in said
    )
    new = tmp_path / "newer.jsonl"
    assert runner.invoke(audit_app, ["export", str(new)]).exit_code == 0
    assert runner.invoke(audit_app, ["verify", str(new)]).exit_code == 0


def test_a_search_for_an_action_no_entry_has_says_so(live: str) -> None:
    """`--action dataset.reads` (misspelt) answered an empty table and nothing else, which an
    auditor reads as "no job read a dataset". Failed before: no warning."""
    res = runner.invoke(audit_app, ["search", "--action", "dataset.reads"])
    assert res.exit_code == 0, res.output
    said = "warning: no entry in the log has action 'dataset.reads'; did you mean 'dataset.read'?"
    assert said in res.stderr, res.output
    # An action the log has, filtered out by another criterion: empty, and no warning.
    res = runner.invoke(audit_app, ["search", "--action", "dataset.read", "--user", "nobody"])
    assert res.exit_code == 0 and "warning" not in res.stderr, res.output
    # Nothing near: said without a guess.
    res = runner.invoke(audit_app, ["search", "--action", "zz", "--json"])
    assert res.exit_code == 0 and res.stdout == ""
    assert res.stderr.strip() == "warning: no entry in the log has action 'zz'"

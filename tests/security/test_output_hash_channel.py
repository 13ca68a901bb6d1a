"""The output-hash channel: a researcher never reads an unreleased output's SHA-256.

The researcher wrote the job, so they know each output's template: shown its SHA-256 they
could try every value of the secret part offline (a birth date, an MRN). Every view a
researcher has of the outputs (the listing, an egress request, the disclosure record of a
rejected request, the TES task, `tre outputs`) carries a keyed handle instead; staff see the
real hash, and so does the requester once the files are released.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.egress.test_workflow_support import SAFE_CSV, seed_world, with_egress_routes
from tests.worlds import WorldFactory
from tre.jobs.output_handles import HANDLE_KEY_FILENAME, handle_key, output_handle
from tre.store.models import TesTask

BASE = "/api/v1/egress/requests"
# Low-entropy secrets: ~25 and ~23 bits, found by brute force from their hashes in seconds.
SECRETS = {"secret/birth.txt": b"born 1961-03-07\n", "secret/mrn.txt": b"MRN 0048213\n"}
OUTPUTS = {"tables/summary.csv": SAFE_CSV, **SECRETS}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leaks(text: str) -> list[str]:
    """The real hashes (or the old placeholders' 16-digit prefixes) of the secrets in ``text``."""
    found = []
    for data in SECRETS.values():
        hexdigest = _digest(data)
        if hexdigest[:16] in text:
            found.append(hexdigest)
    return found


@pytest.fixture
def client(app, app_client, esettings):  # type: ignore[no-untyped-def]
    with_egress_routes(app)
    return app_client


@pytest.fixture
def world(db, esettings):  # type: ignore[no-untyped-def]
    with db.begin() as s:
        world = seed_world(s, esettings, dict(OUTPUTS))
        s.add(TesTask(job_id=world.job_id, name="hash-channel"))
    return world


@pytest.fixture
def auth(token_for):  # type: ignore[no-untyped-def]
    def _h(user: str, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(user, *roles)}"}

    return _h


def test_a_researcher_sees_handles_staff_see_hashes_release_shows_them(  # type: ignore[no-untyped-def]
    client, auth, world, db, esettings
) -> None:
    alice = auth(world.researcher, "researcher")
    key = handle_key(esettings.keys_dir)
    key_file = esettings.keys_dir / HANDLE_KEY_FILENAME
    assert key_file.stat().st_mode & 0o777 == 0o600

    mine = client.get(f"/api/v1/jobs/{world.job_id}/outputs", headers=alice)
    assert mine.status_code == 200 and not _leaks(mine.text)
    assert all(o["sha256_keyed"] for o in mine.json())
    staff = client.get(f"/api/v1/jobs/{world.job_id}/outputs", headers=auth("audrey", "auditor")).json()
    assert {o["sha256"] for o in staff} == {_digest(d) for d in OUTPUTS.values()}
    assert not any(o["sha256_keyed"] for o in staff)
    # The same indexes, each hash's handle in its place, in the order of the handles.
    assert [(o["index"], o["sha256"]) for o in mine.json()] == [
        (o["index"], output_handle(key, world.job_id, o["sha256"])) for o in staff
    ]
    assert [o["sha256"] for o in mine.json()] == sorted(o["sha256"] for o in mine.json())
    handle = {o["path"]: o["sha256"] for o in mine.json()}

    tes = client.get(f"/ga4gh/tes/v1/tasks/{world.job_id}", params={"view": "FULL"}, headers=alice)
    assert tes.status_code == 200 and not _leaks(tes.text)

    # By a real hash the researcher was never shown: refused exactly like an unknown handle
    # (accepting it would answer "does the job hold this content?").
    def ask(name: str) -> dict[str, object]:
        r = client.post(
            BASE, headers=alice, json={"job_id": world.job_id, "files": [name], "justification": "x"}
        )
        assert r.status_code == 422, r.text
        return {k: v for k, v in r.json().items() if k != "instance"}

    secret_hash = _digest(SECRETS["secret/mrn.txt"])
    assert ask(f"sha256:{secret_hash}") == ask(f"sha256:{'ab' * 32}")

    # By the handle: the request opens, and nothing in it shows the real hash.
    r = client.post(
        BASE,
        headers=alice,
        json={
            "job_id": world.job_id,
            "files": [f"sha256:{handle['secret/mrn.txt']}", f"sha256:{handle['secret/birth.txt']}"],
            "justification": "two notes",
        },
    )
    assert r.status_code == 201, r.text
    secret_req = r.json()
    assert {f["path"] for f in secret_req["files"]} == set(SECRETS)
    assert all(f["sha256_keyed"] for f in secret_req["files"]) and not _leaks(r.text)
    listing = client.get(BASE, headers=alice)
    assert listing.status_code == 200 and not _leaks(listing.text)
    seen_by_dac = client.get(f"{BASE}/{secret_req['id']}", headers=auth("dana", "dac")).json()
    assert {f["sha256"] for f in seen_by_dac["files"]} == {_digest(d) for d in SECRETS.values()}
    if secret_req["state"] == "awaiting_review":  # not blocked by the checks: the DAC rejects it
        for reviewer in world.reviewers[:2]:
            v = client.post(
                f"{BASE}/{secret_req['id']}/votes", headers=auth(reviewer, "dac"), json={"vote": "reject"}
            )
            assert v.status_code == 201, v.text
    view = client.get(f"{BASE}/{secret_req['id']}", headers=alice)
    assert view.json()["state"] in ("blocked", "rejected") and not _leaks(view.text)
    record = client.get(f"{BASE}/{secret_req['id']}/disclosure", headers=alice)
    assert record.status_code == 200 and not _leaks(record.text)
    assert record.json()["hashes_keyed"] is True
    assert {f["sha256"] for f in record.json()["files"]} == {handle[p] for p in SECRETS}
    full = client.get(f"{BASE}/{secret_req['id']}/disclosure", headers=auth("audrey", "auditor")).json()
    assert {f["sha256"] for f in full["files"]} == {_digest(d) for d in SECRETS.values()}

    # Approved: the requester sees the released file's real hash (the download carries it).
    r = client.post(
        BASE,
        headers=alice,
        json={
            "job_id": world.job_id,
            "files": [f"sha256:{handle['tables/summary.csv']}"],
            "justification": "t",
        },
    )
    assert r.status_code == 201 and r.json()["files"][0]["sha256"] == handle["tables/summary.csv"]
    rid = r.json()["id"]
    for reviewer in world.reviewers[:2]:
        client.post(f"{BASE}/{rid}/votes", headers=auth(reviewer, "dac"), json={"vote": "approve"})
    released = client.get(f"{BASE}/{rid}", headers=alice).json()
    assert released["state"] == "approved", released
    assert released["files"][0]["sha256"] == _digest(SAFE_CSV) and not released["files"][0]["sha256_keyed"]
    record = client.get(f"{BASE}/{rid}/disclosure", headers=alice).json()
    assert record["files"][0]["sha256"] == _digest(SAFE_CSV) and "hashes_keyed" not in record
    got = client.get(f"{BASE}/{rid}/files/{released['files'][0]['id']}", headers=alice)
    assert got.status_code == 200 and got.headers["x-content-sha256"] == _digest(SAFE_CSV)


def test_the_same_content_has_a_different_handle_in_another_job(  # type: ignore[no-untyped-def]
    client, auth, world, db, esettings
) -> None:
    with db.begin() as s:
        other = WorldFactory(s).finished_job(
            esettings, world.project_id, world.researcher, [world.dataset_id], dict(OUTPUTS)
        )
    alice = auth(world.researcher, "researcher")
    first = client.get(f"/api/v1/jobs/{world.job_id}/outputs", headers=alice).json()
    second = client.get(f"/api/v1/jobs/{other}/outputs", headers=alice).json()
    assert len(first) == len(second) == 3
    assert not {o["sha256"] for o in first} & {o["sha256"] for o in second}
    # A handle of one job names nothing in the other.
    r = client.post(
        BASE,
        headers=alice,
        json={"job_id": other, "files": [f"sha256:{first[0]['sha256']}"], "justification": "x"},
    )
    assert r.status_code == 422 and "not-a-job-output" in r.json()["type"]
    # Stable: the same handles on a second listing, and from a fresh read of the key file.
    assert client.get(f"/api/v1/jobs/{world.job_id}/outputs", headers=alice).json() == first
    key = bytes.fromhex((esettings.keys_dir / HANDLE_KEY_FILENAME).read_text().strip())
    assert {o["sha256"] for o in first} == {
        output_handle(key, world.job_id, _digest(d)) for d in OUTPUTS.values()
    }


def test_tre_outputs_prints_handles_to_a_researcher(  # type: ignore[no-untyped-def]
    app, world, esettings, token_for
) -> None:
    from tests.egress.test_workflow_support import LiveServer

    with LiveServer(with_egress_routes(app)) as live:
        env = {k: v for k, v in os.environ.items() if k != "TRE_TOKEN"}
        env.update(
            TRE_HOME=str(esettings.home),
            TRE_API_URL=live.url,
            TRE_TOKEN=token_for(world.researcher, "researcher"),
        )
        done = subprocess.run(
            [sys.executable, "-m", "tre.cli.main", "outputs", world.job_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0].split("\t")
    assert header[-1] == "handle" and not _leaks(done.stdout)
    key = handle_key(esettings.keys_dir)
    assert output_handle(key, world.job_id, _digest(SECRETS["secret/mrn.txt"])) in done.stdout

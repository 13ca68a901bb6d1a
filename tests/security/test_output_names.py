"""Output file names are a channel and are screened like the log (issue 17, item 4).

220 output names once carried the patient's name and a whole CT slice's pixels through
`tre outputs` / `GET /jobs/{id}/outputs`, even under ``status_only``. Now a job's outputs are
bounded in number and name length by its datasets' policy, researchers see a name only when
it passes the log screening (never under ``status_only``: index, size and hash only), staff
see the real names, and an egress request names a file by ``#index`` or ``sha256:hash``.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.worlds import job_body
from tre.jobs.output_handles import handle_key, output_handle
from tre.store.db import session_scope
from tre.store.models import Dataset

CT = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
NAME = str(CT.PatientName)

# 231 files: one honest summary, the name in disguise, the pixels 120 bytes per name, one long name.
WRITE_NAMES = r"""
import base64, os, pydicom
ds = pydicom.dcmread('/data/CT_small.dcm')
name = str(ds.PatientName)
open('/output/summary.csv', 'w').write('n\n2\n')
for i, variant in enumerate([name, ' '.join(name), name[::-1], name.encode().hex()]):
    open(f'/output/{i}-{variant}.txt', 'w').write(f'v{i}')
px = ds.PixelData
for i in range(225):
    chunk = base64.urlsafe_b64encode(px[i * 120:(i + 1) * 120]).decode()
    open(f'/output/{i:03d}{chunk}', 'w').write(f'p{i}')
open('/output/' + 'L' * 230, 'w').write('x')
"""


def _policy_dir(tmp_path: Path, visibility: str) -> Path:
    folder = tmp_path / f"policies-{visibility}"
    folder.mkdir()
    (folder / "names.yaml").write_text(
        'name: names\nversion: "1"\njob:\n  allowed_images: ["registry.tre.local/*@sha256:*"]\n'
        f"  log_visibility: {visibility}\n"
    )
    return folder


@pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")
def test_names_are_bounded_screened_and_withheld(
    app_client, world, engine, settings, tmp_path, token_for
) -> None:  # type: ignore[no-untyped-def]
    from tre.jobs.worker import Worker

    alice, dana, audrey = world.headers["alice"], world.headers["dana"], world.headers["audrey"]
    r = app_client.post("/api/v1/jobs", headers=alice, json=job_body(command=["python3", "-c", WRITE_NAMES]))
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    Worker(settings, engine).run_until_idle(timeout_s=120)
    job = app_client.get(f"/api/v1/jobs/{job_id}", headers=alice).json()
    assert job["state"] == "succeeded" and "not recorded" in job["reason"], job

    staff = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=audrey).json()
    # Bounded: at most the default 200 files, none with a path over 200 characters.
    assert len(staff) == 200 and all(len(o["path"]) <= 200 for o in staff)
    assert not any(o["name_withheld"] for o in staff) and any(NAME in o["path"] for o in staff)

    mine = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=alice).json()
    # Same indexes and sizes; a keyed handle where staff see the real hash.
    key = handle_key(settings.keys_dir)
    assert [(o["index"], o["size"], o["sha256"]) for o in mine] == [
        (o["index"], o["size"], output_handle(key, job_id, o["sha256"])) for o in staff
    ]
    shown = [o["path"] for o in mine if o["path"] is not None]
    text = "\n".join(shown).lower()
    # Which 200 of the 231 files were recorded follows the directory order; an honest name,
    # when recorded, is shown (see also test_honest_names_pass below).
    if any(o["path"] == "summary.csv" for o in staff):
        assert "summary.csv" in shown
    for variant in (NAME, " ".join(NAME), NAME[::-1], NAME.encode().hex(), NAME.split("^")[0]):
        assert variant.lower() not in text, variant
    # Nothing of the pixels comes back out of the names a researcher sees.
    pixels = CT.PixelData
    for path in shown:
        for token in path.split("/"):
            body = token[3:] if token[:3].isdigit() else token
            try:
                decoded = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            except ValueError:
                continue
            assert len(decoded) < 8 or decoded[:8] not in pixels, path
    assert sum(o["name_withheld"] for o in mine) >= 190

    # The airlock request names withheld files by index or hash; the researcher's view of
    # the request keeps them withheld, the reviewers' view shows the real names.
    hidden = [o for o in mine if o["name_withheld"]][:2]
    req = app_client.post(
        "/api/v1/egress/requests",
        headers=alice,
        json={
            "job_id": job_id,
            "files": [f"#{hidden[0]['index']}", f"sha256:{hidden[1]['sha256']}"],
            "justification": "counts",
        },
    )
    assert req.status_code == 201, req.text
    files = req.json()["files"]
    assert len(files) == 2 and all(f["name_withheld"] for f in files)
    assert all(NAME not in f["path"] for f in files)
    rid = req.json()["id"]
    seen_by_dac = app_client.get(f"/api/v1/egress/requests/{rid}", headers=dana).json()["files"]
    real = {output_handle(key, job_id, o["sha256"]): o["path"] for o in staff}  # by the handle alice saw
    assert {f["path"] for f in seen_by_dac} == {real[h["sha256"]] for h in hidden}

    # Approved: the disclosure record and the download keep the names withheld from the
    # researcher; the auditor's record has them.
    root = world.headers["root"]
    assert (
        app_client.post(
            "/api/v1/admin/users", headers=root, json={"id": "dave", "roles": ["dac"]}
        ).status_code
        == 201
    )
    # A new DAC member reviews nothing until seated on the dataset's committee (tre.committees).
    seat = app_client.post("/api/v1/admin/committees/ct1/members", headers=root, json={"user_id": "dave"})
    assert seat.status_code == 201, seat.text
    dave = {"Authorization": f"Bearer {token_for('dave', 'dac')}"}
    for reviewer in (dana, dave):
        vote = app_client.post(
            f"/api/v1/egress/requests/{rid}/votes", headers=reviewer, json={"vote": "approve"}
        )
        assert vote.status_code == 201, vote.text
    record = app_client.get(f"/api/v1/egress/requests/{rid}/disclosure", headers=alice).json()
    assert record["outcome"] == "approved" and record["masked_for_researcher"] is True
    assert all(f["path"].startswith("sha256-") for f in record["files"])
    full = app_client.get(f"/api/v1/egress/requests/{rid}/disclosure", headers=audrey).json()
    assert {f["path"] for f in full["files"]} == {real[h["sha256"]] for h in hidden}
    got = app_client.get(f"/api/v1/egress/requests/{rid}/files/{files[0]['id']}", headers=alice)
    assert got.status_code == 200, got.text
    assert "sha256-" in got.headers["content-disposition"] and NAME not in got.headers["x-egress-path"]

    # Under status_only no name is shown at all.
    settings.policies_dir = _policy_dir(tmp_path, "status_only")
    with session_scope(engine) as s:
        ds = s.get(Dataset, "ct1")
        assert ds is not None
        ds.policy = "names"
    strict = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=alice).json()
    assert len(strict) == 200 and all(o["path"] is None and o["name_withheld"] for o in strict)
    assert {o["sha256"] for o in strict} == {o["sha256"] for o in mine}  # the same handles
    again = app_client.get(f"/api/v1/egress/requests/{rid}", headers=alice).json()["files"]
    assert all(f["name_withheld"] and f["path"].startswith("sha256-") for f in again)
    assert all(
        o["path"] is not None for o in app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=audrey).json()
    )


def test_honest_names_pass_and_smuggled_ones_do_not() -> None:
    from egress_review.logscreen import LogScreen
    from tre.policy import load_policy

    screen = LogScreen.for_policies(
        [load_policy("default", Path(__file__).resolve().parents[2] / "policies")], {NAME, *NAME.split("^")}
    )
    honest = ["summary.csv", "figures/montage.png", "tables/volumes_by_site.tsv", "model/weights-epoch-10.pt"]
    pixels = [base64.urlsafe_b64encode(CT.PixelData[i * 48 : (i + 1) * 48]).decode() for i in range(8)]
    names = honest + [f"{i}-{p}.bin" for i, p in enumerate(pixels)] + ["CompressedSamples.txt"]
    lines = screen.screen_log(("\n".join(names) + "\n").encode(), final=True).lines
    withheld = {names[i] for i, line in enumerate(lines) if line.withheld}
    assert withheld == set(names) - set(honest)

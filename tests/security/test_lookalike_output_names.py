"""Output names that read like another file's name are not recorded.

A job chooses its output names, and a reviewer, an auditor or the researcher reads them in
`tre outputs`, the API, the panel and the disclosure record. Names that cannot be shown at
all (newlines, escape sequences, bidi overrides, bytes that are not UTF-8) were already
skipped (tests/security/test_output_tree.py); names that show exactly like another name
were recorded: ``manifest.json `` (a trailing space) or ``manifest.json`` + a no-break space
beside the real ``manifest.json``, and ``résumé.csv`` spelt decomposed (NFD) beside the
composed one (NFC). A reviewer approving "manifest.json" could be approving the other file.
Now such names are skipped and counted, like the others, and the job's reason says so.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from tests.worlds import job_body
from tre.jobs.outputs import recordable_path, scan_outputs
from tre.jobs.shown_size import rounded_size

NFC = unicodedata.normalize("NFC", "résumé.csv")
NFD = unicodedata.normalize("NFD", "résumé.csv")
LOOKALIKES = [
    "manifest.json ",
    " manifest.json",
    "manifest.json\u00a0",
    "series /image.json",
    "man\u2009ifest.json",
    "tables\u3000/n.csv",
    NFD,
]


@pytest.mark.parametrize("name", LOOKALIKES)
def test_a_name_that_reads_like_another_is_not_recordable(name: str) -> None:
    assert not recordable_path(name)


@pytest.mark.parametrize(
    "name", ["manifest.json", "with space.csv", "series/00001/image.json", NFC, "Manifest.JSON"]
)
def test_ordinary_names_stay_recordable(name: str) -> None:
    assert recordable_path(name)


def test_the_scan_keeps_the_real_file_and_skips_its_lookalikes(tmp_path: Path) -> None:
    out = tmp_path / "output"
    (out / "series ").mkdir(parents=True)
    (out / "series ").joinpath("image.json").write_text("fake")
    for name in ("manifest.json", "manifest.json ", "manifest.json\u00a0", NFC, NFD):
        (out / name).write_text(name)
    paths = [p for p, _, _ in scan_outputs(out)]
    assert paths == ["manifest.json", NFC]


WRITE_LOOKALIKES = r"""
import unicodedata
for name in ('manifest.json', 'manifest.json ', 'manifest.json\u00a0',
             unicodedata.normalize('NFC', 'résumé.csv'), unicodedata.normalize('NFD', 'résumé.csv')):
    open('/output/' + name, 'w').write(repr(name))
"""


@pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")
def test_a_real_job_writing_lookalikes_records_only_the_real_names(
    app_client, world, engine, settings
) -> None:  # type: ignore[no-untyped-def]
    from tre.jobs.worker import Worker

    alice = world.headers["alice"]
    r = app_client.post(
        "/api/v1/jobs", headers=alice, json=job_body(command=["python3", "-c", WRITE_LOOKALIKES])
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    Worker(settings, engine).run_until_idle(timeout_s=120)
    job = app_client.get(f"/api/v1/jobs/{job_id}", headers=alice).json()
    assert job["state"] == "succeeded", job
    # Fixed words: the count is a number the job chose (staff find it in the worker log).
    assert "some output files were not recorded" in job["reason"] and "NFC" in job["reason"]
    assert not any(c.isdigit() for c in job["reason"].split(";", 1)[1].replace("UTF-8", ""))
    staff = app_client.get(f"/api/v1/jobs/{job_id}/outputs", headers=world.headers["audrey"]).json()
    assert sorted(o["path"] for o in staff) == sorted([NFC, "manifest.json"])
    # An egress request cannot name a lookalike: it was never recorded (the API trims the
    # spaces around a requested name, so "manifest.json " names the real file).
    r = app_client.post(
        "/api/v1/egress/requests",
        headers=alice,
        json={"job_id": job_id, "files": [NFD], "justification": "x"},
    )
    assert r.status_code == 422 and "not-a-job-output" in r.json()["type"], r.text
    r = app_client.post(
        "/api/v1/egress/requests",
        headers=alice,
        json={"job_id": job_id, "files": ["manifest.json "], "justification": "x"},
    )
    assert r.status_code == 201, r.text
    # the requester sees the size rounded up until release (tre.jobs.shown_size)
    assert [(f["path"], f["size"]) for f in r.json()["files"]] == [
        ("manifest.json", rounded_size(len(repr("manifest.json"))))
    ]

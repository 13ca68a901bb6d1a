"""The job log is an output channel: researchers see it screened, staff see it raw."""

from __future__ import annotations

import base64
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from egress_review.logscreen import LogScreen
from tests.worlds import job_body
from tre.jobs.worker import Worker
from tre.policy import Policy, load_policy

REPO = Path(__file__).resolve().parents[2]


def _screen(**job: object) -> LogScreen:
    base = load_policy("default", REPO / "policies")
    policy = Policy.model_validate(
        {**base.model_dump(exclude={"digest"}), "job": {**base.job.model_dump(), **job}}
    )
    return LogScreen.for_policies([policy], {"Doe^Jane", "Doe", "Jane", "PAT-123456", "1.2.840.99.1.2.3"})


def _shown(screen: LogScreen, log: bytes, final: bool, offset: int = 0) -> tuple[str, int]:
    screening = screen.screen_log(log, final)
    return screen.render(screening, offset).decode(), screening.decided_to


def test_lines_naming_the_data_or_carrying_files_are_withheld():
    blob = base64.b64encode(bytes(range(256)) * 2).decode()
    raw = (
        "epoch 1 loss 0.31\n"
        "patient: Jane Doe\n"
        "id=PAT-123456 done\n"
        f"payload {blob[:300]}\n"
        f"{'x' * 500}\n"
        # (ends with a letter no identifier form begins with: a running log's last line that
        # ends with an identifier's start waits for the next one, redteam14)
        "bell \x07 and escape \x1b[31m ig\n"
        "epoch 2 loss 0.2"
    ).encode()
    text, decided = _shown(_screen(), raw, final=False)
    assert (
        "Jane" not in text
        and "PAT-123456" not in text
        and blob[:40] not in text
        and "encoded run" in text
        and "x" * 500 not in text
    )
    assert text.count("[tre] withheld") == 4
    assert "epoch 1 loss 0.31" in text and "\\x07" in text and "\\x1b" in text and "\x1b" not in text
    # The unfinished last line is held back until the job ends.
    assert "epoch 2" not in text and decided == raw.rfind(b"\n") + 1
    rest, end = _shown(_screen(), raw, final=True, offset=decided)
    assert rest == "epoch 2 loss 0.2\n" and end == len(raw)


def test_only_the_first_part_is_shown():
    raw = b"".join(f"line {i:05d}\n".encode() for i in range(1000))
    screen = _screen(researcher_log_limit_kib=1)
    screening = screen.screen_log(raw, final=False)
    shown = screen.render(screening, 0)
    assert shown.startswith(b"line 00000\n") and screening.cut and len(shown) <= 1024
    assert b"line 00999" not in shown and b"withheld from researchers (limit 1 KiB)" in screen.limit_notice()


def test_status_only_and_full():
    assert _screen(log_visibility="status_only").visibility == "status_only"
    assert _screen(log_visibility="full").visibility == "full"


def test_a_line_without_end_cannot_stall_a_follower():
    raw = b"y" * 5000
    text, decided = _shown(_screen(), raw, final=False)
    assert decided == 5000 and "withheld a line longer than" in text


@pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")
def test_researcher_sees_the_screened_log_staff_the_raw_one(app_client, world, engine, settings):
    name = str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PatientName)
    script = (
        "import pydicom, base64; ds = pydicom.dcmread('/data/CT_small.dcm');"
        "print('name', ds.PatientName); print('id', ds.PatientID);"
        "print(base64.b64encode(open('/data/CT_small.dcm','rb').read()[:3000]).decode()); print('done')"
    )
    r = app_client.post(
        "/api/v1/jobs", headers=world.headers["alice"], json=job_body(command=["python3", "-c", script])
    )
    job_id = r.json()["id"]
    Worker(settings, engine).run_until_idle(timeout_s=60)
    mine = app_client.get(f"/api/v1/jobs/{job_id}/logs", headers=world.headers["alice"]).text
    raw = app_client.get(f"/api/v1/jobs/{job_id}/logs", headers=world.headers["audrey"]).text
    family = name.split("^")[0]
    assert family in raw and family not in mine
    assert "done" in mine and mine.count("[tre] withheld") == 3


def test_ids_and_hashes_the_platform_gave_the_job_are_not_encoded_data():
    """A job that prints its own inputs (`/inputs/<id>/...`, as docs/job-inputs.md invites)
    lost those lines and the sandbox's first line (the image digest) as "encoded-looking":
    values the researcher already holds carry nothing and are not counted. Anything else on
    such a line still is."""
    import hashlib

    from egress_review.logscreen import known_values

    job_id, input_id = "6cc05d6a9b8d47c798d871e7a4303588", "589b6fb6b46f4c5e9edc483073bb832d"
    digest = hashlib.sha256(b"image").hexdigest()
    code_hash = hashlib.sha256(b"code").hexdigest()
    known = known_values(job_id, [input_id], f"registry.tre.local/tre-job-cpu@sha256:{digest}", code_hash)
    assert known == {job_id, input_id, digest, code_hash}
    lines = [
        f"[tre] local sandbox: image registry.tre.local/tre-job-cpu@sha256:{digest} (image rootfs)",
        f"TRE_INPUTS /inputs/{input_id}",
        f"/inputs/{input_id}/manifest.json",
        *(f"/inputs/{input_id}/series/series-{n:05d}.nii.gz" for n in range(1, 9)),
        f"job {job_id.upper()} code {code_hash}",
    ]
    raw = ("\n".join(lines) + "\n").encode()
    screen = _screen()
    withheld_before = screen.render(screen.screen_log(raw, True), 0).decode()
    # What a researcher saw without them: since round 17 a line's one content hash beside
    # words is shown anyway (`/inputs/<id>/...`); the last line's two hashes still count.
    assert (
        withheld_before.splitlines()[-1]
        == "[tre] withheld a line of encoded-looking data (judged with its neighbours)"
    )
    shown = screen.render(screen.screen_log(raw, True, known), 0).decode()
    assert shown.splitlines() == lines, shown

    # Data between or beside the known values is still judged: a hex dump cut by the job's id.
    blob = hashlib.sha512(b"secret").hexdigest() * 2
    smuggled = [f"{input_id}{blob[i : i + 40]}{job_id}" for i in range(0, len(blob), 40)]
    raw = ("\n".join(lines[:3] + smuggled) + "\n").encode()
    shown = screen.render(screen.screen_log(raw, True, known), 0).decode()
    assert blob[:40] not in shown and "withheld" in shown, shown
    # Short values are never blanked: they could hide data between them.
    assert known_values("abc", ["0123"], "img@sha256:ab", "cd") == frozenset()

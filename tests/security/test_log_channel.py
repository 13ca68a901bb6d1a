"""The job log cannot carry the data out (issue 17, item 5).

Screening judged each line alone: base64 wrapped at 76 columns rebuilt 100 % of a CT slice's
pixels from `tre logs`, hex dumps passed, and the patient's name printed spaced, reversed or
hex-encoded was not recognised. Now lines are judged in context, identifiers are looked for
in disguise, and two budgets (per job, per project per day) bound what is shown at all.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import select

from tests.worlds import job_body
from tre.jobs.paths import log_path
from tre.jobs.worker import Worker
from tre.store.db import session_scope
from tre.store.models import Dataset, Job, LogBudgetDay

CT = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
PIXELS: bytes = CT.PixelData
NAME = str(CT.PatientName)

LEAK_SCRIPT = r"""
import base64, pydicom
ds = pydicom.dcmread('/data/CT_small.dcm')
px = ds.PixelData
name = str(ds.PatientName)
print('marker start')
print(base64.encodebytes(px).decode(), end='')
print('marker mid')
for i in range(0, 2048, 16):
    chunk = px[i:i + 16]
    groups = ' '.join(chunk[j:j + 2].hex() for j in range(0, 16, 2))
    text = ''.join(chr(c) if 32 <= c < 127 else '.' for c in chunk)
    print(f'{i:08x}: {groups}  {text}')
for i in range(2048, 4096, 16):
    print(f'{i:08x}  ' + ' '.join(f'{c:02x}' for c in px[i:i + 16]))
lines = base64.encodebytes(px[4096:8192]).decode().splitlines()
for line in lines:
    print(line)
    print('ok')
print(' '.join(name))
print(name[::-1])
print(name.encode().hex())
print(name.encode().hex(' '))
print(base64.b64encode(name.encode()).decode())
print(name.replace('^', '').upper())
print('marker end')
"""


def _name_variants() -> list[str]:
    return [
        " ".join(NAME),
        NAME[::-1],
        NAME.encode().hex(),
        base64.b64encode(NAME.encode()).decode(),
        NAME.replace("^", "").upper(),
        NAME.split("^")[0],
    ]


def _reconstructable(text: str) -> int:
    """The largest number of pixel bytes any hex or base64 run in ``text`` decodes into, as a
    contiguous piece of the slice (runs joined across lines, as an attacker would)."""
    best = 0
    joined_b64 = "".join(re.findall(r"[A-Za-z0-9+/=]+", text))
    candidates: list[bytes] = []
    for skip in range(4):
        part = joined_b64[skip:]
        part = part[: len(part) - len(part) % 4]
        try:
            candidates.append(base64.b64decode(part, validate=False))
        except ValueError:
            pass
    hexes = "".join(re.findall(r"\b[0-9a-f]{2,4}\b", text))
    try:
        candidates.append(bytes.fromhex(hexes[: len(hexes) - len(hexes) % 2]))
    except ValueError:
        pass
    for data in candidates:
        for size in (16, 32, 57):
            hits = sum(1 for i in range(0, len(data) - size, size) if data[i : i + size] in PIXELS)
            best = max(best, hits * size)
    return best


@pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap not installed")
def test_a_real_job_cannot_print_the_slice_or_the_name(app_client, world, engine, settings) -> None:  # type: ignore[no-untyped-def]
    r = app_client.post(
        "/api/v1/jobs", headers=world.headers["alice"], json=job_body(command=["python3", "-c", LEAK_SCRIPT])
    )
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    Worker(settings, engine).run_until_idle(timeout_s=120)
    raw = app_client.get(f"/api/v1/jobs/{job_id}/logs", headers=world.headers["audrey"]).text
    mine = app_client.get(f"/api/v1/jobs/{job_id}/logs", headers=world.headers["alice"]).text
    # The job did print everything: staff see it, so the test is meaningful.
    assert _reconstructable(raw) >= len(PIXELS) // 2 and all(v in raw for v in _name_variants()[:-1])
    # The researcher sees the markers and the notices, nothing of the data.
    assert "marker start" in mine and "marker mid" in mine and "marker end" in mine
    assert _reconstructable(mine) == 0, _reconstructable(mine)
    for variant in _name_variants():
        assert variant.lower() not in mine.lower(), variant
    shown = {line for line in mine.splitlines() if not line.startswith("[tre]")}
    assert shown <= {"marker start", "marker mid", "marker end", "ok", ""}, shown


def _write_log(settings, engine, project: str, text: str) -> str:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        job = Job(
            project_id=project,
            submitted_by="alice",
            image="x@sha256:" + "0" * 64,
            command=["true"],
            dataset_ids=["ct1"],
            state="succeeded",
            executor="local",
        )
        s.add(job)
        s.flush()
        job_id = job.id
    path = log_path(settings, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return job_id


def _policy(settings, engine, tmp_path: Path, **job: object) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    lines = "".join(f"  {k}: {v}\n" for k, v in job.items())
    (folder / "budget.yaml").write_text(
        'name: budget\nversion: "1"\njob:\n  allowed_images: ["registry.tre.local/*@sha256:*"]\n' + lines
    )
    settings.policies_dir = folder
    with session_scope(engine) as s:
        ds = s.get(Dataset, "ct1")
        assert ds is not None
        ds.policy = "budget"


def test_the_project_daily_budget_is_enforced(app_client, world, engine, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _policy(settings, engine, tmp_path, researcher_log_project_daily_kib=1)
    text = "".join(f"step {i:04d} fine\n" for i in range(200))  # 3.2 KiB of ordinary lines
    first = _write_log(settings, engine, "p1", text)
    second = _write_log(settings, engine, "p1", text)
    alice = world.headers["alice"]
    a = app_client.get(f"/api/v1/jobs/{first}/logs", headers=alice)
    assert a.text.startswith("step 0000 fine\n") and "daily budget" in a.text
    assert len(a.content) < 1024 + 300
    # Reading again costs nothing and shows the same lines; the next job gets nothing today.
    again = app_client.get(f"/api/v1/jobs/{first}/logs", headers=alice)
    assert again.text == a.text
    b = app_client.get(f"/api/v1/jobs/{second}/logs", headers=alice)
    assert "step 0000" not in b.text and "daily budget" in b.text
    # Skipping ahead shows nothing that was not charged in order.
    skip = app_client.get(f"/api/v1/jobs/{second}/logs?offset=1000", headers=alice)
    assert "step" not in skip.text
    # Staff read the raw log whatever the budget.
    assert app_client.get(f"/api/v1/jobs/{second}/logs", headers=world.headers["audrey"]).text == text
    with session_scope(engine) as s:
        spent = s.scalars(select(LogBudgetDay)).one()
        assert spent.project_id == "p1" and spent.shown_bytes <= 1024


def test_status_only_shows_no_log_and_charges_nothing(app_client, world, engine, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _policy(settings, engine, tmp_path, log_visibility="status_only")
    job = _write_log(settings, engine, "p1", "step 1\nstep 2\n")
    text = app_client.get(f"/api/v1/jobs/{job}/logs", headers=world.headers["alice"]).text
    assert "step" not in text and "withholds job logs" in text
    with session_scope(engine) as s:
        assert s.scalars(select(LogBudgetDay)).all() == []


def test_budget_ledger_on_sqlite_and_postgresql(engine_any) -> None:  # type: ignore[no-untyped-def]
    from egress_review import logbudget
    from egress_review.logscreen import ScreenedLine, Screening
    from tre import registry

    with session_scope(engine_any) as s:
        registry.create_user(s, "test", "alice", ["researcher"])
        registry.create_project(s, "test", "p1", "P1")
        job = Job(project_id="p1", submitted_by="alice", image="x", command=["true"], dataset_ids=[])
        s.add(job)
        s.flush()
        job_id = job.id
    lines = [ScreenedLine(i * 10, (i + 1) * 10, f"line {i:04d}", False) for i in range(10)]
    screening = Screening(lines=lines, decided_to=100)
    with session_scope(engine_any) as s:
        first = logbudget.charge(s, job_id, "p1", screening, 0, daily_limit_bytes=50)
    assert first.exhausted and first.shown_to == 50  # five lines of 10 bytes (9 + newline)
    with session_scope(engine_any) as s:
        again = logbudget.charge(s, job_id, "p1", screening, 0, daily_limit_bytes=50)
        ahead = logbudget.charge(s, job_id, "p1", screening, 90, daily_limit_bytes=10_000)
    assert again.shown_to == 50 and again.exhausted and ahead.shown_to == 50 and not ahead.exhausted
    with session_scope(engine_any) as s:
        spent = s.scalars(select(LogBudgetDay)).one()
        assert spent.shown_bytes == 50

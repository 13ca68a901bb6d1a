"""The real py-tes 1.1.4 client, unmodified, against a live tre with a real worker and
bubblewrap sandbox: service-info, a task with inline code reading /data and writing /output,
every view, listing with filters and paging, cancelling, and refusals the client shows."""

from __future__ import annotations

import time

import pytest
import requests
import tes
from tes.utils import unmarshal

from tests.tes.conftest import IMAGE, LiveTre, needs_bwrap

pytestmark = needs_bwrap

COUNT = """\
import os
files = sorted(os.listdir('/data'))
print('greeting', os.environ.get('GREETING'), 'cwd', os.getcwd())
with open('/output/summary.csv', 'w') as fh:
    fh.write('n_files\\n%d\\n' % len(files))
os.makedirs('/output/tables', exist_ok=True)
with open('/output/tables/t1.csv', 'w') as fh:
    fh.write('a\\n1\\n')
print('counted', len(files), 'files')
"""


def client(live: LiveTre, user: str = "alice") -> tes.HTTPClient:
    return tes.HTTPClient(live.url, token=live.tokens[user], timeout=30)


def count_task(name: str = "count", **tags: str) -> tes.Task:
    return tes.Task(
        name=name,
        description="count the DICOM files",
        inputs=[
            tes.Input(path="/code/count.py", content=COUNT),
            tes.Input(url="tre://dataset/lidc", path="/data", type="DIRECTORY"),
        ],
        outputs=[
            tes.Output(path="/output/summary.csv", url="s3://bucket/summary.csv"),
            tes.Output(path="/output/tables", url="s3://bucket/tables", type="DIRECTORY"),
        ],
        resources=tes.Resources(cpu_cores=1, ram_gb=0.5),
        executors=[
            tes.Executor(
                image=IMAGE, command=["python3", "count.py"], env={"GREETING": "hello tes"}, workdir="/code"
            )
        ],
        tags={"Project": "lung", **tags},
    )


def test_service_info(live_tre: LiveTre) -> None:
    info = client(live_tre).get_service_info()
    assert info.type == {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"}
    assert info.storage == ["tre://dataset/"]
    assert "airlock" in (info.description or "")
    assert info.tes_resources_backend_parameters == ["gpu", "time_limit_s"]
    # Unauthenticated: the same 401 problem document as the rest of the API.
    anon = requests.get(live_tre.url + "/ga4gh/tes/v1/service-info", timeout=10)
    assert anon.status_code == 401
    assert anon.headers["content-type"].startswith("application/problem+json")


def test_task_runs_next_to_the_data_in_every_view(live_tre: LiveTre) -> None:
    cli = client(live_tre)
    task_id = cli.create_task(count_task())
    done = cli.wait(task_id, timeout=120)
    assert done.state == "COMPLETE", cli.get_task(task_id, "FULL")

    minimal = cli.get_task(task_id, "MINIMAL")
    assert minimal.as_dict() == {"id": task_id, "state": "COMPLETE"}

    basic = cli.get_task(task_id)  # py-tes asks for BASIC
    assert basic.name == "count" and basic.executors[0].command == ["python3", "count.py"]
    assert basic.executors[0].env == {"GREETING": "hello tes"}
    assert [i.content for i in basic.inputs] == [None, None]  # BASIC leaves content out
    assert basic.tags["Project"] == "lung" and basic.tags["tre.job_state"] == "succeeded"
    assert basic.tags["tre.egress"] == "none"
    (log,) = basic.logs
    (executor_log,) = log.logs
    assert executor_log.exit_code == 0 and executor_log.stdout is None and log.system_logs is None
    assert log.start_time is not None and log.end_time >= log.start_time
    assert log.metadata["tre.job_id"] == task_id
    by_path = {o.path: o for o in log.outputs}
    assert set(by_path) == {"/output/summary.csv", "/output/tables/t1.csv"}
    assert by_path["/output/summary.csv"].size_bytes == len("n_files\n2\n")
    assert all(o.url.startswith(f"tre://jobs/{task_id}/outputs/") for o in log.outputs)

    full = cli.get_task(task_id, "FULL")
    assert full.inputs[0].content == COUNT
    (flog,) = full.logs
    assert "counted 2 files" in flog.logs[0].stdout
    assert "greeting hello tes cwd /code" in flog.logs[0].stdout
    assert any("airlock" in line for line in flog.system_logs)

    # On the wire, size_bytes is a string (TES 1.1) and no field outside the schema appears.
    raw = requests.get(
        f"{live_tre.url}/ga4gh/tes/v1/tasks/{task_id}",
        params={"view": "FULL"},
        headers=live_tre.headers("alice"),
        timeout=10,
    ).json()
    assert {o["size_bytes"] for o in raw["logs"][0]["outputs"]} == {"10", "4"}
    assert set(raw) <= {
        "id",
        "state",
        "name",
        "description",
        "inputs",
        "outputs",
        "resources",
        "executors",
        "volumes",
        "tags",
        "logs",
        "creation_time",
    }

    # Another project's researcher: the same 404 as for no task at all; list shows nothing.
    with pytest.raises(requests.HTTPError) as lost:
        client(live_tre, "bob").get_task(task_id)
    assert lost.value.response.status_code == 404
    assert client(live_tre, "bob").list_tasks().tasks == []


def _list(live: LiveTre, **params: object) -> tes.ListTasksResponse:
    got = requests.get(
        f"{live.url}/ga4gh/tes/v1/tasks", params=params, headers=live.headers("alice"), timeout=10
    )
    assert got.status_code == 200, got.text
    return unmarshal(got.json(), tes.ListTasksResponse)


def test_list_filters_and_pages(live_tre: LiveTre) -> None:
    cli = client(live_tre)
    ids = []
    for i, batch in enumerate(["a", "a", "b"]):
        ids.append(cli.create_task(count_task(name=f"batch-{i}", Batch=batch)))
    ids.append(cli.create_task(count_task(name="other-0")))
    for task_id in ids:
        assert cli.wait(task_id, timeout=120).state == "COMPLETE"

    # Paging with py-tes: two per page, newest first, every task exactly once.
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = cli.list_tasks(view="MINIMAL", page_size=2, page_token=token)
        pages += 1
        seen += [t.id for t in page.tasks or []]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids)) and pages == 2
    basic = cli.list_tasks(view="BASIC")
    assert [t.name for t in basic.tasks] == ["other-0", "batch-2", "batch-1", "batch-0"]

    assert [t.id for t in _list(live_tre, name_prefix="batch-").tasks] == list(reversed(ids[:3]))
    assert [t.id for t in _list(live_tre, tag_key="Batch", tag_value="a").tasks] == [ids[1], ids[0]]
    assert [t.id for t in _list(live_tre, tag_key="Batch").tasks] == list(reversed(ids[:3]))
    assert [t.id for t in _list(live_tre, tag_key=["Batch", "Project"], tag_value=["b", "lung"]).tasks] == [
        ids[2]
    ]
    assert len(_list(live_tre, state="COMPLETE").tasks) == 4
    assert _list(live_tre, state="RUNNING").tasks == []
    # The name filter is a prefix, not a pattern.
    assert _list(live_tre, name_prefix="batch%").tasks == []
    for bad in ({"page_size": 2048}, {"page_token": "not-a-token"}, {"state": "DONE"}):
        got = requests.get(
            f"{live_tre.url}/ga4gh/tes/v1/tasks", params=bad, headers=live_tre.headers("alice"), timeout=10
        )
        assert 400 <= got.status_code < 500 and got.headers["content-type"].startswith(
            "application/problem+json"
        )


def test_cancel_a_long_task(live_tre: LiveTre) -> None:
    cli = client(live_tre)
    task = tes.Task(
        executors=[
            tes.Executor(
                image=IMAGE,
                command=["python3", "-c", "import time; print('up', flush=True); time.sleep(120)"],
            )
        ],
        tags={"Project": "lung"},
    )
    task_id = cli.create_task(task)
    deadline = time.monotonic() + 60
    while cli.get_task(task_id, "MINIMAL").state != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # Only the submitter (or an admin) cancels: another member of nothing gets 404.
    with pytest.raises(requests.HTTPError):
        client(live_tre, "bob").cancel_task(task_id)
    assert cli.cancel_task(task_id) is None
    assert cli.get_task(task_id, "MINIMAL").state in ("CANCELING", "CANCELED")
    # py-tes's wait() stops at CANCELING (not QUEUED/RUNNING/INITIALIZING): poll to the end.
    while cli.get_task(task_id, "MINIMAL").state == "CANCELING":
        assert time.monotonic() < deadline + 60
        time.sleep(0.2)
    assert cli.get_task(task_id, "MINIMAL").state == "CANCELED"
    assert "cancel" in cli.get_task(task_id, "FULL").logs[0].system_logs[0]
    cli.cancel_task(task_id)  # again: still {}
    raw = requests.post(
        f"{live_tre.url}/ga4gh/tes/v1/tasks/{task_id}:cancel", headers=live_tre.headers("alice"), timeout=10
    )
    assert raw.status_code == 200 and raw.json() == {}


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"image": "registry.tre.local/tre-job-cpu@sha256:" + "cd" * 32}, 403, "not approved"),
        ({"ram_gb": 1000}, 403, "over project 'lung' quota"),
        ({"gpu": "1"}, 403, "gpu 1 is over project 'lung' quota of 0"),
        ({"Project": "other"}, 403, "you are not a member of project 'other'"),
        ({"input_url": "https://example.org/x.csv"}, 400, "tre jobs have no network"),
        ({"output": "/tmp/out.csv"}, 400, "is not under /output"),
        ({"Project": None}, 400, "no 'Project' tag"),
    ],
    ids=[
        "image-not-approved",
        "over-quota",
        "gpu-over-quota",
        "not-a-member",
        "url-input",
        "output-outside",
        "no-project",
    ],
)
def test_refusals_reach_the_client(
    live_tre: LiveTre, change: dict[str, object], status: int, reason: str
) -> None:
    task = count_task()
    if "image" in change:
        task.executors[0].image = str(change["image"])
    if "ram_gb" in change:
        task.resources.ram_gb = change["ram_gb"]
    if "gpu" in change:
        task.resources.backend_parameters = {"gpu": str(change["gpu"])}
    if "Project" in change:
        task.tags = {} if change["Project"] is None else {"Project": str(change["Project"])}
    if "input_url" in change:
        task.inputs.append(tes.Input(url=str(change["input_url"]), path="/data/x.csv"))
    if "output" in change:
        task.outputs.append(tes.Output(path=str(change["output"]), url="s3://b/o"))
    with pytest.raises(requests.HTTPError) as refused:
        client(live_tre).create_task(task)
    answer = refused.value.response
    assert answer.status_code == status
    assert str(status) in str(refused.value)  # what py-tes shows: "403 Client Error: Forbidden for url: ..."
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert reason in answer.json()["detail"]
    assert client(live_tre).list_tasks().tasks == []


def test_roles_deny_by_default(live_tre: LiveTre) -> None:
    with pytest.raises(requests.HTTPError) as dac:
        client(live_tre, "dana").create_task(count_task())
    assert dac.value.response.status_code == 403
    bad = tes.HTTPClient(live_tre.url, token="not-a-jwt", timeout=10)
    with pytest.raises(requests.HTTPError) as anon:
        bad.list_tasks()
    assert anon.value.response.status_code == 401


LEAK = """\
import pydicom
ds = pydicom.dcmread('/data/CT_small.dcm')
print('name', ds.PatientName)
print('done')
"""


def test_full_view_stdout_is_the_researchers_screened_log(live_tre: LiveTre) -> None:
    """A job printing a patient's name: the researcher's FULL view withholds the line, the
    admin's shows it, as `tre logs` does."""
    import pydicom
    from pydicom.data import get_testdata_file

    family = str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PatientName).split("^")[0]
    task = tes.Task(
        inputs=[
            tes.Input(path="/code/leak.py", content=LEAK),
            tes.Input(url="tre://dataset/lidc", path="/data"),
        ],
        executors=[tes.Executor(image=IMAGE, command=["python3", "leak.py"])],
        tags={"Project": "lung"},
    )
    cli = client(live_tre)
    task_id = cli.create_task(task)
    assert cli.wait(task_id, timeout=120).state == "COMPLETE"
    mine = cli.get_task(task_id, "FULL").logs[0].logs[0].stdout
    staff = client(live_tre, "root").get_task(task_id, "FULL").logs[0].logs[0].stdout
    assert family in staff and family not in mine
    assert "done" in mine and "[tre] withheld" in mine


NAMER = """\
import os, pydicom
ds = pydicom.dcmread('/data/CT_small.dcm')
os.makedirs('/output/tables', exist_ok=True)
open('/output/tables/%s.txt' % ds.PatientName, 'w').write('x')
open('/output/tables/counts.csv', 'w').write('n\\n2\\n')
"""


def test_output_names_in_file_logs_are_screened(live_tre: LiveTre) -> None:
    """A DIRECTORY output's file logs name each file as `tre outputs` would: a name carrying
    a patient's name reads `#<index>` for the researcher; staff see it."""
    import pydicom
    from pydicom.data import get_testdata_file

    patient = str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).PatientName)
    task = tes.Task(
        inputs=[
            tes.Input(path="/code/namer.py", content=NAMER),
            tes.Input(url="tre://dataset/lidc", path="/data"),
        ],
        outputs=[tes.Output(path="/output", url="s3://bucket/all", type="DIRECTORY")],
        executors=[tes.Executor(image=IMAGE, command=["python3", "namer.py"])],
        tags={"Project": "lung"},
    )
    cli = client(live_tre)
    task_id = cli.create_task(task)
    assert cli.wait(task_id, timeout=120).state == "COMPLETE"
    mine = sorted(o.path for o in cli.get_task(task_id).logs[0].outputs)
    staff = sorted(o.path for o in client(live_tre, "root").get_task(task_id).logs[0].outputs)
    assert staff == sorted(["/output/tables/counts.csv", f"/output/tables/{patient}.txt"])
    assert len(mine) == 2 and "/output/tables/counts.csv" in mine
    (withheld,) = [p for p in mine if p != "/output/tables/counts.csv"]
    assert withheld.startswith("#") and patient.split("^")[0] not in withheld

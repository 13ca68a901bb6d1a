"""`tre demo`: the whole researcher flow on the embedded defaults, printed as it happens.

Bootstraps users locally, starts the API and worker in this process, then acts through the
real HTTP API exactly as the CLI would: admin registers pydicom's bundled DICOM test files
as a dataset and grants a project access; a researcher submits a sandboxed job that reads
them and writes a CSV and a PNG; the outputs are listed with their hashes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydicom.data import get_testdata_file

from egress_review import expiry
from tre import registry
from tre.api.app import create_app
from tre.audit.events import record_token_issued
from tre.auth.tokens import TokenIssuer
from tre.cli.client import ApiClient, CliError
from tre.cli.code import upload_code
from tre.cli.egress import CHECKS_TIMEOUT_S
from tre.cli.jobs import follow_job
from tre.cli.output import console, human_size, table
from tre.cli.preprocess import job_command, job_request, series_summary, summary_line
from tre.config import Settings, default_home, get_settings
from tre.demo_job import DEMO_JOB_SOURCE
from tre.images.jobimage import ensure_cpu_job_image
from tre.jobs.worker import Worker
from tre.server import BackgroundServer
from tre.store.db import session_scope
from tre.store.models import User

DEMO_FILES = ("CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "examples_overlay.dcm")
DEMO_USERS = {
    "admin": ["admin"],
    "alice": ["researcher"],
    "dac-one": ["dac"],
    "dac-two": ["dac"],
    "auditor": ["auditor"],
}
PROJECT = "demo-lung"
DATASET = "pydicom-samples"


def prepare_code(settings: Settings) -> Path:
    """The researcher's code folder, as alice would have it: one ``analysis.py``."""
    folder = settings.home / "demo-code"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "analysis.py").write_text(DEMO_JOB_SOURCE.lstrip())
    return folder


def prepare_dataset(settings: Settings) -> Path:
    # In the data folder, never inside the state directory (a dataset must not expose keys or
    # the database) nor in root's home (which dataset paths may not overlap).
    folder = settings.data_dir / "demo" / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    for name in DEMO_FILES:
        src = get_testdata_file(name)
        if src is None:
            raise CliError(f"pydicom test file {name} is missing from this installation")
        shutil.copyfile(src, folder / name)
    return folder


def _has_live_grant(grants: list[dict[str, str]]) -> bool:
    """Whether the demo project holds an unrevoked grant to the demo dataset for at least a day
    more (the job must not be refused half-way through the demo)."""
    soon = datetime.now(UTC) + timedelta(days=1)
    return any(
        g["dataset_id"] == DATASET
        and not g.get("revoked_at")
        and datetime.fromisoformat(g["expires_at"]) > soon
        for g in grants
    )


def run_demo() -> None:
    settings = get_settings()
    if settings.executor == "local" and os.geteuid() != 0:
        # Said first: otherwise the image build fails minutes in with mmdebstrap's own words.
        raise CliError(
            "the demo runs its jobs in the local sandbox, which only root can start (each job "
            "runs as the user tre-job on a file system of its own): run it as root or with sudo, "
            "`sudo .venv/bin/tre demo`"
        )
    settings.ensure_dirs()
    app = create_app(settings)
    engine = app.state.engine
    with session_scope(engine) as s:
        for user_id, roles in DEMO_USERS.items():
            if s.get(User, user_id) is None:
                registry.create_user(s, "bootstrap", user_id, roles)
    issuer = TokenIssuer.from_settings(settings)
    tokens = {u: issuer.mint(u, r, ttl_s=3600) for u, r in DEMO_USERS.items()}
    with session_scope(engine) as s:
        for token in tokens.values():
            record_token_issued(s, "bootstrap", token)
    data = prepare_dataset(settings)
    code = prepare_code(settings)
    # The job runs in the platform's CPU job image (Debian + numpy, pydicom, numba, the
    # kernels), built here without Docker and cached on the host: minutes the first time.
    with console.status("preparing the CPU job image (the first build on a host takes minutes)"):
        image = ensure_cpu_job_image(settings, engine)

    worker = Worker(settings, engine, periodic=[expiry.sweeper(engine, settings)])
    worker_thread = threading.Thread(target=worker.serve_forever, daemon=True)
    worker_thread.start()
    try:
        with BackgroundServer(app) as server:
            console.rule("[bold]tre demo")
            console.print(
                f"state directory {settings.home}; API at {server.url}; executor {settings.executor}"
            )
            admin = ApiClient(server.url, tokens["admin"])
            projects = {p["id"] for p in admin.get("/api/v1/projects")}
            if PROJECT not in projects:
                admin.post(
                    "/api/v1/projects",
                    json={
                        "id": PROJECT,
                        "name": "Demo lung CT project",
                        "quota": {"max_cpu": 2, "max_memory_mb": 2048},
                    },
                )
                admin.post(f"/api/v1/projects/{PROJECT}/members", json={"user_id": "alice"})
                console.print(f"admin created project {PROJECT} with member alice")
            datasets = {d["id"] for d in admin.get("/api/v1/datasets")}
            if DATASET not in datasets:
                d = admin.post(
                    "/api/v1/datasets",
                    json={"id": DATASET, "path": str(data), "name": "pydicom bundled test images"},
                )
                console.print(f"admin registered dataset {DATASET}: {d['meta']}")
            # The dataset's DAC committee (docs/egress.md, "Committees"): deny by default.
            seated = next(c for c in admin.get("/api/v1/admin/committees") if c["dataset_id"] == DATASET)
            for reviewer in ("dac-one", "dac-two"):
                if reviewer not in seated["members"]:
                    admin.post(f"/api/v1/admin/committees/{DATASET}/members", json={"user_id": reviewer})
                    console.print(f"admin seated {reviewer} on the committee of {DATASET}")
            if not _has_live_grant(admin.get("/api/v1/grants", params={"project_id": PROJECT})):
                # Also on a later run: the demo's grant lapses after 30 days, or an admin revoked it.
                g = admin.post(
                    "/api/v1/grants",
                    json={"project_id": PROJECT, "dataset_id": DATASET, "days": 30, "reason": "demo"},
                )
                console.print(f"admin granted {PROJECT} access to {DATASET} until {g['expires_at'][:10]}")

            usable = {i["reference"] for i in admin.get("/api/v1/images", params={"usable_for": PROJECT})}
            if image not in usable:
                # Ingress review: an image runs for a project only once an admin approved it.
                admin.post("/api/v1/images/approvals", json={"reference": image, "project_id": PROJECT})
                console.print(f"admin approved the job image {image} for {PROJECT}")

            alice = ApiClient(server.url, tokens["alice"])
            code_hash = upload_code(alice, PROJECT, code)
            console.print(f"alice uploaded her code folder (analysis.py): sha256 {code_hash[:16]}…")
            job = alice.post(
                "/api/v1/jobs",
                json={
                    "project_id": PROJECT,
                    "image": image,
                    "code_hash": code_hash,
                    "command": ["python3", "analysis.py"],
                    "dataset_ids": [DATASET],
                    "cpu": 1,
                    "memory_mb": 1024,
                    "time_limit_s": 120,
                },
            )
            console.print(
                f"alice submitted job {job['id']} in the image, her code read-only at /code, "
                f"{DATASET} read-only at /data, no network"
            )
            console.rule("job log")
            final = follow_job(alice, job["id"])
            console.rule()
            console.print(f"job {final['id']}: [bold]{final['state']}[/] {final['reason']}")
            outputs = alice.get(f"/api/v1/jobs/{job['id']}/outputs")
            table(
                "outputs (still inside the TRE)",
                ["path", "size", "sha256"],
                [(o["path"], human_size(o["size"]), o["sha256"][:16] + "…") for o in outputs],
            )
            if final["state"] != "succeeded":
                raise CliError(f"demo job ended {final['state']}: {final['reason']}")
            release_through_airlock(settings, server.url, tokens, job["id"])
            preprocess_dataset(alice, image)
            verify_audit_log(settings, server.url, tokens["auditor"])
            print_next_steps(settings)
    finally:
        worker.stop()
        worker_thread.join(timeout=10)


def print_next_steps(settings: Settings) -> None:
    """Where a newcomer goes from here: the demo's platform stays in the state directory, and
    README's "Using it" runs against it once `tre serve` serves it. The commands are printed
    on lines of their own, never wrapped, so that they can be copied."""
    console.rule("next")
    console.print(
        f"The demo's platform stays in {settings.home} (users {', '.join(DEMO_USERS)}; project "
        f'{PROJECT}; dataset {DATASET}). To go on as in README.md\'s "Using it" (the CLI is '
        ".venv/bin/tre; run it as root or with sudo, like the demo):",
        highlight=False,
    )
    if settings.home.resolve() != default_home().resolve():
        # The state is not where a later `tre` looks by default: a one-off
        # `TRE_HOME=... tre demo` followed by a bare `tre serve` served an empty state.
        console.print(
            f"  export TRE_HOME={shlex.quote(str(settings.home))}   # in every shell you use below",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    for line in (
        "  tre serve                                                    # the API and worker",
        "  tre admin token --user alice --role researcher | tre login   # in another shell",
        "  tre whoami",
        "  review panel: http://127.0.0.1:8765/panel (sign in with a token of dac-one or dac-two)",
    ):
        console.print(line, highlight=False, soft_wrap=True, markup=False)


def preprocess_dataset(alice: ApiClient, image: str) -> None:
    """What ``tre preprocess -p demo-lung -d pydicom-samples`` does: the whole dataset as one
    cohort job in the job image (1 mm, CT window, z-score, crop), series by series.

    Why in the demo: it is the platform's own job in the platform's own image, the path a
    newcomer takes next; the image once could not run it (pydicom too old) and only a run
    like this one shows that."""
    project = alice.get(f"/api/v1/projects/{PROJECT}")
    command = job_command((1.0, 1.0, 1.0), (-1000.0, 400.0), None, "cpu", "nii.gz", 1)
    body = job_request(project, DATASET, command, image=image, gpu=False, cpu=1, memory_mb=1024)
    job = alice.post("/api/v1/jobs", json=body)
    console.rule(f"alice preprocesses {DATASET} as one cohort job ({job['id']})")
    final = follow_job(alice, job["id"])
    summary = series_summary(alice.request("GET", f"/api/v1/jobs/{job['id']}/logs").text)
    console.rule()
    if final["state"] != "succeeded" or summary is None:
        raise CliError(f"demo preprocessing job ended {final['state']}: {final['reason']}")
    console.print(summary_line(final["id"], *summary), highlight=False, soft_wrap=True)


def release_through_airlock(settings: Settings, url: str, tokens: dict[str, str], job_id: str) -> None:
    """Outputs leave only through the airlock: checks, two blinded DAC votes, then download."""
    console.rule("egress airlock")
    alice, dac_one = ApiClient(url, tokens["alice"]), ApiClient(url, tokens["dac-one"])
    req = alice.post(
        "/api/v1/egress/requests",
        json={
            "job_id": job_id,
            "files": ["summary.csv", "montage.png"],
            "justification": "per-image summary statistics and a thumbnail montage for the methods section",
        },
        timeout=CHECKS_TIMEOUT_S,
    )
    view = dac_one.get(f"/api/v1/egress/requests/{req['id']}")
    rows = [
        (f["path"], f["outcome"], c["check"], c["outcome"], c["reason"])
        for f in view["files"]
        for c in f["checks"]
    ]
    table(
        f"automated checks of request {req['id'][:12]} (policy {view['policy_name']})",
        ["file", "file outcome", "check", "outcome", "reason"],
        rows,
    )
    if view["state"] != "awaiting_review":
        console.print(f"request is [bold]{view['state']}[/]: the DAC cannot approve it; nothing leaves")
        return
    for reviewer in ("dac-one", "dac-two"):
        voted = ApiClient(url, tokens[reviewer]).post(
            f"/api/v1/egress/requests/{req['id']}/votes",
            json={"vote": "approve", "comment": "aggregate statistics and downsampled images only"},
        )
        console.print(f"{reviewer} voted (votes stay hidden until both are in): request {voted['state']}")
    dest = settings.home / "demo-release" / req["id"]
    for f in view["files"]:
        alice.download(
            f"/api/v1/egress/requests/{req['id']}/files/{f['id']}", dest / f["path"], progress=False
        )
        ok = hashlib.sha256((dest / f["path"]).read_bytes()).hexdigest() == f["sha256"]
        console.print(
            f"alice downloaded {f['path']} -> {dest / f['path']} (sha256 {'matches' if ok else 'DIFFERS'})"
        )
    record = alice.get(f"/api/v1/egress/requests/{req['id']}/disclosure")
    (dest / "disclosure.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    console.print(f"machine-readable disclosure record: {dest / 'disclosure.json'}")


def verify_audit_log(settings: Settings, url: str, auditor_token: str) -> None:
    """What an auditor does: export the signed log and verify it offline."""
    from tre.audit.note import VerifierKey
    from tre.audit.verify import verify_bundle

    console.rule("audit")
    auditor = ApiClient(url, auditor_token)
    bundle = settings.home / "demo-audit-bundle.json"
    auditor.download("/api/v1/audit/export", bundle, progress=False)
    # As the README tells auditors: the key pinned out of band, never the bundle's own.
    pinned = VerifierKey.parse(auditor.get("/api/v1/audit/public-key")["vkey"])
    report = verify_bundle(bundle.read_bytes(), pinned)
    console.print(f"auditor exported {bundle} and verified it offline: {report.summary()}")
    if not report.ok:
        raise CliError(f"audit log verification failed: {report.summary()}")

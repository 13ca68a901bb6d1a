"""`tre hub ...` and `tre node ...`: run and administer the federation (docs/federation.md).

Hub and node administration (registering nodes, federated projects, a node's project
mapping) works on the local state directory, like `tre admin`; researchers' commands
(`tre hub job show`, `tre hub results`, `tre hub search`) talk to the hub's API with a hub
token (`TRE_API_URL` or `tre login --api-url` pointed at the hub).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tre.cli.client import ApiClient, CliError
from tre.cli.output import PortOption, console, untrusted
from tre.cli.resolve import resolve_hub_job_id
from tre.config import get_settings
from tre.plural import count

if TYPE_CHECKING:  # the store is imported by the node commands that use it (start-up time)
    from sqlalchemy import Engine

hub_app = typer.Typer(
    help="The federation hub: serve, nodes, federated projects, jobs, results, search.", no_args_is_help=True
)
hub_node_app = typer.Typer(
    help="Nodes registered at this hub (admin, on the hub host).", no_args_is_help=True
)
hub_project_app = typer.Typer(help="Federated projects (admin, on the hub host).", no_args_is_help=True)
hub_job_app = typer.Typer(help="Federated jobs (researchers, over the hub's API).", no_args_is_help=True)
hub_app.add_typer(hub_node_app, name="node")
hub_app.add_typer(hub_project_app, name="project")
hub_app.add_typer(hub_job_app, name="job")
node_app = typer.Typer(
    help="This tre as a federation node: join a hub, map projects, run the agent.", no_args_is_help=True
)
ADMIN = "admin-cli"


def _engine() -> Engine:
    from tre.store.db import init_db, make_engine

    settings = get_settings()
    settings.ensure_dirs()
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    return engine


def _unit(fn: Any, *args: Any) -> Any:
    from tre import audit
    from tre.store.db import session_scope

    engine = _engine()
    audit.configure(engine, get_settings().keys_dir)
    with session_scope(engine) as s:
        return fn(s, *args)


# -- hub -----------------------------------------------------------------------------------------
@hub_app.command("serve")
def hub_serve(host: str = "127.0.0.1", port: PortOption = 8780) -> None:
    """Run the hub's API (researchers and node agents connect to it; it connects to no one)."""
    from tre.listen import ensure_can_listen

    ensure_can_listen(host, port, "tre hub serve")  # before the server's imports: a mistake answers at once
    import uvicorn

    from tre.cli import interrupts
    from tre.federation.hub.app import create_hub_app
    from tre.server import run_app

    interrupts.serve_until_stopped()
    app = create_hub_app()

    def stop_on_signal(server: uvicorn.Server) -> None:
        interrupts.on_stop(lambda: setattr(server, "should_exit", True))

    def banner() -> None:  # once the socket listens (a script waiting on it then connects)
        console.print(f"tre hub serve: hub API on http://{host}:{port}; Ctrl-C stops it", highlight=False)

    run_app(app, host, port, on_server=stop_on_signal, on_listening=banner)
    console.print("tre hub serve: stopped", highlight=False)


@hub_app.command("key")
def hub_key() -> None:
    """Print the hub's public key (nodes pin it: `tre node join --hub-key`)."""
    from tre.federation.keys import hub_key as load
    from tre.federation.signing import encode_public_key

    console.print(encode_public_key(load(get_settings())), highlight=False)


@hub_node_app.command("add")
def hub_node_add(
    name: str,
    key: Annotated[str, typer.Option("--key", help="The node agent's key (`tre node key` on the node).")],
    audit_key: Annotated[str, typer.Option("--audit-key", help="The node's audit log key (`tre node key`).")],
) -> None:
    """Register a node's keys at this hub."""
    from tre.federation.hub.nodes import add_node

    _unit(add_node, ADMIN, name, key, audit_key)
    console.print(f"node [bold]{name}[/] registered")


@hub_node_app.command("revoke")
def hub_node_revoke(name: str) -> None:
    """Stop trusting a node (a leaked key, a node that left): its requests are refused from now on."""
    from tre.federation.hub.nodes import revoke_node

    _unit(revoke_node, ADMIN, name)
    console.print(f"node [bold]{name}[/] revoked; register it again under a new name with new keys")


@hub_node_app.command("rotate-key")
def hub_node_rotate_key(
    name: str,
    key: Annotated[str, typer.Option("--key", help="The node agent's new key (`tre node key --rotate`).")],
    overlap_hours: Annotated[
        float,
        typer.Option(
            "--overlap-hours",
            min=0,
            max=168,
            help="How long the replaced key is still taken (0: refused at once, for a leaked key).",
        ),
    ] = 24.0,
) -> None:
    """Register a node's new agent key; the old one is taken until the overlap ends (audited)."""
    from tre.federation.hub.nodes import rotate_node_key

    _unit(rotate_node_key, ADMIN, name, key, overlap_hours * 3600)
    after = f"for {overlap_hours:g} h more" if overlap_hours > 0 else "no more"
    console.print(
        f"node [bold]{name}[/]: new key registered; the replaced key is taken {after}", highlight=False
    )


@hub_node_app.command("list")
def hub_node_list() -> None:
    """Registered nodes: online, offline (silent for longer than the lease) or revoked; its
    key, and during a rotation's overlap the old key still taken and until when."""
    from tre.federation.hub.nodes import list_nodes, listed

    settings = get_settings()
    for n in _unit(lambda s: [listed(node, settings.federation_lease_s) for node in list_nodes(s)]):
        line = f"{n['name']}\t{n['status']}\t{n['public_key']}"
        if n["previous_key"]:
            line += f"\talso taken until {n['previous_key_until']}: {n['previous_key']}"
        console.print(line, highlight=False, soft_wrap=True)  # a key is copied whole


@hub_project_app.command("create")
def hub_project_create(
    name: str,
    nodes: Annotated[str, typer.Option("--nodes", help="Comma-separated node names.")],
    member: Annotated[list[str] | None, typer.Option("--member", help="Researcher (repeatable).")] = None,
) -> None:
    """A federated project spanning these nodes (each node still decides whether to take it on)."""
    from tre import registry
    from tre.federation.hub.nodes import create_project

    def create(s: Any) -> None:
        create_project(s, ADMIN, name, name, [n.strip() for n in nodes.split(",") if n.strip()])
        for user in member or []:
            registry.add_member(s, ADMIN, name, user)

    _unit(create)
    console.print(f"federated project [bold]{name}[/] spans {nodes}")


@hub_project_app.command("add-member")
def hub_project_add_member(project: str, user: str) -> None:
    """Let a hub researcher submit to a federated project (each node still checks its own members)."""
    from tre import registry

    _unit(lambda s: registry.add_member(s, ADMIN, project, user))
    console.print(f"{user} is a member of {project}")


def _field(value: object) -> str:
    """One value the hub sent, for a line of a table (`untrusted`: one line, no markup)."""
    return untrusted(value)


def _print_job(job: dict[str, Any]) -> None:
    # Every field the hub sent goes through `_field`: a hub (or a node through it) must not
    # restyle the terminal, hide a line or set the clipboard with markup or escapes.
    u = _field
    console.print(
        f"federated job [bold]{u(job['id'])}[/] ({u(job['project_id'])}): {u(job['state'])}", highlight=False
    )
    for c in job["children"]:
        files = ", ".join(f"{u(f['name'])} {u(str(f['sha256'])[:12])}" for f in c["files"]) or "-"
        reason = f" ({u(c['reason'])})" if c["reason"] else ""
        console.print(
            f"  {u(c['node'])}\t{u(c['node_status'])}\t{u(c['state'])}{reason}\t{files}", highlight=False
        )


@hub_job_app.command("show")
def hub_job_show(job_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The parent's state and each node's state, reason and released files, side by side."""
    client = ApiClient()
    job = client.get(f"/hub/v1/jobs/{resolve_hub_job_id(client, job_id)}")
    if as_json:
        console.print_json(json.dumps(job))
    else:
        _print_job(job)


@hub_app.command("jobs")
def hub_jobs() -> None:
    """Your federated jobs (all of them for admins and auditors), newest first."""
    jobs = ApiClient().get("/hub/v1/jobs")
    if not jobs:
        console.print("no federated jobs yet (submit one with `tre submit -p FEDPROJECT ...` at the hub)")
    for j in jobs:
        row = (j["id"], j["project_id"], j["state"], j["created_at"])
        console.print("\t".join(_field(v) for v in row), highlight=False)


@hub_app.command("results")
def hub_results(
    job_id: str, out: Annotated[Path, typer.Option("--out", "-o", help="Folder: one sub-folder per node.")]
) -> None:
    """Download what each node released, into OUT/<node>/, hashes verified; with each node's
    disclosure record and signed audit checkpoint next to its files."""
    from tre.federation.names import is_file_name
    from tre.registry import is_slug

    client = ApiClient()
    job_id = resolve_hub_job_id(client, job_id)
    job = client.get(f"/hub/v1/jobs/{job_id}")
    nodes = files = 0
    for c in job["children"]:
        if c["state"] != "released":
            continue
        nodes += 1
        files += len(c["files"])
        if not is_slug(c["node"]) or not all(is_file_name(f["name"]) for f in c["files"]):
            raise CliError(
                f"the hub sent a node or file name that is not one plain path segment ({c['node']!r})"
            )
        folder = out / c["node"]
        folder.mkdir(parents=True, exist_ok=True)
        for f in c["files"]:
            dest = folder / f["name"]
            client.download(
                f"/hub/v1/jobs/{job_id}/results/{c['node']}/{f['name']}",
                dest,
                progress=False,
                expect=("application/octet-stream",),
                sha256=str(f["sha256"]),
            )
        (folder / "disclosure.json").write_text(json.dumps(c["disclosure_record"], indent=2) + "\n")
        (folder / "checkpoint.note").write_text(c["checkpoint"] or "")
    out.mkdir(parents=True, exist_ok=True)  # also when nothing was released yet
    (out / "job.json").write_text(json.dumps({k: v for k, v in job.items()}, indent=2) + "\n")
    _print_job(job)
    # Say what was done: the command printed only the job's table, as `hub job show` does,
    # so nothing told the researcher whether files were fetched or the hashes checked.
    if nodes:
        said = f"downloaded {count(files, 'file')} from {count(nodes, 'node')} into "
        f"{out}/<node>/, each matching its SHA-256"
    else:
        said = (
            f"no node has released anything yet: nothing downloaded (the job's record is in {out}/job.json)"
        )
    console.print(said, highlight=False, soft_wrap=True, markup=False)


@hub_app.command("search")
def hub_search(
    modality: str | None = None,
    body_part: Annotated[str | None, typer.Option("--body-part")] = None,
    condition: str | None = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the nodes' answers.")] = 5.0,
) -> None:
    """How many subjects/studies match, per node (counts only; small counts withheld by each node)."""
    import time

    client = ApiClient()
    result = client.post(
        "/hub/v1/search", json={"modality": modality, "body_part": body_part, "condition": condition}
    )
    deadline = time.monotonic() + wait
    while any(n["state"] == "waiting" for n in result["nodes"]) and time.monotonic() < deadline:
        time.sleep(0.5)
        result = client.get(f"/hub/v1/search/{result['id']}")
    for n in result["nodes"]:
        datasets = (n.get("answer") or {}).get("datasets", [])
        shown = "; ".join(
            f"{d['dataset_id']}: subjects={d['subjects'] if d['subjects'] is not None else 'withheld'} "
            f"studies={d['studies'] if d['studies'] is not None else 'withheld'}"
            for d in datasets
        )
        console.print("\t".join(_field(v) for v in (n["node"], n["state"], shown or "-")), highlight=False)


# -- node ----------------------------------------------------------------------------------------
@node_app.command("key")
def node_key(
    rotate: Annotated[
        bool,
        typer.Option(
            "--rotate",
            help="Make a new agent key (the old file is kept); the hub's admin registers it with"
            " `tre hub node rotate-key`, then restart the agent.",
        ),
    ] = False,
) -> None:
    """Print this node's agent key and audit log key (the hub's admin registers both)."""
    from tre.audit.signing import get_signer
    from tre.federation.keys import node_key as load
    from tre.federation.keys import rotate_node_key
    from tre.federation.signing import encode_public_key

    settings = get_settings()
    agent_key = rotate_node_key(settings) if rotate else load(settings)
    console.print(f"key {encode_public_key(agent_key)}", highlight=False)
    console.print(
        f"audit-key {get_signer(settings.keys_dir).verifier_key.encode()}", highlight=False, soft_wrap=True
    )


@node_app.command("join")
def node_join(
    name: Annotated[str, typer.Option("--name", help="This node's name at the hub.")],
    hub: Annotated[str, typer.Option("--hub", help="The hub's URL.")],
    hub_key: Annotated[str, typer.Option("--hub-key", help="The hub's public key (`tre hub key`), pinned.")],
) -> None:
    """Remember the hub and pin its key; print what the hub's admin must register."""
    from tre.federation.node.config import join

    join(get_settings(), name, hub, hub_key)
    node_key(rotate=False)


@node_app.command("map")
def node_map(
    fed_project: str,
    project: Annotated[str, typer.Option("--project", "-p", help="The local project it runs as.")],
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", "-d", help="Local dataset (repeatable).")
    ] = None,
    code_review: Annotated[
        bool,
        typer.Option(
            "--code-review/--no-code-review",
            help="Run only code archives this node's admin approved (`tre node approve-code`).",
        ),
    ] = False,
) -> None:
    """Take a federated project on: its children run here as PROJECT on these datasets.

    Mapping again replaces the earlier mapping, code review included."""
    from tre.federation.node.mapping import map_project

    _unit(map_project, ADMIN, fed_project, project, dataset or [], code_review)
    review = " under code review" if code_review else ""
    console.print(f"federated project {fed_project} runs here as {project}{review}", highlight=False)


@node_app.command("approve-code")
def node_approve_code(fed_project: str, code_hash: str) -> None:
    """Under code review: let this code archive (its SHA-256, as `tre hub job show --json`
    and the node's audit log name it) run for the federated project here."""
    from tre.federation.node.mapping import approve_code

    _unit(approve_code, ADMIN, fed_project, code_hash)
    console.print(f"code {code_hash} may run here for {fed_project}", highlight=False)


@node_app.command("agent")
def node_agent() -> None:
    """Run only the agent (the API and worker run elsewhere, e.g. `tre serve`)."""
    from egress_review import federated
    from tre import audit
    from tre.cli import interrupts
    from tre.federation.node.agent import NodeAgent
    from tre.federation.node.config import load
    from tre.federation.node.search import answer_counts

    interrupts.serve_until_stopped()
    settings = get_settings()
    engine = _engine()
    audit.configure(engine, settings.keys_dir)
    agent = NodeAgent(settings, engine, load(settings), federated, answer_counts)
    agent.start()
    console.print("tre node agent: polling the hub; Ctrl-C stops it", highlight=False)
    interrupts.wait_for_stop()
    agent.stop()
    console.print("tre node agent: stopped", highlight=False)


@node_app.command("children")
def node_children() -> None:
    """The federated child jobs this node received (states as reported to the hub)."""
    from tre.federation.node.agent import child_rows

    for r in child_rows(_engine()):
        row = [r["child_id"], r["fed_job_id"], r["state"], r["reason"] or "-", r["local_job_id"] or "-"]
        console.print("\t".join(row), highlight=False)

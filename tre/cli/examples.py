"""One worked example at the foot of every command's `--help`.

A newcomer reads `tre egress vote --help` to learn how to call it; the option list says what
may be given, an example says what is usually given. The examples live here, keyed by the
command's full path, and `attach` copies each into the matching Typer command or group as
its epilog before the click commands are built. Every command must have one:
`tests/test_cli_help_examples.py` fails on a command without an example and checks each
example against the CLI (command, options, arguments) as the docs' commands are checked, so
an example cannot drift from the command it documents.

Words in capitals (JOB, REQ, DIGEST) stand for a value the reader fills in, as in the docs.
"""

from __future__ import annotations

import typer
from typer.main import get_command_name
from typer.models import CommandInfo, DefaultPlaceholder, TyperInfo

EXAMPLES: dict[str, tuple[str, ...]] = {
    # Researchers
    "tre login": ("tre login < token.txt", "tre admin token --user alice --role researcher | tre login"),
    "tre logout": ("tre logout",),
    "tre whoami": ("tre whoami --json",),
    "tre submit": (
        "tre submit -p lung -d lidc --image REF --code . --wait -- python3 analysis.py",
        "tre submit -p lung -d lidc --input-job JOB --image REF --code . -- python3 train.py",
    ),
    "tre jobs": ("tre jobs --state running", "tre jobs -p lung --json"),
    "tre logs": ("tre logs JOB -f",),
    "tre outputs": ("tre outputs JOB", "tre outputs JOB --all --json"),
    "tre cancel": ("tre cancel JOB",),
    "tre preprocess": (
        "tre preprocess -p lung -d lidc --spacing 1 1 1 --window -1000 400 --wait",
        "tre preprocess -p lung -d lidc --dtype int16 --max-error 0.001",
    ),
    "tre job": ("tre job show JOB",),
    "tre job show": ("tre job show JOB --json",),
    "tre job code": ("tre job code JOB -o code.tar.gz", "tre job code JOB --list"),
    "tre dataset": ("tre dataset list",),
    "tre dataset add": ("tre dataset add lidc /srv/tre/lidc --policy default --condition icd10:C34",),
    "tre dataset list": ("tre dataset list --json",),
    "tre grant": ("tre grant list -p lung",),
    "tre grant add": ("tre grant add lung lidc --days 90 --reason 'DAC approval 2026-11'",),
    "tre grant list": ("tre grant list -p lung",),
    "tre grant revoke": ("tre grant revoke GRANT --reason 'study closed'",),
    "tre image": ("tre image list --usable -p lung",),
    "tre image import": ("tre image import my-analysis.tar --name my-analysis",),
    "tre image list": ("tre image list --usable -p lung",),
    "tre image approve": ("tre image approve registry.tre.local/my-analysis@sha256:DIGEST --project lung",),
    "tre image revoke": ("tre image revoke registry.tre.local/my-analysis@sha256:DIGEST --project lung",),
    "tre image push": ("tre image push registry.tre.local/my-analysis@sha256:DIGEST",),
    "tre image rm": ("tre image rm registry.tre.local/my-analysis@sha256:DIGEST",),
    "tre catalogue": ("tre catalogue count --modality CT",),
    "tre catalogue show": ("tre catalogue show --json",),
    "tre catalogue export": ("tre catalogue export -o catalogue.jsonld",),
    "tre catalogue count": ("tre catalogue count --modality CT --condition icd10:C34",),
    # The airlock
    "tre egress": ("tre egress request JOB summary.csv --why 'aggregate counts for the paper'",),
    "tre egress request": (
        "tre egress request JOB summary.csv montage.png --why 'aggregate counts for the paper'",
        "tre egress request JOB '#2' --why 'the second file tre outputs lists'",
    ),
    "tre egress list": ("tre egress list --state awaiting_review",),
    "tre egress show": ("tre egress show REQ",),
    "tre egress vote": ("tre egress vote REQ approve -m 'aggregate counts only'",),
    "tre egress resolve": ("tre egress resolve REQ reject -m 'identifiable ages'",),
    "tre egress withdraw": ("tre egress withdraw REQ -m 'wrong file'",),
    "tre egress disclosure": ("tre egress disclosure REQ -o disclosure.json",),
    "tre egress download": ("tre egress download REQ -d results/",),
    # Auditors
    "tre audit": ("tre audit export bundle.jsonl && tre audit verify bundle.jsonl --key log.vkey",),
    "tre audit public-key": ("tre audit public-key > log.vkey",),
    "tre audit export": ("tre audit export bundle.jsonl",),
    "tre audit verify": ("tre audit verify bundle.jsonl --key log.vkey",),
    "tre audit search": ("tre audit search --dataset lidc --action dataset.read --since 2026-11-01",),
    "tre audit checkpoint": ("tre audit checkpoint --json",),
    "tre audit prove": ("tre audit prove 42",),
    "tre audit check": ("tre audit check",),
    "tre audit tiles": ("tre audit tiles --mirror https://mirror.example.org/tlog",),
    "tre audit rotate-key": ("tre audit rotate-key --overlap 168",),
    "tre audit witness": ("tre audit witness run",),
    "tre audit witness add": ("tre audit witness add http://10.0.0.5:8790 VKEY",),
    "tre audit witness run": ("tre audit witness run",),
    "tre witness": ("tre witness key --name dpo.hospital.example",),
    "tre witness key": ("tre witness key --name dpo.hospital.example",),
    "tre witness serve": (
        "tre witness serve --name dpo.hospital.example --log VKEY --host 10.0.0.5 --port 8790",
    ),
    # Admins
    "tre serve": ("tre serve", "tre serve --host 0.0.0.0 --port 8765 --no-worker"),
    "tre worker": ("tre worker --concurrency 2",),
    "tre demo": ("tre demo",),
    "tre admin": ("tre admin init --user admin",),
    "tre admin init": ("tre admin init --user admin",),
    "tre admin dac": ("tre admin dac list",),
    "tre admin dac assign": ("tre admin dac assign lidc dac-one",),
    "tre admin dac unassign": ("tre admin dac unassign lidc dac-one",),
    "tre admin dac list": ("tre admin dac list",),
    "tre admin user": ("tre admin user alice --role researcher", "tre admin user alice --disable"),
    "tre admin token": ("tre admin token --user alice --role researcher --ttl 3600 | tre login",),
    "tre admin build-image": ("tre admin build-image --approve lung",),
    "tre admin build-control-image": ("tre admin build-control-image -o tre-control.tar",),
    "tre admin warm-kernels": ("tre admin warm-kernels",),
    "tre admin image-store-recover": ("tre admin image-store-recover",),
    "tre admin doctor": ("tre admin doctor", "tre admin doctor --json"),
    "tre project": ("tre project create lung --max-cpu 4 && tre project add-member lung alice",),
    "tre project create": ("tre project create lung --name 'Lung CT' --max-cpu 4 --max-output-mb 4096",),
    "tre project add-member": ("tre project add-member lung alice",),
    "tre project list": ("tre project list --json",),
    "tre project show": ("tre project show lung",),
    "tre project quota": ("tre project quota lung",),
    "tre project set-quota": ("tre project set-quota lung --max-output-mb 4096",),
    # Federation
    "tre hub": ("tre hub serve",),
    "tre hub serve": ("tre hub serve --host 0.0.0.0 --port 8770",),
    "tre hub key": ("tre hub key",),
    "tre hub jobs": ("tre hub jobs",),
    "tre hub results": ("tre hub results JOB -o results/",),
    "tre hub search": ("tre hub search --modality CT --body-part CHEST",),
    "tre hub job": ("tre hub job show JOB",),
    "tre hub job show": ("tre hub job show JOB --json",),
    "tre hub node": ("tre hub node list",),
    "tre hub node add": ("tre hub node add node-a --key NODE_KEY --audit-key AUDIT_VKEY",),
    "tre hub node list": ("tre hub node list",),
    "tre hub node revoke": ("tre hub node revoke node-b",),
    "tre hub node rotate-key": ("tre hub node rotate-key node-a --key NEW_NODE_KEY --overlap-hours 24",),
    "tre hub project": ("tre hub project create fedlung --nodes node-a,node-b --member alice",),
    "tre hub project create": ("tre hub project create fedlung --nodes node-a,node-b --member alice",),
    "tre hub project add-member": ("tre hub project add-member fedlung bob",),
    "tre node": ("tre node join --name node-a --hub https://hub.example.org --hub-key HUB_KEY",),
    "tre node key": ("tre node key", "tre node key --rotate"),
    "tre node join": ("tre node join --name node-a --hub https://hub.example.org --hub-key HUB_KEY",),
    "tre node map": ("tre node map fedlung --project lung --dataset lidc",),
    "tre node approve-code": ("tre node approve-code fedlung CODE_HASH",),
    "tre node agent": ("tre node agent",),
    "tre node children": ("tre node children",),
}


def epilog(path: str) -> str:
    """The help's closing paragraph for the command at `path` ("tre egress vote").

    Each example is a paragraph of its own: Typer's help joins single line breaks, so a
    blank line keeps two examples on two lines.
    """
    examples = EXAMPLES[path]
    label = "Example:" if len(examples) == 1 else "Examples:"
    return "\n\n".join([label, *(f"  {line}" for line in examples)])


def _group_name(info: TyperInfo) -> str:
    name = info.name if isinstance(info.name, str) else None
    if name is None and info.typer_instance is not None and isinstance(info.typer_instance.info.name, str):
        name = info.typer_instance.info.name
    if name is None:
        raise ValueError("a command group was added without a name")
    return name


def _command_name(info: CommandInfo) -> str:
    if info.name:
        return info.name
    if info.callback is None:
        raise ValueError("a command was registered without a callback")
    return get_command_name(info.callback.__name__)


def attach(app: typer.Typer, path: str = "tre") -> None:
    """Set the example epilog on every command and group under `app` that has an example.

    A command without one is left as it is; the tests name it, so that a new command is not
    shipped without showing how it is called.
    """
    for command in app.registered_commands:
        sub = f"{path} {_command_name(command)}"
        if sub in EXAMPLES and command.epilog is None:
            command.epilog = epilog(sub)
    for group in app.registered_groups:
        sub = f"{path} {_group_name(group)}"
        if sub in EXAMPLES and isinstance(group.epilog, DefaultPlaceholder | None):
            group.epilog = epilog(sub)
        if group.typer_instance is not None:
            attach(group.typer_instance, sub)

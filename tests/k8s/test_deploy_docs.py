"""docs/deploy.md's commands agree with the manifests they act on.

An operator types the page's `kubectl` lines literally: the Secret they create must be the
one the Deployments read (name, key, namespace), the namespace must exist when they create
it (the first, policy-phase apply makes it), the label selector of that apply must pick the
namespace, the parameters, the policies and their bindings and nothing that holds rights,
the port forward and the `exec` targets must exist, and the three places the control-plane
image's digest is pinned must agree. Every `k8s/...` path the page names exists. Parsing
only (the rendered overlay through `tests/k8s/kustomize_lite.py`): well under a second.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.kustomize_lite import render

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "deploy.md"
POLICY_PHASE = "tre.io/install-phase=policy"


def page_commands() -> list[list[str]]:
    """Every command of the page's ``sh`` blocks, continuation lines joined, comments dropped."""
    text = PAGE.read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            for part in re.split(r"\s(?:\|\||&&|\|)\s", line.split(" # ")[0]):
                words = shlex.split(part.strip().rstrip("&").strip(), comments=True)
                if words:
                    commands.append(words)
    return commands


def kubectl(*verbs: str) -> list[list[str]]:
    return [c for c in page_commands() if c[0] == "kubectl" and c[1 : 1 + len(verbs)] == list(verbs)]


def option(words: list[str], name: str) -> str:
    for i, word in enumerate(words):
        if word == name:
            return words[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    raise AssertionError(f"{name} missing in {' '.join(words)}")


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render(ROOT / "k8s" / "overlays" / "gpu-pool")


def find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in objs:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"no {kind} {name} in the rendered overlay")


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return list(deployment["spec"]["template"]["spec"]["containers"])


def test_the_database_secret_is_the_one_the_deployments_read(rendered: list[dict[str, Any]]) -> None:
    (create,) = kubectl("-n", "tre-system", "create", "secret")
    name = create[create.index("generic") + 1]
    key = option(create, "--from-literal").split("=", 1)[0]
    assert option(create, "--from-literal").split("=", 1)[1].startswith("postgresql+psycopg://")
    for deployment in ("tre-api", "tre-worker"):
        obj = find(rendered, "Deployment", deployment)
        assert obj["metadata"]["namespace"] == "tre-system"
        (env,) = [e for e in containers(obj)[0]["env"] if e["name"] == "TRE_DATABASE_URL"]
        assert env["valueFrom"]["secretKeyRef"] == {"name": name, "key": key}


def test_the_secret_is_created_after_the_apply_that_makes_its_namespace(
    rendered: list[dict[str, Any]],
) -> None:
    commands = page_commands()
    policy_apply = next(
        i for i, c in enumerate(commands) if c[:2] == ["kubectl", "apply"] and POLICY_PHASE in c
    )
    secret = next(
        i for i, c in enumerate(commands) if c[:5] == ["kubectl", "-n", "tre-system", "create", "secret"]
    )
    full_apply = next(
        i
        for i, c in enumerate(commands)
        if i > secret and c[:2] == ["kubectl", "apply"] and POLICY_PHASE not in c
    )
    assert policy_apply < secret < full_apply
    namespace = find(rendered, "Namespace", "tre-system")
    assert namespace["metadata"]["labels"]["tre.io/install-phase"] == "policy"


def test_the_policy_phase_selects_policies_and_nothing_that_holds_rights(
    rendered: list[dict[str, Any]],
) -> None:
    key, value = POLICY_PHASE.split("=")
    chosen = {o["kind"] for o in rendered if o["metadata"].get("labels", {}).get(key) == value}
    assert {
        "Namespace",
        "ConfigMap",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    } == chosen
    bindings = [o for o in rendered if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert bindings and all(o["metadata"]["labels"].get(key) == value for o in bindings)


def test_port_forward_and_exec_targets_exist(rendered: list[dict[str, Any]]) -> None:
    (forward,) = kubectl("-n", "tre-system", "port-forward")
    local, remote = forward[5].split(":")
    service = find(rendered, "Service", forward[4].removeprefix("svc/"))
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == int(remote)]
    api = find(rendered, "Deployment", "tre-api")
    command = containers(api)[0]["command"]
    assert port["targetPort"] == int(command[command.index("--port") + 1]) == 8765 == int(local)
    for words in kubectl("-n", "tre-system", "exec") + kubectl("-n", "tre-system", "rollout"):
        target = next(w for w in words if w.startswith("deploy/"))
        find(rendered, "Deployment", target.removeprefix("deploy/"))


def test_the_control_plane_digest_is_pinned_alike_everywhere(rendered: list[dict[str, Any]]) -> None:
    kustomization = yaml.safe_load((ROOT / "k8s" / "base" / "kustomization.yaml").read_text())
    (entry,) = [i for i in kustomization["images"] if i["name"] == "ghcr.io/tre-project/tre"]
    image = f"{entry['name']}@{entry['digest']}"
    params = find(rendered, "ConfigMap", "tre-admission-params")["data"]
    worker = containers(find(rendered, "Deployment", "tre-worker"))[0]
    (code_image,) = [e["value"] for e in worker["env"] if e["name"] == "TRE_K8S_CODE_IMAGE"]
    api = containers(find(rendered, "Deployment", "tre-api"))[0]
    assert image == params["code-image"] == code_image == worker["image"] == api["image"]


def test_every_manifest_path_the_page_names_exists() -> None:
    paths = set(re.findall(r"`(k8s/[A-Za-z0-9_./-]+)`", PAGE.read_text()))
    assert paths, "the page names no manifest: the pattern is wrong"
    missing = sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists())
    assert not missing, f"docs/deploy.md names files that do not exist: {missing}"


def test_the_postgres_network_policy_matches_the_page(rendered: list[dict[str, Any]]) -> None:
    policy = find(rendered, "NetworkPolicy", "tre-postgres")
    (rule,) = policy["spec"]["egress"]
    (peer,) = rule["to"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "tre-db"}
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "postgresql"}
    assert [p["port"] for p in rule["ports"]] == [5432]
    text = " ".join(PAGE.read_text().split())
    assert "`app.kubernetes.io/name=postgresql` in namespace `tre-db`" in text
    assert "postgres.tre-db.svc:5432" in text

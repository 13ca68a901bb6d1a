"""The NetworkPolicies under k8s/ (base and every overlay, rendered) open nothing wide.

An operator's overlay sets the worker's API-server addresses (k8s/base/networkpolicies.yaml);
a careless one (0.0.0.0/0, a /16, the metadata endpoint, a namespaceSelector and a podSelector
as two peers, which Kubernetes ORs) would let the control plane reach far more than it needs.
Project namespaces get one deny-all policy, pinned by the admission policy (test_manifests).
The e2e network scenario (k8s/e2e/drive.py) probes IPv4 and IPv6 targets on a real cluster.
"""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.conftest import ROOT
from tests.k8s.kustomize_lite import render
from tre.executors.kubernetes import manifests as m
from tre.executors.kubernetes.config import KubernetesSettings

# Addresses no control-plane rule may reach, whatever its prefix: link-local (cloud metadata
# at 169.254.169.254, fe80::/10), the IPv6 metadata endpoint of AWS Nitro, loopback.
FORBIDDEN = [
    ipaddress.ip_network(n)
    for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "127.0.0.0/8", "::1/128")
]


def rendered_sets() -> dict[str, list[dict[str, Any]]]:
    base = [
        d
        for f in sorted((ROOT / "k8s" / "base").glob("*.yaml"))
        if f.name != "kustomization.yaml"
        for d in yaml.safe_load_all(f.read_text())
        if d
    ]
    out = {"base": base}
    for k in sorted((ROOT / "k8s" / "overlays").glob("*/kustomization.yaml")):
        out[k.parent.name] = render(k.parent)
    return out


def problems(policy: dict[str, Any]) -> list[str]:
    """What is wrong with one control-plane NetworkPolicy (empty: nothing)."""
    name = policy["metadata"]["name"]
    out = []
    spec = policy["spec"]
    for direction, peers_key in (("egress", "to"), ("ingress", "from")):
        for rule in spec.get(direction) or []:
            if not rule.get("ports"):
                out.append(f"{name}: an {direction} rule without ports (every port)")
            peers = rule.get(peers_key)
            if not peers:
                out.append(f"{name}: an {direction} rule without peers (everywhere)")
                continue
            for peer in peers:
                block = peer.get("ipBlock")
                if block is not None:
                    net = ipaddress.ip_network(block["cidr"], strict=True)
                    if net.prefixlen != net.max_prefixlen:
                        out.append(f"{name}: {net} is not a single address")
                    if any(net.overlaps(bad) for bad in FORBIDDEN if bad.version == net.version):
                        out.append(f"{name}: {net} reaches link-local, metadata or loopback")
                    if block.get("except"):
                        out.append(f"{name}: ipBlock with except (a wide block minus holes)")
                elif not ("namespaceSelector" in peer and "podSelector" in peer):
                    out.append(f"{name}: a peer that is not one namespace+pod selector item (ORed)")
                elif not peer["namespaceSelector"].get("matchLabels") or not peer["podSelector"].get(
                    "matchLabels"
                ):
                    out.append(f"{name}: an empty selector in a peer (all namespaces or all pods)")
    return out


@pytest.mark.parametrize("which", sorted(rendered_sets()))
def test_control_plane_policies_open_nothing_wide(which: str) -> None:
    docs = rendered_sets()[which]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = [
        p
        for p in policies
        if p["metadata"]["name"] == "default-deny-all"
        and p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, f"{which}: no default-deny-all in tre-system"
    assert [x for p in policies for x in problems(p)] == []


def test_the_project_namespace_policy_denies_every_family() -> None:
    """Deny-all with no rule at all: IPv4, IPv6, DNS, the API server and other namespaces alike."""
    (np,) = [o for o in m.namespace_objects("p", KubernetesSettings()) if o["kind"] == "NetworkPolicy"]
    assert np["spec"]["podSelector"] == {} and set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not np["spec"].get("egress") and not np["spec"].get("ingress")


@pytest.mark.parametrize(
    ("peer", "words"),
    [
        ({"ipBlock": {"cidr": "0.0.0.0/0"}}, "not a single address"),
        ({"ipBlock": {"cidr": "::/0"}}, "not a single address"),
        ({"ipBlock": {"cidr": "169.254.169.254/32"}}, "link-local"),
        ({"ipBlock": {"cidr": "fd00:ec2::254/128"}}, "link-local"),
        ({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}, "not a single address"),
        ({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}, "ORed"),
        ({"namespaceSelector": {}, "podSelector": {"matchLabels": {"a": "b"}}}, "empty selector"),
    ],
)
def test_the_checker_finds_a_careless_overlay(peer: dict[str, Any], words: str) -> None:
    worker = next(
        d
        for d in rendered_sets()["base"]
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "tre-worker-apiserver"
    )
    assert problems(worker) == []
    bad = copy.deepcopy(worker)
    bad["spec"]["egress"][0]["to"] = [peer]
    assert any(words in p for p in problems(bad)), problems(bad)
    no_ports = copy.deepcopy(worker)
    del no_ports["spec"]["egress"][0]["ports"]
    assert any("without ports" in p for p in problems(no_ports))


def test_the_e2e_network_scenario_probes_ipv6_and_metadata() -> None:
    drive = (Path(ROOT) / "k8s" / "e2e" / "drive.py").read_text()
    for target in ("169.254.169.254", "fd00:ec2::254", "2606:4700:4700::1111", "E2E_API_IPV6"):
        assert target in drive, target

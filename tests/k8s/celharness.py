"""The project's CEL harness: evaluates k8s/base/admission-policy.yaml like the API server.

`cel-python` runs each ValidatingAdmissionPolicy that matches a request (resource rules,
operation, match conditions), with its ``params`` taken from k8s/base/admission-params.yaml,
its ``variables`` computed in order, then every validation; an evaluation error counts as
a denial (``failurePolicy: Fail``). ``namespaceObject`` is the request's namespace (by default
a labelled project namespace; pass ``namespace`` to model another one), and a binding's
``namespaceSelector`` is applied to its labels. What it does not model: the API server's CEL
type checking and its
Kubernetes-specific CEL libraries (the policies use none), and the mutating admission that
runs first (tests add the default tolerations the DefaultTolerationSeconds plugin adds).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celpy
import yaml

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILE = ROOT / "k8s" / "base" / "admission-policy.yaml"
PARAMS_FILE = ROOT / "k8s" / "base" / "admission-params.yaml"
WORKER = "system:serviceaccount:tre-system:tre-controller"
JOB_CONTROLLER = "system:serviceaccount:kube-system:job-controller"
RESOURCES = {
    "Job": ("batch", "jobs"),
    "Pod": ("", "pods"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims"),
    "Namespace": ("", "namespaces"),
    "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings"),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
    "ResourceQuota": ("", "resourcequotas"),
    "LimitRange": ("", "limitranges"),
    "ServiceAccount": ("", "serviceaccounts"),
    # CONNECT requests: the object is the options of the connection, the pod is request.name.
    "PodExecOptions": ("", "pods/exec"),
    "PodAttachOptions": ("", "pods/attach"),
    "PodPortForwardOptions": ("", "pods/portforward"),
}
PROJECT_NAMESPACE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {
        "name": "tre-p-e2e",
        "labels": {
            "kubernetes.io/metadata.name": "tre-p-e2e",
            "tre.io/project-namespace": "true",
            "pod-security.kubernetes.io/enforce": "restricted",
        },
    },
}


def to_cel(x: Any) -> Any:
    """JSON to CEL values; bool before int (celpy's json_to_cel turns True into IntType(1))."""
    ct = celpy.celtypes
    if type(x).__module__ == ct.__name__:
        return x  # already a CEL value (a computed variable)
    if isinstance(x, bool):
        return ct.BoolType(x)
    if isinstance(x, int):
        return ct.IntType(x)
    if isinstance(x, float):
        return ct.DoubleType(x)
    if isinstance(x, str):
        return ct.StringType(x)
    if isinstance(x, dict):
        return ct.MapType({ct.StringType(k): to_cel(v) for k, v in x.items()})
    if isinstance(x, list):
        return ct.ListType([to_cel(v) for v in x])
    if x is None:
        return None
    raise TypeError(f"no CEL conversion for {type(x).__name__}")


def policies() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all(POLICY_FILE.read_text())
    return {d["metadata"]["name"]: d for d in docs if d and d["kind"] == "ValidatingAdmissionPolicy"}


def params() -> dict[str, Any]:
    return dict(yaml.safe_load(PARAMS_FILE.read_text()))


def policy(name: str) -> dict[str, Any]:
    return policies()[name]


_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def _eval(expr: str, activation: dict[str, Any]) -> Any:
    prog = _PROGRAMS.get(expr)
    if prog is None:
        prog = _PROGRAMS[expr] = _ENV.program(_ENV.compile(expr))
    try:
        return prog.evaluate(activation)
    except celpy.CELEvalError as exc:  # the API server rejects on evaluation errors too
        return exc


def admission_failures(
    pol: dict[str, Any],
    obj: dict[str, Any] | None,
    request: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    param: dict[str, Any] | None = None,
    namespace: dict[str, Any] | None = PROJECT_NAMESPACE,
) -> list[str]:
    """Evaluate variables then validations; returns the messages of the rules that deny."""
    if request is None:
        request = {"operation": "CREATE", "userInfo": {"username": WORKER}}
    base = {
        "object": to_cel(obj),
        "oldObject": to_cel(old),
        "request": to_cel(request),
        "params": to_cel(param if param is not None else params()),
        "namespaceObject": to_cel(namespace),
    }
    variables: dict[str, Any] = {}
    for var in pol["spec"].get("variables", []):
        variables[var["name"]] = _eval(var["expression"], {**base, "variables": to_cel(variables)})
    act = {**base, "variables": to_cel(variables)}
    return [
        rule["message"]
        for rule in pol["spec"]["validations"]
        if _eval(rule["expression"], act) != celpy.celtypes.BoolType(True)
    ]


def _matches(
    pol: dict[str, Any], kind: str, operation: str, request: dict[str, Any], base: dict[str, Any]
) -> bool:
    group, resource = RESOURCES[kind]
    rules = pol["spec"]["matchConstraints"]["resourceRules"]
    if not any(
        group in r["apiGroups"] and resource in r["resources"] and operation in r["operations"] for r in rules
    ):
        return False
    return all(
        _eval(c["expression"], base) == celpy.celtypes.BoolType(True)
        for c in pol["spec"].get("matchConditions", [])
    )


@dataclass
class Verdict:
    denials: list[tuple[str, str]]  # (policy, message)
    matched: list[str]

    @property
    def allowed(self) -> bool:
        return not self.denials


def _selected(binding: dict[str, Any] | None, namespace: dict[str, Any] | None) -> bool:
    """A binding's namespaceSelector (matchLabels only, as ours use) over the request's namespace."""
    selector = ((binding or {}).get("spec", {}).get("matchResources") or {}).get("namespaceSelector")
    if not selector:
        return True
    if namespace is None:  # cluster-scoped objects (a Namespace) are matched against themselves
        return True
    labels = namespace["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def bindings() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all(POLICY_FILE.read_text())
    return {d["spec"]["policyName"]: d for d in docs if d and d["kind"] == "ValidatingAdmissionPolicyBinding"}


def admit(
    obj: dict[str, Any] | None,
    operation: str = "CREATE",
    username: str = WORKER,
    old: dict[str, Any] | None = None,
    namespace: dict[str, Any] | None = PROJECT_NAMESPACE,
    name: str | None = None,
    kind: str | None = None,
) -> Verdict:
    """What every policy that matches the request says about it (by default in a project namespace).

    ``name`` is request.name, which CONNECT requests (exec) need: there it names the pod;
    ``kind`` names the resource when the object carries no type fields.
    """
    kind = kind or (obj or old or {})["kind"]
    target = obj or old or {}
    resource = RESOURCES[kind][1]
    request = {
        "operation": operation,
        "userInfo": {"username": username},
        "resource": {"group": RESOURCES[kind][0], "version": "v1", "resource": resource.split("/")[0]},
        "subResource": resource.split("/")[1] if "/" in resource else "",
        "name": name if name is not None else target.get("metadata", {}).get("name", ""),
        "namespace": target.get("metadata", {}).get("namespace", "") if kind != "Namespace" else "",
    }
    if kind == "Namespace":
        namespace = None  # cluster-scoped: the API server passes no namespaceObject
    base = {
        "object": to_cel(obj),
        "oldObject": to_cel(old),
        "request": to_cel(request),
        "namespaceObject": to_cel(namespace),
    }
    denials: list[tuple[str, str]] = []
    matched: list[str] = []
    binds = bindings()
    for pname, pol in policies().items():
        if not _selected(binds.get(pname), namespace) or not _matches(pol, kind, operation, request, base):
            continue
        matched.append(pname)
        denials += [(pname, m) for m in admission_failures(pol, obj, request, old, namespace=namespace)]
    return Verdict(denials, matched)


def denials_after(job: dict[str, Any], mutate: Callable[[dict[str, Any]], object]) -> list[tuple[str, str]]:
    """The admission denials of a copy of ``job`` whose pod spec ``mutate`` weakened."""
    bad = copy.deepcopy(job)
    mutate(bad["spec"]["template"]["spec"])
    return admit(bad).denials

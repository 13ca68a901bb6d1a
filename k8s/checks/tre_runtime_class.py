"""CKV_TRE_1: pods that run researcher code use a sandboxed RuntimeClass (gVisor or Kata).

Loaded by checkov via ``--external-checks-dir k8s/checks``; runs inside checkov's own venv.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.kubernetes.checks.resource.base_spec_check import BaseK8Check

SANDBOXED = {"gvisor", "runsc", "kata", "kata-qemu", "kata-clh", "kata-fc"}


def pod_spec(conf: dict[str, Any]) -> dict[str, Any]:
    spec = conf.get("spec") or {}
    kind = conf.get("kind")
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    if kind in ("Job", "CronJob"):
        spec = (spec.get("template") or {}).get("spec") or {}
    return spec


class SandboxedRuntimeClass(BaseK8Check):
    def __init__(self) -> None:
        super().__init__(
            name="Job pods must run under a sandboxed RuntimeClass (gVisor or Kata)",
            id="CKV_TRE_1",
            categories=[CheckCategories.KUBERNETES],
            supported_entities=["Job", "CronJob", "Pod"],
        )

    def scan_spec_conf(self, conf: dict[str, Any]) -> CheckResult:
        return (
            CheckResult.PASSED if pod_spec(conf).get("runtimeClassName") in SANDBOXED else CheckResult.FAILED
        )


check = SandboxedRuntimeClass()

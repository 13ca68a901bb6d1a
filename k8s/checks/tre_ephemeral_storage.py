"""CKV_TRE_3: containers request and limit ephemeral-storage equally, so a job cannot fill a node disk."""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckResult
from checkov.kubernetes.checks.resource.base_container_check import BaseK8sContainerCheck


class EphemeralStorage(BaseK8sContainerCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Containers must set equal ephemeral-storage requests and limits", id="CKV_TRE_3"
        )

    def scan_container_conf(self, metadata: dict[str, Any], conf: dict[str, Any]) -> CheckResult:
        self.evaluated_container_keys = ["resources"]
        res = conf.get("resources") or {}
        req = (res.get("requests") or {}).get("ephemeral-storage")
        lim = (res.get("limits") or {}).get("ephemeral-storage")
        return CheckResult.PASSED if req is not None and req == lim else CheckResult.FAILED


check = EphemeralStorage()

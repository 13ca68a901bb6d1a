"""CKV_TRE_2: every Job (and bare Pod) has a hard deadline, so nothing runs unbounded."""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.kubernetes.checks.resource.base_spec_check import BaseK8Check


class ActiveDeadline(BaseK8Check):
    def __init__(self) -> None:
        super().__init__(
            name="Jobs and bare Pods must set activeDeadlineSeconds",
            id="CKV_TRE_2",
            categories=[CheckCategories.KUBERNETES],
            supported_entities=["Job", "CronJob", "Pod"],
        )

    def scan_spec_conf(self, conf: dict[str, Any]) -> CheckResult:
        spec = conf.get("spec") or {}
        if conf.get("kind") == "CronJob":
            spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        if conf.get("kind") == "Pod":
            owners = (conf.get("metadata") or {}).get("ownerReferences") or []
            if any(o.get("kind") == "Job" for o in owners):
                return CheckResult.PASSED  # the owning Job carries the deadline
        deadline = spec.get("activeDeadlineSeconds")
        return CheckResult.PASSED if isinstance(deadline, int) and deadline > 0 else CheckResult.FAILED


check = ActiveDeadline()

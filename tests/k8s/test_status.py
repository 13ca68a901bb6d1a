"""Outcome decisions from recorded Pod/Job JSON, and configuration errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.k8s.fakekube import recording
from tre.executors.base import ExecutorError
from tre.executors.kubernetes import KubernetesExecutor, KubernetesSettings
from tre.executors.kubernetes.status import final_result, job_view, pod_view


def job_pod(name: str) -> dict[str, Any]:
    """A recorded pod with its container named as the executor names it."""
    pod = recording(name)
    for cs in pod["status"].get("containerStatuses", []):
        cs["name"] = "job"
    return pod


def test_err_image_pull_waits_but_backoff_is_fatal() -> None:
    assert not pod_view(job_pod("pod_errimagepull")).fatal_waiting
    view = pod_view(job_pod("pod_imagepullbackoff"))
    assert view.fatal_waiting and view.waiting_reason == "ImagePullBackOff"


def test_evicted_pod_reports_the_cause_in_fixed_words() -> None:
    pod = job_pod("pod_failed_exit3")
    pod["status"].update(
        reason="Evicted",
        message="Pod ephemeral local storage usage exceeds the total limit of containers 1Gi. "
        "Container job was using 1234567Ki, request is 0",
    )
    result = final_result(job_view(recording("job_failed_backofflimit")), pod_view(pod), 1024, 60)
    assert result.state == "failed" and "ephemeral local storage" in result.reason
    # The usage the kubelet quotes is the job's to choose: not in the reason.
    assert "1234567" not in result.reason and "Container" not in result.reason


def test_job_failed_without_a_pod_quotes_the_condition() -> None:
    result = final_result(job_view(recording("job_failed_backofflimit")), None, 1024, 60)
    assert result.state == "failed" and "BackoffLimitExceeded" in result.reason


def test_active_job_is_not_terminal() -> None:
    assert not job_view(recording("job_active")).terminal
    assert job_view(recording("job_complete")).complete


def test_missing_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExecutorError, match="TRE_K8S_KUBECONFIG"):
        KubernetesExecutor(KubernetesSettings(kubeconfig=tmp_path / "nope"))


def test_deadline_while_pending_says_why() -> None:
    deadline = job_view(recording("job_failed_deadline"))
    pending = final_result(deadline, pod_view(job_pod("pod_pending")), 1024, 60)
    assert pending.state == "timed_out" and "could not be scheduled" in pending.reason
    assert "persistentvolumeclaim" in pending.reason  # the scheduler's own words
    no_pod = final_result(deadline, None, 1024, 60)
    assert no_pod.state == "timed_out" and "ResourceQuota" in no_pod.reason
    ran = final_result(deadline, pod_view(job_pod("pod_running")), 1024, 60)
    assert ran.reason.startswith("time limit of 60 s exceeded; Kubernetes stopped the job")

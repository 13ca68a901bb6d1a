"""Reading Job and Pod status into executor outcomes, as pure functions over API JSON.

Kept free of I/O so every failure mode (OOMKilled, DeadlineExceeded, ImagePullBackOff,
eviction) is decided by one small, directly tested piece of code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tre.executors.base import JobResult
from tre.states import JobState

# Waiting reasons after which the container will never start without a human fixing something.
FATAL_WAITING = {
    "ImagePullBackOff": "the image could not be pulled",
    "ErrImageNeverPull": "the image is not present on the node and may not be pulled",
    "InvalidImageName": "the image name is invalid",
    "CreateContainerConfigError": "the container configuration is invalid",
    "CreateContainerError": "the container could not be created",
    "RunContainerError": "the container runtime could not start the container",
}


@dataclass(frozen=True)
class PodView:
    """What the executor needs to know about the job pod at one moment."""

    name: str
    phase: str
    started: bool
    exit_code: int | None
    terminated_reason: str | None
    terminated_message: str | None
    waiting_reason: str | None
    waiting_message: str | None
    pod_reason: str | None
    pod_message: str | None
    deleted: bool = False
    unschedulable: str | None = None  # the scheduler's message while the pod cannot be placed

    @property
    def fatal_waiting(self) -> bool:
        return self.waiting_reason in FATAL_WAITING

    @property
    def finished(self) -> bool:
        return self.exit_code is not None or self.phase in ("Succeeded", "Failed")


def pod_view(pod: dict[str, Any], container: str = "job", deleted: bool = False) -> PodView:
    status = pod.get("status") or {}
    cs: dict[str, Any] = next(
        (c for c in status.get("containerStatuses") or [] if c.get("name") == container), {}
    )
    state = cs.get("state") or {}
    term = state.get("terminated") or (cs.get("lastState") or {}).get("terminated")
    waiting = state.get("waiting") or {}
    return PodView(
        name=(pod.get("metadata") or {}).get("name", ""),
        phase=status.get("phase", "Unknown"),
        started=bool(state.get("running") or term),
        exit_code=term.get("exitCode") if term else None,
        terminated_reason=term.get("reason") if term else None,
        terminated_message=term.get("message") if term else None,
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message"),
        pod_reason=status.get("reason"),
        pod_message=status.get("message"),
        deleted=deleted,
        unschedulable=next(
            (
                c.get("message") or c.get("reason")
                for c in status.get("conditions") or []
                if c.get("type") == "PodScheduled" and c.get("status") == "False"
            ),
            None,
        ),
    )


@dataclass(frozen=True)
class JobView:
    complete: bool
    failed: bool
    reason: str | None
    message: str | None

    @property
    def terminal(self) -> bool:
        return self.complete or self.failed


def job_view(job: dict[str, Any]) -> JobView:
    """Terminal state from conditions; FailureTarget/SuccessCriteriaMet (1.31+) count as decided."""
    complete = failed = False
    reason = message = None
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        kind = cond.get("type")
        if kind in ("Complete", "SuccessCriteriaMet"):
            complete = True
            reason, message = cond.get("reason"), cond.get("message")
        elif kind in ("Failed", "FailureTarget"):
            failed = True
            reason, message = cond.get("reason"), cond.get("message")
    return JobView(complete=complete and not failed, failed=failed, reason=reason, message=message)


def waiting_failure(pod: PodView, image: str) -> JobResult:
    """The result for a container that can never start, quoting the kubelet's own message."""
    what = FATAL_WAITING.get(pod.waiting_reason or "", "the container could not start")
    detail = f": {pod.waiting_message}" if pod.waiting_message else ""
    if pod.waiting_reason == "ImagePullBackOff":
        what = f"the image {image} could not be pulled"
    return JobResult(JobState.failed, None, f"{what} ({pod.waiting_reason}){detail}")


# What the kubelet's eviction message says was short, in fixed words: the message itself
# quotes how much memory or disk the job's container used, numbers the job chose.
EVICTION_CAUSES = (
    ("ephemeral", "ephemeral local storage over its limit"),
    ("memory", "the node ran low on memory"),
    ("disk", "the node ran low on disk"),
    ("pid", "the node ran low on process ids"),
)


def eviction_reason(message: str | None) -> str:
    text = (message or "").lower()
    cause = next((words for key, words in EVICTION_CAUSES if key in text), "no cause given")
    return f"evicted by the node: {cause}"


def final_result(job: JobView, pod: PodView | None, memory_mb: int, time_limit_s: int) -> JobResult:
    """How a finished Job ended, most specific cause first."""
    if job.failed and job.reason == "DeadlineExceeded" and (pod is None or not pod.started):
        why = (
            f"the pod could not be scheduled: {pod.unschedulable}"
            if pod is not None and pod.unschedulable
            else "it never started (no pod was created: check the project's ResourceQuota)"
            if pod is None
            else "the container never started"
        )
        return JobResult(
            JobState.timed_out, None, f"time limit of {time_limit_s} s exceeded before the job ran: {why}"
        )
    if job.failed and job.reason == "DeadlineExceeded":
        return JobResult(
            JobState.timed_out,
            pod.exit_code if pod else None,
            f"time limit of {time_limit_s} s exceeded; Kubernetes stopped the job (DeadlineExceeded)",
        )
    if pod is not None and pod.terminated_reason == "OOMKilled":
        return JobResult(
            JobState.failed,
            pod.exit_code if pod.exit_code is not None else 137,
            f"out of memory: the job exceeded its memory limit of {memory_mb} MiB and was killed (OOMKilled)",
        )
    if pod is not None and pod.pod_reason == "Evicted":
        return JobResult(JobState.failed, pod.exit_code, eviction_reason(pod.pod_message))
    if job.complete and (pod is None or pod.exit_code in (None, 0)):
        return JobResult(JobState.succeeded, 0, "completed")
    if pod is not None and pod.exit_code is not None:
        msg = f"exited with code {pod.exit_code}"
        if pod.terminated_reason and pod.terminated_reason not in ("Error", "Completed"):
            msg += f" ({pod.terminated_reason})"
        return JobResult(JobState.failed, pod.exit_code, msg)
    why = job.reason or "unknown"
    return JobResult(
        JobState.failed, None, f"the Kubernetes job failed ({why}): {job.message or 'no message'}"
    )

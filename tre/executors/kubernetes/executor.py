"""The Kubernetes backend: one locked-down batch/v1 Job per TRE job, in its project's namespace.

Flow of `run`: make sure the project namespace exists with its default-deny NetworkPolicy,
quota and limits; create the Job, then its output PVC owned by the Job; follow the pod with
the watch API (re-listing on 410 Gone) while a thread streams its log; decide the outcome
from Job conditions and container state; copy /output out through a collector pod; delete
everything. `reattach` joins the same flow at the "follow" step, so a restarted worker can
finish a job that kept running in the cluster.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

from kubernetes import client as k8s_client
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from tre.executors.base import Executor, ExecutorError, JobResult, JobSpec, RunControl
from tre.executors.kubernetes import manifests
from tre.executors.kubernetes.collect import CollectError, exec_tar
from tre.executors.kubernetes.config import KubernetesSettings, load_api_client, load_kubernetes_settings
from tre.executors.kubernetes.logs import LogFollower
from tre.executors.kubernetes.staging import MAX_ATTEMPTS, OutputStaging
from tre.executors.kubernetes.status import PodView, final_result, job_view, pod_view, waiting_failure
from tre.plural import agree
from tre.states import JobState

log = logging.getLogger(__name__)

Manifest = dict[str, Any]
HTTP_CONFLICT = 409
HTTP_FORBIDDEN = 403
HTTP_GONE = 410
HTTP_NOT_FOUND = 404
MAX_TRANSIENT_ERRORS = 5


def _raw(resp: Any) -> Manifest:
    """JSON of a response fetched with ``_preload_content=False`` (no model round-trip)."""
    data: Manifest = json.loads(resp.data)
    return data


class KubernetesExecutor(Executor):
    """Runs jobs as Kubernetes Jobs; see the module docstring for the flow."""

    name: ClassVar[str] = "kubernetes"
    supports_reattach: ClassVar[bool] = True

    def __init__(
        self,
        settings: KubernetesSettings | None = None,
        api_client: k8s_client.ApiClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or load_kubernetes_settings()
        self._api = api_client or load_api_client(self.settings)
        # Typed as Any: we send plain dict manifests (the client serialises them unchanged)
        # and read raw JSON with _preload_content=False, which the stubs do not model.
        self.core: Any = k8s_client.CoreV1Api(self._api)
        self.batch: Any = k8s_client.BatchV1Api(self._api)
        self.net: Any = k8s_client.NetworkingV1Api(self._api)
        self.rbac: Any = k8s_client.RbacAuthorizationV1Api(self._api)
        self.admission: Any = k8s_client.AdmissionregistrationV1Api(self._api)
        self._clock = clock
        self._policies_checked = False

    # --- namespace --------------------------------------------------------------------

    def ensure_namespace(self, project_id: str) -> str:
        """Create (or bring up to date) the project's namespace and its guard objects."""
        self._require_admission_policies()
        objs = manifests.namespace_objects(project_id, self.settings)
        ns = objs[0]["metadata"]["name"]
        for obj in objs:
            self._create_or_patch(obj)
        return str(ns)

    def _require_admission_policies(self) -> None:
        """Refuse to provision unless the admission policies are bound (checked once).

        The worker's RBAC lets it create RoleBindings in any namespace; only the policies
        confine that to project namespaces (docs/deploy.md, "Order of installation"). A
        deployment applied in the wrong order, or whose policies were removed, must not
        run jobs. This guards an honest worker; a compromised one is held by installing
        the policies first.
        """
        if self._policies_checked or not self.settings.require_admission_policies:
            return
        missing = []
        for name in manifests.ADMISSION_POLICY_BINDINGS:
            try:
                self.admission.read_validating_admission_policy_binding(name, _preload_content=False)
            except ApiException as exc:
                if exc.status != HTTP_NOT_FOUND:
                    raise ExecutorError(
                        f"cannot check admission policy binding {name}: {_api_reason(exc)}"
                    ) from exc
                missing.append(name)
        if missing:
            raise ExecutorError(
                f"admission policy {agree(len(missing), 'binding', 'bindings')} missing: "
                f"{', '.join(missing)}; refusing to provision project "
                "namespaces without them (apply the policies first: docs/deploy.md, Order of installation)"
            )
        self._policies_checked = True

    def _create_or_patch(self, obj: Manifest) -> None:
        kind = obj["kind"]
        name = obj["metadata"]["name"]
        ns = obj["metadata"].get("namespace")
        ops: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
            "Namespace": (self.core.create_namespace, self.core.patch_namespace),
            "NetworkPolicy": (
                self.net.create_namespaced_network_policy,
                self.net.patch_namespaced_network_policy,
            ),
            "ResourceQuota": (
                self.core.create_namespaced_resource_quota,
                self.core.patch_namespaced_resource_quota,
            ),
            "LimitRange": (self.core.create_namespaced_limit_range, self.core.patch_namespaced_limit_range),
            "RoleBinding": (
                self.rbac.create_namespaced_role_binding,
                self.rbac.patch_namespaced_role_binding,
            ),
            "ServiceAccount": (
                self.core.create_namespaced_service_account,
                self.core.patch_namespaced_service_account,
            ),
        }
        create, patch = ops[kind]
        try:
            if ns is None:
                create(obj, _preload_content=False)
            else:
                create(ns, obj, _preload_content=False)
        except ApiException as exc:
            if exc.status != HTTP_CONFLICT:
                raise ExecutorError(f"cannot create {kind} {name}: {_api_reason(exc)}") from exc
            if ns is None:
                patch(name, obj, _preload_content=False)
            else:
                patch(name, ns, obj, _preload_content=False)

    # --- run / reattach ---------------------------------------------------------------

    def run(self, spec: JobSpec, control: RunControl) -> JobResult:
        spec = manifests.with_dataset_pvcs(spec)
        job_obj = manifests.job(spec, self.settings)
        over = manifests.over_quota(spec, self.settings)
        if over:
            return JobResult(
                JobState.failed,
                None,
                "the job asks for more than a project namespace may use: " + ", ".join(over),
            )
        if self.settings.manage_namespaces:
            ns = self.ensure_namespace(spec.project_id)
        else:
            ns = manifests.namespace_name(spec.project_id, self.settings)
        name = job_obj["metadata"]["name"]
        missing = self._missing_dataset_claims(ns, spec)
        if missing:
            return JobResult(
                JobState.failed,
                None,
                f"dataset {agree(len(missing), 'volume', 'volumes')} not provisioned in namespace "
                f"{ns}: {', '.join(missing)} "
                "(an administrator creates one read-only PVC per granted dataset; see docs/deploy.md)",
            )
        try:
            created = _raw(self.batch.create_namespaced_job(ns, job_obj, _preload_content=False))
        except ApiException as exc:
            if _quota_exceeded(exc):
                return JobResult(JobState.failed, None, _quota_reason(exc))
            if exc.status != HTTP_CONFLICT:
                raise ExecutorError(f"cannot create Job {ns}/{name}: {_api_reason(exc)}") from exc
            created = self._adopt_job(spec, ns, name)
        try:
            pvc = manifests.output_pvc(spec, self.settings, owner=created)
            self.core.create_namespaced_persistent_volume_claim(ns, pvc, _preload_content=False)
        except ApiException as exc:
            if exc.status != HTTP_CONFLICT:  # 409: made by the attempt whose Job was adopted
                self._delete_job(ns, name)
                if _quota_exceeded(exc):
                    return JobResult(JobState.failed, None, _quota_reason(exc))
                raise ExecutorError(
                    f"cannot create the output volume for {name}: {_api_reason(exc)}"
                ) from exc
        ref = f"{ns}/{name}"
        try:
            control.on_started(ref)  # the worker stores the reference (a database write)
        except BaseException:
            # Not recorded, so no later worker could find the Job: remove it rather than
            # leave it running unfollowed (it, its pod and its claim) until its deadline.
            self._delete_job(ns, name)
            self._delete_pvc(ns, manifests.output_pvc_name(spec.job_id))
            raise
        return self._follow_and_finish(spec, ns, name, control, resume=False)

    def _adopt_job(self, spec: JobSpec, ns: str, name: str) -> Manifest:
        """The Job an earlier attempt of this same job created, to follow instead of failing.

        A worker that dies after creating the Job but before the reference is stored leaves
        the job `running` without one, and the next worker calls `run` again (its name comes
        from the job id, so the create answers 409). Failing there left that Job, its pod and
        its claim running in the cluster with nobody following or deleting them. Only a Job
        carrying this job's id label is adopted; anything else under the name is refused.
        """
        try:
            existing = _raw(self.batch.read_namespaced_job(name, ns, _preload_content=False))
        except ApiException as exc:
            raise ExecutorError(f"cannot read the existing Job {ns}/{name}: {_api_reason(exc)}") from exc
        labels = (existing.get("metadata") or {}).get("labels") or {}
        if labels.get(manifests.LABEL_JOB) != manifests.job_label(spec.job_id):
            raise ExecutorError(f"Job {ns}/{name} already exists and is not this job's; not touching it")
        log.warning("adopting Job %s/%s left by an earlier attempt of the same job", ns, name)
        return existing

    def _missing_dataset_claims(self, ns: str, spec: JobSpec) -> list[str]:
        """Dataset PVCs absent from the namespace (else the pod would sit Pending until its deadline)."""
        missing = []
        for ds in spec.datasets:
            if not ds.pvc_name:
                continue  # manifests.job() refuses it with a clear error
            try:
                self.core.read_namespaced_persistent_volume_claim(ds.pvc_name, ns, _preload_content=False)
            except ApiException as exc:
                if exc.status != HTTP_NOT_FOUND:
                    raise ExecutorError(f"cannot read PVC {ns}/{ds.pvc_name}: {_api_reason(exc)}") from exc
                missing.append(ds.pvc_name)
        return missing

    def reattach(self, spec: JobSpec, executor_ref: str, control: RunControl) -> JobResult:
        spec = manifests.with_dataset_pvcs(spec)
        ns, _, name = executor_ref.partition("/")
        if not ns or not name:
            raise ExecutorError(f"malformed Kubernetes executor reference {executor_ref!r}")
        try:
            self.batch.read_namespaced_job(name, ns, _preload_content=False)
        except ApiException as exc:
            if exc.status == HTTP_NOT_FOUND:
                return JobResult(JobState.failed, None, f"Job {executor_ref} no longer exists in the cluster")
            raise ExecutorError(f"cannot read Job {executor_ref}: {_api_reason(exc)}") from exc
        log.info("reattached to %s", executor_ref)
        return self._follow_and_finish(spec, ns, name, control, resume=True)

    def _follow_and_finish(
        self, spec: JobSpec, ns: str, name: str, control: RunControl, resume: bool
    ) -> JobResult:
        follower: LogFollower | None = None
        try:
            result, pod, follower = self._follow(spec, ns, name, control, resume)
            if follower is not None:
                for _ in range(30):  # the container has ended; its log stream ends soon after
                    if follower.join(timeout=1):
                        break
                    control.heartbeat()
            if pod is not None and pod.started and result.state != JobState.cancelled:
                result = self._collect(spec, ns, name, result, control)
            return result
        finally:
            self._delete_job(ns, name)
            self._delete_pvc(ns, manifests.output_pvc_name(spec.job_id))

    # --- following ----------------------------------------------------------------------

    def _follow(
        self, spec: JobSpec, ns: str, name: str, control: RunControl, resume: bool = False
    ) -> tuple[JobResult, PodView | None, LogFollower | None]:
        """Watch the job's pod until the Job is decided; returns the result and last pod state."""
        selector = f"{manifests.LABEL_JOB}={manifests.job_label(spec.job_id)}"
        deadline = self._clock() + spec.time_limit_s + self.settings.deadline_grace_s
        pod: PodView | None = None
        follower: LogFollower | None = None
        rv: str | None = None
        transient_errors = 0

        def see(obj: Manifest, deleted: bool = False) -> None:
            nonlocal pod, follower
            if ((obj.get("metadata") or {}).get("labels") or {}).get(manifests.LABEL_COMPONENT) != "job":
                return
            view = pod_view(obj, deleted=deleted)
            pod = view  # a DELETED event carries the last state the pod had
            if follower is None and view.started and not deleted:
                follower = LogFollower(
                    self.core,
                    ns,
                    view.name,
                    "job",
                    spec.log_path,
                    self.settings.log_limit_mb * 1024 * 1024,
                    resume=resume,
                ).start()

        while True:
            control.heartbeat()
            if control.is_cancelled():
                self._delete_job(ns, name)
                return JobResult(JobState.cancelled, None, "cancelled on request"), pod, follower
            job = self._read_job(ns, name)
            if job is None:
                return (
                    JobResult(JobState.failed, None, f"Job {ns}/{name} was deleted from the cluster"),
                    pod,
                    follower,
                )
            jv = job_view(job)
            if jv.terminal:
                if pod is None or not pod.finished:
                    rv = None  # one last list so the final container state is known
                    for obj in self._list_pods(ns, selector)[1]:
                        see(obj)
                return final_result(jv, pod, spec.memory_mb, spec.time_limit_s), pod, follower
            if self._clock() > deadline:
                self._delete_job(ns, name)
                return (
                    JobResult(
                        JobState.timed_out,
                        None,
                        f"time limit of {spec.time_limit_s} s exceeded (stopped by TRE)",
                    ),
                    pod,
                    follower,
                )
            try:
                if rv is None:
                    rv, items = self._list_pods(ns, selector)
                    for obj in items:
                        see(obj)
                else:
                    rv = self._watch_pods(ns, selector, rv, see)
                transient_errors = 0
            except (ApiException, HTTPError) as exc:
                # A hiccup of the API server must not kill a job that runs fine: retry, and
                # give up (the caller then deletes the Job, best effort) only if errors persist.
                if isinstance(exc, ApiException) and not _transient(exc):
                    raise ExecutorError(f"listing pods in {ns} failed: {_api_reason(exc)}") from exc
                transient_errors += 1
                if transient_errors > MAX_TRANSIENT_ERRORS:
                    raise ExecutorError(f"the Kubernetes API keeps failing: {exc}") from exc
                log.warning("transient API error following %s/%s: %s", ns, name, exc)
                rv = None
                time.sleep(min(self.settings.retry_backoff_s * transient_errors, 10.0))
            if pod is not None and pod.fatal_waiting:
                self._delete_job(ns, name)
                return waiting_failure(pod, spec.image), pod, follower

    def _list_pods(self, ns: str, selector: str) -> tuple[str, list[Manifest]]:
        data = _raw(self.core.list_namespaced_pod(ns, label_selector=selector, _preload_content=False))
        return str(data["metadata"].get("resourceVersion", "")), list(data.get("items") or [])

    def _watch_pods(self, ns: str, selector: str, rv: str, see: Callable[..., None]) -> str | None:
        """One bounded watch window from `rv`; returns the next rv, or None to force a re-list.

        A 410 Gone (as an HTTP status or an ERROR event) means `rv` is older than the API
        server's watch cache: the only correct recovery is a fresh list.
        """
        w = k8s_watch.Watch()
        window = self.settings.watch_window_s
        try:
            for event in w.stream(
                self.core.list_namespaced_pod,
                ns,
                label_selector=selector,
                resource_version=rv,
                timeout_seconds=window,
                allow_watch_bookmarks=True,
                _request_timeout=window + 5,
            ):
                kind = event.get("type")
                obj = event.get("raw_object") or {}
                new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                if new_rv:
                    rv = new_rv
                # raw_object, not object: the client cannot deserialize ERROR events with
                # deserialize=False (KeyError), so we let it build models and read the raw JSON.
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    see(obj, deleted=(kind == "DELETED"))
                    if pod_view(obj).finished or kind == "DELETED":
                        w.stop()
        except ApiException as exc:
            if exc.status == HTTP_GONE:
                log.info("watch of %s expired (410 Gone); re-listing", ns)
                return None
            if _transient(exc):
                raise  # retried by the follow loop
            raise ExecutorError(f"watching pods in {ns} failed: {_api_reason(exc)}") from exc
        except HTTPError as exc:
            log.warning("watch of %s interrupted (%s); re-listing", ns, exc)
            return None
        return rv

    def _read_job(self, ns: str, name: str) -> Manifest | None:
        """The Job's JSON, None if it is gone; transient API errors are retried a few times."""
        for attempt in range(MAX_TRANSIENT_ERRORS + 1):
            try:
                return _raw(self.batch.read_namespaced_job(name, ns, _preload_content=False))
            except ApiException as exc:
                if exc.status == HTTP_NOT_FOUND:
                    return None
                if not _transient(exc) or attempt == MAX_TRANSIENT_ERRORS:
                    raise ExecutorError(f"cannot read Job {ns}/{name}: {_api_reason(exc)}") from exc
                log.warning("transient error reading Job %s/%s: %s", ns, name, _api_reason(exc))
            except HTTPError as exc:
                if attempt == MAX_TRANSIENT_ERRORS:
                    raise ExecutorError(f"cannot reach the Kubernetes API: {exc}") from exc
            time.sleep(min(self.settings.retry_backoff_s * (attempt + 1), 10.0))
        return None  # unreachable: the last attempt returns or raises

    # --- outputs and cleanup -------------------------------------------------------------

    def _collect(
        self, spec: JobSpec, ns: str, name: str, result: JobResult, control: RunControl
    ) -> JobResult:
        """Copy /output out once: idempotent across reattaches, fail closed, nothing partial."""
        staging = OutputStaging(spec.output_dir, manifests.job_label(spec.job_id))
        if staging.done:
            log.info("outputs of %s were already collected by a previous worker", spec.job_id)
            return result
        if staging.attempts >= MAX_ATTEMPTS:
            staging.begin()  # leaves an empty output directory: nothing partial is recorded
            return _not_collected(
                result,
                f"collection was interrupted {MAX_ATTEMPTS} times (the worker stopped while copying); "
                "not retried",
            )
        staging.begin()
        try:
            owner = self._read_job(ns, name)  # the collector pod goes with its Job
        except ExecutorError:
            owner = None  # the API keeps failing: collect anyway; the pod's deadline still holds
        pod_obj = manifests.collector_pod(spec, self.settings, owner=owner)
        pod_name = pod_obj["metadata"]["name"]
        try:
            self._start_collector(ns, pod_obj, control)
            self._wait_running(ns, pod_name, control)
            exec_tar(
                self.core,
                ns,
                pod_name,
                staging,
                spec.output_limit_mb * 1024 * 1024,
                timeout_s=self.settings.collector_timeout_s,
                heartbeat=control.heartbeat,
            )
            staging.commit()
        except CollectError as exc:
            staging.discard()
            return _not_collected(result, str(exc))
        finally:
            staging.discard()
            self._delete(
                lambda: self.core.delete_namespaced_pod(
                    pod_name, ns, grace_period_seconds=0, _preload_content=False
                )
            )
        return result

    def _start_collector(self, ns: str, pod_obj: Manifest, control: RunControl) -> None:
        """Create a fresh collector pod; one left by a worker that died is replaced, not reused.

        A leftover may be past its deadline, or mid-way through a transfer to a dead worker;
        starting over from a known state is what makes a repeated collection safe.
        """
        name = pod_obj["metadata"]["name"]
        for _ in range(60):
            try:
                self.core.create_namespaced_pod(ns, pod_obj, _preload_content=False)
                return
            except ApiException as exc:
                if _transient(exc):  # 429/5xx: try again, as for every other call
                    control.heartbeat()
                    time.sleep(min(self.settings.retry_backoff_s, 1.0))
                    continue
                if exc.status != HTTP_CONFLICT:
                    raise CollectError(f"cannot start the collector pod ({exc.status})") from exc
            except HTTPError:
                control.heartbeat()
                time.sleep(min(self.settings.retry_backoff_s, 1.0))
                continue
            log.info("replacing the collector pod %s/%s left by a previous worker", ns, name)
            self._delete(
                lambda: self.core.delete_namespaced_pod(
                    name, ns, grace_period_seconds=0, _preload_content=False
                )
            )
            control.heartbeat()
            time.sleep(min(self.settings.retry_backoff_s, 1.0))
        raise CollectError("a previous collector pod could not be replaced")

    def _wait_running(self, ns: str, pod_name: str, control: RunControl) -> None:
        """Until the collector pod is Running and Ready; API hiccups retried like the follow loop's.

        An error here must not end the run: the caller's cleanup deletes the output claim,
        so a job that succeeded would lose its outputs to one 503 (an etcd leader change).
        """
        deadline = self._clock() + self.settings.collector_timeout_s
        rv: str | None = None
        transient_errors = 0
        while self._clock() < deadline:
            control.heartbeat()
            try:
                rv, items = self._collector_events(ns, pod_name, rv)
                transient_errors = 0
            except (ApiException, HTTPError) as exc:
                if isinstance(exc, ApiException) and not _transient(exc):
                    raise CollectError(f"watching the collector failed ({exc.status})") from exc
                transient_errors += 1
                if transient_errors > MAX_TRANSIENT_ERRORS:
                    raise CollectError("the Kubernetes API kept failing while the collector started") from exc
                log.warning("transient API error waiting for the collector %s/%s: %s", ns, pod_name, exc)
                rv = None
                time.sleep(min(self.settings.retry_backoff_s * transient_errors, 10.0))
                continue
            for obj in items:
                state = _collector_state(obj)
                if state == "running":
                    return
                if state == "failed":
                    view = pod_view(obj, container="collector")
                    raise CollectError(
                        f"collector pod failed: {view.waiting_reason or view.pod_reason or view.phase}"
                    )
        raise CollectError("collector pod did not start in time")

    def _collector_events(self, ns: str, pod_name: str, rv: str | None) -> tuple[str | None, list[Manifest]]:
        """A list (rv None) or one watch window of the collector pod: (next rv, its states).

        Returns rv None after a 410 Gone (re-list); other API errors are raised to the caller.
        """
        selector = f"metadata.name={pod_name}"
        if rv is None:
            data = _raw(self.core.list_namespaced_pod(ns, field_selector=selector, _preload_content=False))
            return str(data["metadata"].get("resourceVersion", "")), list(data.get("items") or [])
        items: list[Manifest] = []
        try:
            for event in k8s_watch.Watch().stream(
                self.core.list_namespaced_pod,
                ns,
                field_selector=selector,
                resource_version=rv,
                timeout_seconds=self.settings.watch_window_s,
            ):
                obj = event.get("raw_object") or {}
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                if event.get("type") in ("ADDED", "MODIFIED"):
                    items = [obj]
                    if _collector_state(obj) != "pending":
                        break
        except ApiException as exc:
            if exc.status != HTTP_GONE:
                raise
            return None, items
        return rv, items

    def _delete_job(self, ns: str, name: str) -> None:
        self._delete(
            lambda: self.batch.delete_namespaced_job(
                name, ns, propagation_policy="Background", _preload_content=False
            )
        )

    def _delete_pvc(self, ns: str, name: str) -> None:
        self._delete(
            lambda: self.core.delete_namespaced_persistent_volume_claim(name, ns, _preload_content=False)
        )

    @staticmethod
    def _delete(call: Callable[[], Any]) -> None:
        """Best-effort delete; raw response because the server answers with the object or a Status."""
        try:
            call()
        except ApiException as exc:
            if exc.status != HTTP_NOT_FOUND:
                log.warning("cleanup failed: %s", _api_reason(exc))
        except HTTPError as exc:
            log.warning("cleanup failed, API unreachable: %s", exc)


def _not_collected(result: JobResult, why: str) -> JobResult:
    """A job whose outputs could not be copied out never counts as succeeded."""
    if result.state == JobState.succeeded:
        return JobResult(JobState.failed, result.exit_code, f"outputs not collected: {why}")
    return JobResult(result.state, result.exit_code, f"{result.reason}; outputs not collected: {why}")


def _collector_state(pod: Manifest) -> str:
    view = pod_view(pod, container="collector")
    if view.phase in ("Failed", "Succeeded") or view.fatal_waiting:
        return "failed"
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )
    return "running" if view.phase == "Running" and ready else "pending"


def _quota_exceeded(exc: ApiException) -> bool:
    """The ResourceQuota admission plugin's refusal (403 "exceeded quota")."""
    return exc.status == HTTP_FORBIDDEN and "exceeded quota" in str(exc.body or "")


def _quota_reason(exc: ApiException) -> str:
    """Fixed words for a used-up project quota (the API's message carries usage figures)."""
    if "count/jobs.batch" in str(exc.body or ""):
        words = "the project's limit of running jobs in Kubernetes is reached"
    else:
        words = "the project's Kubernetes quota is used up"
    return f"{words} (ResourceQuota tre-project-quota); resubmit when some of its jobs have finished"


def _transient(exc: ApiException) -> bool:
    """Server-side trouble worth retrying: 429, 5xx, or no HTTP status at all (connection)."""
    return exc.status in (0, None, 429) or (isinstance(exc.status, int) and exc.status >= 500)


def _api_reason(exc: ApiException) -> str:
    """The API server's own message (from its Status body) when there is one."""
    try:
        body = json.loads(exc.body or "{}")
        return f"{exc.status} {body.get('reason', exc.reason)}: {body.get('message', '')}".strip()
    except (ValueError, TypeError):
        return f"{exc.status} {exc.reason}"

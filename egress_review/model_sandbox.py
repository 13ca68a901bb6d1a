"""Running a model under review, in the local bubblewrap sandbox, never in the API process.

A model file is untrusted code in all but name: an ONNX graph is executed by onnxruntime,
whose parsers and kernels then process bytes the job wrote. So the membership-inference test
runs the model the way a job runs: `tre.executors.local.LocalExecutor` (as the unprivileged
job user, all namespaces, no network, seccomp, cgroup limits, a size-limited /output). What
runs inside is the platform's own script (`egress_review/sandboxed/predict_onnx.py`) on the
host's interpreter (the executor's host-toolchain mode, enabled here for this trusted script
only): the model and the record sets are a read-only "dataset" at /data, the predictions come
back as .npy files read with ``allow_pickle=False`` and checked for shape and values.
Nothing the sandbox prints reaches anyone: a failure is a fixed reason.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from egress_review.checks.model import Predictions, SandboxUnavailable
from tre.executors.base import DatasetMount, Executor, ExecutorError, JobSpec, RunControl
from tre.states import JobState

if TYPE_CHECKING:
    from tre.config import Settings
    from tre.executors.local import LocalExecutor

log = logging.getLogger(__name__)

SCRIPT = Path(__file__).resolve().parent / "sandboxed" / "predict_onnx.py"
MAX_CLASSES = 1000
MAX_META_BYTES = 64 * 1024


class BwrapModelSandbox:
    """`ModelSandbox` on the local executor: one sandbox run per model, every set at once."""

    def __init__(
        self,
        executor: LocalExecutor | Callable[[], LocalExecutor],
        work_dir: Path | None = None,
        *,
        time_limit_s: int = 120,
        memory_mb: int = 2048,
    ) -> None:
        """``executor`` may be a factory: the executor is then made on the first model run
        only (requests without a model card never touch the sandbox)."""
        self._executor = executor
        self.work_dir = work_dir
        self.time_limit_s = time_limit_s
        self.memory_mb = memory_mb

    def predict(self, model: Path, record_sets: dict[str, np.ndarray]) -> dict[str, Predictions]:
        if self.work_dir is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="tre-model-eval-", dir=self.work_dir))
        try:
            return self._run(model, record_sets, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _run(self, model: Path, record_sets: dict[str, np.ndarray], tmp: Path) -> dict[str, Predictions]:
        inputs, code = tmp / "inputs", tmp / "code"
        inputs.mkdir()
        code.mkdir()
        shutil.copyfile(model, inputs / "model.onnx")
        for name, features in record_sets.items():
            np.save(
                inputs / f"{name}.npy", np.ascontiguousarray(features, dtype=np.float64), allow_pickle=False
            )
        shutil.copyfile(SCRIPT, code / "predict.py")
        for p in (inputs, code, *inputs.iterdir(), *code.iterdir()):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        spec = JobSpec(
            job_id=f"airlock-model-{uuid.uuid4().hex[:12]}",
            project_id="airlock",
            image="airlock/model-evaluation",
            command=["python", "predict.py"],
            datasets=[DatasetMount("model", host_path=inputs)],
            output_dir=tmp / "job" / "output",
            log_path=tmp / "job" / "log.txt",
            cpu=1.0,
            memory_mb=self.memory_mb,
            time_limit_s=self.time_limit_s,
            output_limit_mb=64,
            max_processes=64,
            code_dir=code,
        )
        try:
            executor = self._executor if isinstance(self._executor, Executor) else self._executor()
            self._executor = executor
            result = executor.run(spec, RunControl())
        except ExecutorError as exc:
            log.warning("model sandbox could not start: %s", exc)
            raise SandboxUnavailable("the sandbox that runs models could not be started") from exc
        if result.state != JobState.succeeded:
            log.warning("model sandbox run ended %s (%s)", result.state, result.reason)
            raise SandboxUnavailable(
                "onnxruntime could not run the model on the records in the sandbox "
                f"(the run ended {JobState(result.state).value}: {result.reason})"
            )
        return _read_predictions(spec.output_dir, {k: len(v) for k, v in record_sets.items()})


def _read_predictions(out: Path, rows: dict[str, int]) -> dict[str, Predictions]:
    """Validate what the sandbox wrote: one finite float matrix per set, of the right height."""
    try:
        meta_path = out / "meta.json"
        if meta_path.is_symlink() or meta_path.stat().st_size > MAX_META_BYTES:
            raise ValueError("meta.json")
        meta = json.loads(meta_path.read_text())
        kind = meta.get("kind")
        classes = [str(c)[:64] for c in meta.get("classes", [])][:MAX_CLASSES]
        if kind not in ("probabilities", "regression"):
            raise ValueError("kind")
        found: dict[str, Predictions] = {}
        for name, n in rows.items():
            path = out / f"{name}.npy"
            if path.is_symlink():
                raise ValueError("symlink")
            values = np.load(path, allow_pickle=False)
            if values.dtype != np.float64 or values.ndim != 2 or values.shape[0] != n:
                raise ValueError("shape")
            if values.shape[1] > MAX_CLASSES or not np.isfinite(values).all():
                raise ValueError("values")
            found[name] = Predictions(values=values, kind=kind, classes=classes)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise SandboxUnavailable("the model's outputs in the sandbox were not usable predictions") from exc
    return found


def sandbox_for(settings: Settings) -> BwrapModelSandbox | None:
    """The model sandbox of this deployment, or None where the local sandbox cannot run
    (not root, no bubblewrap): the membership-inference test then says it could not run."""
    if os.geteuid() != 0 or shutil.which("bwrap") is None:
        return None

    def make() -> LocalExecutor:
        from tre.executors.local import LocalExecutor

        # Not LocalExecutor(settings): that also recovers output mounts of crashed jobs, which
        # is the worker's business; here only the sandbox knobs are taken from the settings.
        return LocalExecutor(
            uid=settings.sandbox_uid,
            gid=settings.sandbox_gid,
            images_dir=None,
            cgroup_parent=settings.sandbox_cgroup_parent,
            host_toolchain=True,
            expose_tre_package=False,
            job_user=settings.sandbox_job_user,
            stage_dir=None,
        )

    return BwrapModelSandbox(make, settings.staging_dir / "model-eval")

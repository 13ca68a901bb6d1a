"""A whole dataset as one job: decoding, kernels and writing overlap across the cores.

Why a pipeline: per series, reading + decoding DICOM, the kernels and writing the output each
take a comparable time and use different resources (decoders and the disk, the Numba thread
pool, the compressor's threads). Three stages run concurrently:

0. discovery parses every header once (`SliceHeader` records, in forked processes when
   ``python -m tre.kernels.job`` runs it) while the kernels' cache loads (`tre.kernels.warm`);
   the loaders reuse those headers;
1. loaders (threads) read and decode the next series while the current one is processed;
   the slices of all loading series are read and decoded on one shared thread pool that
   serves the earliest series first (`tre.kernels.priority_pool`); the decoders release the
   GIL (`tre.kernels.decode`), and only slices left to pydicom go to worker processes;
2. the kernels run on the calling thread, one series at a time (they use every core);
3. writers (threads) compress and write the previous series' outputs.

Queues are bounded (``prefetch`` loaded series, ``max_pending_writes`` outputs), so peak memory
is a few series, whatever the cohort size; an output buffer whose write finished takes a later
series' output (`tre.kernels.buffers.OutputPool`: no first-touch page faults). Each series ends
``ok``, ``failed`` (a one-line reason in the manifest; one bad series never stops the others
unless ``fail_fast``) or ``resumed`` (already written by an earlier run of the same recipe,
checked by hash). A series' files are ``series/<pseudonym>.*`` (`tre.kernels.pseudonyms`:
never the UID, an identifier); which series a pseudonym is, only ``manifest.json`` says.
Progress goes to ``report`` in the fixed vocabulary of `tre.kernels.progress`
(``tre-progress: 12/40 series done, 1 failed``, ``tre-series: 12/40 failed: missing-slices``):
counts, series numbers and reason codes only, since the job log is an output channel and must
not carry identifiers; the log screen passes exactly these lines and ``tre logs`` draws its
progress bar from them. How many lines a cohort prints is bounded whatever its size
(`tre.kernels.progress.ProgressReporter`): the screened log is cut at a per-job budget.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tre.kernels.buffers import BufferPool, InputPool, OutputPool
from tre.kernels.dicom import Series, SliceHeader, discover_headers, load_series, unreadable_files
from tre.kernels.errors import (
    KernelInputError,
    MissingSliceError,
    MixedOrientationError,
    NonUniformSpacingError,
    NotOneStackError,
    SeriesError,
    SeriesTooLargeError,
    SuvError,
    UndecodableError,
    is_fatal,
)
from tre.kernels.manifest import MANIFEST_NAME, Manifest, input_fingerprint
from tre.kernels.nifti import output_affine, sidecar
from tre.kernels.params import PreprocessParams, PreprocessResult
from tre.kernels.pipeline import Device, preprocess_array
from tre.kernels.priority_pool import PriorityThreadPool
from tre.kernels.progress import Outcome, ProgressReporter, reason_counts
from tre.kernels.pseudonyms import SERIES_DIR, assign_names, names_by_uid
from tre.kernels.stack_room import with_stack_room
from tre.kernels.suv import to_suvbw
from tre.kernels.timeline import DISABLED, Timeline
from tre.kernels.warm import start_warm
from tre.kernels.writers import (
    OutputFormat,
    Written,
    compressor_name,
    sync_outputs,
    write_bytes,
    write_volume,
)

# Without a readable CPU quota, at most this many workers (each decode process holds ~100 MB).
DEFAULT_MAX_WORKERS = 8


def _cgroup_cpu_quota() -> float | None:
    """CPUs granted by the cgroup's CPU quota (v2 ``cpu.max`` or v1 CFS), if visible."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this job may use: its affinity, capped by its cgroup CPU quota (a container or
    sandbox often sees every host core but is granted a few); without a visible quota, at
    most ``DEFAULT_MAX_WORKERS``. ``tre preprocess`` passes ``--workers`` explicitly."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    cap = DEFAULT_MAX_WORKERS if quota is None else math.ceil(quota)
    return max(1, min(cpus, cap))


def usable_workers(asked: int) -> int:
    """Worker threads for ``asked`` (0: `available_cpus`), never more than the CPUs this
    process may run on: ``--workers 100000`` made as many threads, and as many decode
    processes of ~100 MB each as the cohort's slices could keep busy."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(asked, cpus)) if asked > 0 else available_cpus()


@dataclass(frozen=True)
class CohortOptions:
    """How to run a cohort; the recipe itself is ``params``."""

    params: PreprocessParams
    device: Device = "cpu"
    suv: str = "auto"
    fmt: OutputFormat = "nii.gz"
    workers: int = 0  # decode threads and compressor threads; 0 = available CPUs
    prefetch: int = 2
    max_pending_writes: int = 2
    fail_fast: bool = False

    def recipe(self) -> dict[str, Any]:
        """What must match for a previous run's outputs to be reused."""
        p = self.params
        recipe: dict[str, Any] = {
            "spacing_zyx_mm": list(p.spacing),
            "window": list(p.window) if p.window else None,
            "percentile_clip": list(p.percentile_clip) if p.percentile_clip else None,
            "foreground_threshold": p.foreground_threshold,
            "suv": self.suv,
            "format": self.fmt,
        }
        if p.output_dtype != "float32":  # absent for float32: earlier runs' manifests still match
            recipe["output_dtype"] = p.output_dtype
            recipe["max_error"] = p.max_error
        return recipe


@dataclass
class CohortSummary:
    total: int
    ok: int
    resumed: int
    failed: int
    # Failed series per reason code (fixed vocabulary): all the job's last line may name.
    by_reason: dict[str, int] = field(default_factory=dict)

    def failures(self) -> str:
        """The failures per reason code for the job's last line."""
        return reason_counts(self.by_reason)


class CohortFailed(KernelInputError):
    """``fail_fast`` stopped the cohort at a bad series, or no series could be processed."""


def software_versions(device: str) -> dict[str, str]:
    names = ["tre", "numpy", "numba", "pydicom", "nibabel"] + (["numba-cuda"] if device == "cuda" else [])
    names += ["isal", "pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-libjpeg", "pylibjpeg-rle", "pyjpegls"]
    names += ["python-gdcm", "zarr"]
    out: dict[str, str] = {"python": sys.version.split()[0]}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass
class _Loaded:
    series: Series
    units: str
    suv_factor: float | None
    load_s: float


def _load(
    files: list[SliceHeader],
    suv: str,
    pool: Executor,
    decode_pool: Executor | None,
    timeline: Timeline = DISABLED,
    number: int | None = None,
    volumes: BufferPool | None = None,
) -> _Loaded:
    t0 = time.perf_counter()
    try:
        with timeline.span("load", number):
            series = load_series(
                files, pool=pool, decode_pool=decode_pool, timeline=timeline, number=number, volumes=volumes
            )
    except BrokenProcessPool:
        series = _load_alone(files, pool)
    except OSError:
        if decode_pool is None:
            raise
        series = load_series(files, pool=pool)  # worker processes unavailable: decode here
    units = "HU" if series.modality == "CT" else "stored value x rescale"
    factor: float | None = None
    if series.modality == "PT" and suv == "auto":
        series, factor = to_suvbw(series)
        units = "SUVbw (g/mL)"
    return _Loaded(series, units, factor, time.perf_counter() - t0)


def _load_alone(files: list[SliceHeader], pool: Executor) -> Series:
    """The series once more with a decode process of its own, after a decode process died.

    Why not in this process, as before: a decoder that crashes on the series' data (a
    segfault, an abort) then crashed the job, with the whole cohort, and a resume met the
    same series again. In a process of its own a second death is the series' own: it is
    refused. (Without processes to spare, as in a sandbox without POSIX semaphores, it is
    decoded here as before.)"""
    try:
        alone = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    except (OSError, ImportError, ValueError):
        return load_series(files, pool=pool)
    try:
        return load_series(files, pool=pool, decode_pool=alone)
    except BrokenProcessPool:
        raise UndecodableError(
            f"series {files[0].series_uid}: the decoder's process died decoding its pixel data "
            "twice (a decoder crash on the data, or out of memory); decompress the series first "
            "or give the job more memory"
        ) from None
    finally:
        alone.shutdown(wait=True, cancel_futures=True)


def _process_pool(workers: int) -> ProcessPoolExecutor | None:
    """Worker processes for compressed slices, or None (one CPU, or a sandbox without the
    POSIX semaphores multiprocessing needs): then the decode threads do that work too."""
    if workers <= 1:
        return None
    try:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    except (OSError, ImportError, ValueError):
        return None


# Most specific first: the reason code a failure shows in the log (tre.kernels.progress).
_REASON_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (MissingSliceError, "missing-slices"),
    (NonUniformSpacingError, "uneven-spacing"),
    (MixedOrientationError, "mixed-orientation"),
    (NotOneStackError, "not-one-stack"),
    (UndecodableError, "undecodable-pixels"),
    (SeriesTooLargeError, "too-large"),
    (SeriesError, "invalid-series"),
    (SuvError, "suv-tags"),
    (KernelInputError, "invalid-input"),
)


def reason_code(exc: BaseException, writing: bool = False) -> str:
    """The fixed-vocabulary code of a series' failure (its full reason goes to the manifest)."""
    for cls, code in _REASON_CODES:
        if isinstance(exc, cls):
            return code
    if writing:
        return "write-failed"
    return "invalid-input" if isinstance(exc, OSError) else "internal-error"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KernelInputError):
        return " ".join(str(exc).split())
    return f"internal failure: {type(exc).__name__}"


class CohortRun:
    """One run over ``input_dir``; see the module docstring. Use `run_cohort`."""

    def __init__(
        self,
        input_dir: Path,
        out_dir: Path,
        opts: CohortOptions,
        report: Callable[[str], None],
        timeline: Timeline = DISABLED,
        warm: Future[None] | None = None,
        discovered: Callable[[], dict[str, list[SliceHeader]] | None] | None = None,
    ) -> None:
        self.timeline = timeline
        self.warm = warm
        self.discovered = discovered
        self.input_dir = input_dir
        self.out_dir = out_dir
        self.series_dir = out_dir / SERIES_DIR  # the per-series files; the manifest stays on top
        self.opts = opts
        self.report = report
        self.workers = usable_workers(opts.workers)
        self.manifest = Manifest.open(out_dir, opts.recipe())
        self.versions = software_versions(opts.device)
        self.counts = {"ok": 0, "resumed": 0, "failed": 0}
        self.total = 0
        self.index: dict[str, int] = {}  # series UID -> its 1-based number in the log
        self.name: dict[str, str] = {}  # series UID -> its pseudonym (tre.kernels.pseudonyms)
        self.reporter: ProgressReporter | None = None  # the log's lines (bounded volume)
        self.inputs: InputPool | None = None  # the stored-pixel volumes reused between series
        # Written series waiting for their outputs to be durable before the manifest records
        # them (`_record_synced`); their syncs run on `sync_pool`, off the writers' path.
        self.syncing: deque[tuple[str, str, dict[str, Any], Future[None]]] = deque()
        self.sync_pool = ThreadPoolExecutor(1, thread_name_prefix="sync")

    def _progress(self, force: bool = False) -> None:
        assert self.reporter is not None  # noqa: S101 - set once the cohort's size is known
        self.reporter.progress(force)

    def _series_line(self, uid: str, outcome: Outcome, code: str | None = None) -> None:
        assert self.reporter is not None  # noqa: S101 - set once the cohort's size is known
        self.reporter.record(self.index[uid], outcome, code)

    def _finish(self, uid: str, entry: dict[str, Any], code: str | None = None) -> None:
        entry["index"] = self.index[uid]
        entry["name"] = self.name[uid]
        self.manifest.record(uid, entry)
        self.manifest.save_due()
        self.counts[entry["status"]] += 1
        self._series_line(uid, entry["status"], code)
        self._progress()
        if entry["status"] == "failed" and self.opts.fail_fast:
            # The code only: the reason quotes the data (paths, UIDs, tag values) and this
            # line reaches the researcher's log; the reason is in the manifest.
            raise CohortFailed(
                f"series {entry['index']} failed: {code or 'internal-error'} "
                f"(its reason is in {MANIFEST_NAME}; stopped by --fail-fast)"
            )

    def _failed(self, uid: str, fingerprint: str, exc: BaseException, writing: bool = False) -> None:
        entry = {"status": "failed", "input_fingerprint": fingerprint, "reason": _reason(exc)}
        self._finish(uid, entry, reason_code(exc, writing))

    def _write(self, loaded: _Loaded, result: PreprocessResult, pre_s: float) -> dict[str, Any]:
        """Writer stage: the volume, then its sidecar (with the write time in it)."""
        series, params = loaded.series, self.opts.params
        stem = self.name[series.series_uid]
        t0 = time.perf_counter()
        number = self.index.get(series.series_uid)
        affine = output_affine(series, params.spacing, result.crop_offset)
        with self.timeline.span("write", number):
            quant = result.quantisation
            scaling = (quant.slope, quant.intercept) if quant is not None and quant.dtype == "int16" else None
            volume = write_volume(
                self.series_dir,
                stem,
                result.image,
                affine,
                self.opts.fmt,
                self.workers,
                durable=False,
                scaling=scaling,
            )
        timings = {"load": loaded.load_s, "preprocess": pre_s, "write": time.perf_counter() - t0}
        timings.update({f"pass_{k}": v for k, v in result.timings_s.items()})
        data = sidecar(
            series,
            result,
            target_zyx=params.spacing,
            window=params.window,
            percentile_clip=params.percentile_clip,
            foreground_threshold=params.foreground_threshold,
            units=loaded.units,
            device=self.opts.device,
            versions=self.versions,
            timings_s=timings,
            suv_factor=loaded.suv_factor,
        )
        data["series"] = stem
        data["output"] = {
            "file": volume.name,
            "format": self.opts.fmt,
            "compressor": compressor_name(self.opts.fmt),
            "dtype": str(result.image.dtype),
        }
        if quant is not None:
            data["output"]["quantisation"] = quant.manifest_entry()
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        with self.timeline.span("sidecar", number):
            side = write_bytes(self.series_dir, f"{stem}.json", text.encode(), durable=False)
        entry: dict[str, Any] = {
            "status": "ok",
            "outputs": [_out(volume), _out(side)],
            "shape_zyx": list(result.image.shape),
            "dtype": str(result.image.dtype),
        }
        if quant is not None:  # int16 was asked for: how it was stored, or why it was not
            entry["quantisation"] = quant.manifest_entry()
        return entry

    def run(self) -> CohortSummary:
        tl = self.timeline
        # The kernels' cache loads while discovery walks the input (tre.kernels.warm).
        warm_done: Future[None] | None = self.warm or start_warm(self.opts.params, self.opts.device, tl)
        with tl.span("wait-discover"):
            groups = self.discovered() if self.discovered is not None else None
        if groups is None:
            with tl.span("discover"):
                groups = discover_headers(self.input_dir)  # the loaders reuse these headers
        if not groups:
            raise KernelInputError(f"no DICOM image series found under {self.input_dir}")
        with tl.span("unreadable"):
            unreadable = unreadable_files(self.input_dir, groups)
        self.manifest.unreadable = [os.path.relpath(p, self.input_dir) for p in unreadable]
        self.total = len(groups)
        self.index = {uid: i + 1 for i, uid in enumerate(groups)}
        self.reporter = ProgressReporter(self.total, self.report)
        self.series_dir.mkdir(exist_ok=True)
        for folder in (self.out_dir, self.series_dir):
            for stale in folder.glob(".*.partial"):  # left by a killed run; never an output
                stale.unlink(missing_ok=True)
        # Every series' name is fixed and saved before any output is written: a series
        # written by a killed run keeps its name, and a new one never takes another's.
        names = assign_names(groups, self.manifest.names, self.series_dir)
        if names != self.manifest.names or not self.manifest.path.exists():
            self.manifest.names = names
            self.manifest.save(paced=False)
        self.name = {uid: name for uid, name in names_by_uid(names).items() if uid in groups}
        self._progress(force=True)
        todo: list[tuple[str, list[SliceHeader], str]] = []
        with tl.span("resume-check"):
            for uid, files in groups.items():
                fingerprint = input_fingerprint(self.input_dir, [h.path for h in files])
                if self.manifest.is_done(uid, fingerprint, self.out_dir):
                    self.counts["resumed"] += 1
                    self.manifest.series[uid]["index"] = self.index[uid]
                    self._series_line(uid, "resumed")
                else:
                    todo.append((uid, files, fingerprint))
        if self.counts["resumed"]:
            self._progress(force=True)
        decode_pool = PriorityThreadPool(self.workers, "decode")
        # Slices left to pydicom's handlers (RLE, or what imagecodecs could not decode) decode
        # in worker processes, spawned on first use only: those plugins hold the GIL. JPEG 2000,
        # JPEG-LS and JPEG lossless decode on the decode threads (tre.kernels.decode).
        procs = _process_pool(self.workers)
        load_pool = ThreadPoolExecutor(max(1, self.opts.prefetch), thread_name_prefix="load")
        write_pool = ThreadPoolExecutor(max(1, self.opts.max_pending_writes), thread_name_prefix="write")
        loads: deque[tuple[str, str, Future[_Loaded]]] = deque()
        writes: deque[tuple[str, str, Future[dict[str, Any]], np.ndarray]] = deque()
        # Each output buffer whose write finished takes the next series' output (no page
        # faults on first touch; tre.kernels.buffers). The GPU path copies into pinned memory.
        pool = OutputPool(max_free=1) if self.opts.device == "cpu" else None
        # Likewise the stored pixels: the volume of the series whose kernels just ran takes the
        # series submitted next (two places later), instead of fresh pages zeroed on first touch.
        inputs = self.inputs = InputPool(max_free=1) if self.opts.device == "cpu" else None
        queue = iter(enumerate(todo))
        try:
            while True:
                while len(loads) < max(1, self.opts.prefetch):
                    nxt = next(queue, None)
                    if nxt is None:
                        break
                    position, (uid, files, fp) = nxt
                    lane = decode_pool.lane(position)  # earlier series' slices first
                    if procs is not None and getattr(procs, "_broken", False):
                        # A decode process died (see _load_alone): later series get a new pool.
                        procs.shutdown(wait=False, cancel_futures=True)
                        procs = _process_pool(self.workers)
                    volumes = inputs.hand_over() if inputs is not None else None
                    job = load_pool.submit(
                        with_stack_room,
                        _load,
                        files,
                        self.opts.suv,
                        lane,
                        procs,
                        tl,
                        self.index[uid],
                        volumes,
                    )
                    loads.append((uid, fp, job))
                if not loads:
                    break
                uid, fp, fut = loads.popleft()
                number = self.index[uid]
                if warm_done is not None:  # wait for it: two threads compiling would both pay
                    try:
                        with tl.span("wait-warm", number):
                            warm_done.result()
                    except Exception:  # noqa: BLE001, S110 - the real call below reports any failure
                        pass
                    warm_done = None
                try:
                    with tl.span("wait-load", number):
                        loaded = fut.result()
                    t0 = time.perf_counter()
                    s = loaded.series
                    with tl.span("kernels", number):
                        result = preprocess_array(
                            s.raw,
                            s.slopes,
                            s.intercepts,
                            s.spacing,
                            self.opts.params,
                            self.opts.device,
                            pool=pool,
                        )
                    pre_s = time.perf_counter() - t0
                except BaseException as exc:  # noqa: BLE001 - one bad series never fails the cohort
                    if is_fatal(exc) or isinstance(exc, CohortFailed):
                        raise
                    self._failed(uid, fp, exc)
                    continue
                # The writer needs the geometry, not the pixels: release them now (a zero-stride
                # view keeps the shape the sidecar reports) so memory stays at a few series; the
                # next series to load decodes into them (nothing else holds them any more).
                if inputs is not None:
                    inputs.give(s.raw)
                loaded.series = dataclasses.replace(
                    s, raw=np.broadcast_to(np.zeros((), s.raw.dtype), s.raw.shape)
                )
                del fut, s
                image = result.image
                writes.append(
                    (uid, fp, write_pool.submit(with_stack_room, self._write, loaded, result, pre_s), image)
                )
                del result, loaded, image
                while len(writes) > max(0, self.opts.max_pending_writes - 1):
                    self._collect(writes.popleft(), pool)
            while writes:
                self._collect(writes.popleft(), pool)
            self._record_synced(block=True)
            shutdown = tl.now()
        finally:
            for _uid, _fp, f in loads:
                f.cancel()
            decode_pool.shutdown(cancel_futures=True)
            if procs is not None:
                procs.shutdown(wait=True, cancel_futures=True)
            load_pool.shutdown(wait=True, cancel_futures=True)
            write_pool.shutdown(wait=True, cancel_futures=True)
            self.sync_pool.shutdown(wait=True, cancel_futures=True)
            self.manifest.save()
        self._progress(force=True)  # the last line is always there (done = total)
        line = self.reporter.summary()
        if line:
            self.report(line)
        if self.manifest.unreadable:  # a count in the log; which files: the manifest
            n = len(self.manifest.unreadable)
            noun = "file" if n == 1 else "files"  # tre.plural is not in the job image
            self.report(f"skipped {n} DICOM image {noun} that cannot be read (listed in {MANIFEST_NAME})")
        tl.add("shutdown", None, shutdown, tl.now())
        c = self.counts
        by_reason = dict(self.reporter.by_reason) if self.reporter is not None else {}
        return CohortSummary(self.total, c["ok"], c["resumed"], c["failed"], by_reason)

    def _collect(
        self, item: tuple[str, str, Future[dict[str, Any]], np.ndarray], pool: OutputPool | None
    ) -> None:
        uid, fp, fut, image = item
        try:
            with self.timeline.span("wait-write", self.index[uid]):
                entry = fut.result()
        except BaseException as exc:  # noqa: BLE001 - a failed write is that series' failure
            if is_fatal(exc):
                raise
            self._failed(uid, fp, exc, writing=True)
            return
        finally:
            if pool is not None and fut.done():  # the writer is done with the pixels
                pool.give(image)
        entry["input_fingerprint"] = fp
        paths = [self.out_dir / str(out["path"]) for out in entry["outputs"]]
        synced = self.sync_pool.submit(with_stack_room, sync_outputs, paths, self.series_dir)
        self.syncing.append((uid, fp, entry, synced))
        self._record_synced(block=False)

    def _record_synced(self, block: bool) -> None:
        """Record in the manifest, in order, the written series whose outputs are durable
        (``block``: wait for all). Why not in the writer: its wait for the disk held up the
        kernels' thread, which waits for the writers (~1 s a cohort, tenth round); here only
        the manifest waits, so it still never names a file before the file is on the disk."""
        while self.syncing and (block or self.syncing[0][3].done()):
            uid, fp, entry, synced = self.syncing.popleft()
            try:
                with self.timeline.span("wait-sync", self.index[uid]):
                    synced.result()
            except BaseException as exc:  # noqa: BLE001 - a failed sync is that series' failure
                if is_fatal(exc):
                    raise
                self._failed(uid, fp, exc, writing=True)
                continue
            with self.timeline.span("manifest", self.index[uid]):
                self._finish(uid, entry)


def _out(w: Written) -> dict[str, Any]:
    """A series' output as the manifest records it: its path relative to the output folder."""
    return {"path": f"{SERIES_DIR}/{w.name}", "bytes": w.bytes, "sha256": w.sha256}


def run_cohort(
    input_dir: Path,
    out_dir: Path,
    opts: CohortOptions,
    report: Callable[[str], None] = print,
    timeline: Timeline = DISABLED,
    warm: Future[None] | None = None,
    discovered: Callable[[], dict[str, list[SliceHeader]] | None] | None = None,
) -> CohortSummary:
    """Preprocess every series under ``input_dir`` into ``out_dir``; see the module docstring.
    ``timeline`` records when each stage ran (`tre.kernels.timeline`; off by default);
    ``warm``: the kernels' cache load if the caller started it already (`start_warm`);
    ``discovered``: returns the series' headers if the caller had them read already
    (`tre.kernels.forked_discovery`), or None to discover here."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return CohortRun(input_dir, out_dir, opts, report, timeline, warm, discovered).run()

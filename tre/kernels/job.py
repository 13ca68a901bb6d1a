"""In-sandbox entry point of the built-in ``tre preprocess`` job.

    python -m tre.kernels.job --input /data --output /output --spacing 1 1 1 \
        --window -1000 400 [--percentile-clip 0.5 99.5] [--device cpu|cuda]

Preprocesses every DICOM series under --input as one cohort (`tre.kernels.cohort`): writes
``series/series-NNNNN.nii.gz`` (or ``.nii`` / ``.zarr.zip``) and ``series/series-NNNNN.json``
under --output, named by pseudonym (`tre.kernels.pseudonyms`), plus ``manifest.json`` at the
top (which series each name is, per-series outcome, output SHA-256), and resumes a killed run. The log
gets only fixed-format progress lines. A bad series is recorded and skipped; the job fails
(exit status 2, one ``error: ...`` line on stderr) when no series could be processed, on
bad arguments, or at the first bad series with --fail-fast. The job log is all a
researcher sees of data they may not inspect, so no tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from tre.kernels.errors import KernelInputError, is_fatal
from tre.kernels.manifest import MANIFEST_NAME
from tre.kernels.numba_seed import seed_numba_cache
from tre.kernels.output_choices import DEFAULT_MAX_ERROR, DTYPES, output_max_error
from tre.kernels.params import PreprocessParams
from tre.kernels.stack_room import with_stack_room
from tre.kernels.timeline import from_env
from tre.kernels.warm import start_warm
from tre.kernels.writers import FORMATS, MissingCodecError, check_format, format_note

if TYPE_CHECKING:
    from tre.kernels.forked_discovery import ForkedDiscovery

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


# More threads than this is a typing error, not a machine (the job also never uses more
# threads than the CPUs it may run on).
MAX_WORKERS = 1024


class _OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error as one ``error: ...`` line (exit 2) like every other
    refusal of the job, instead of the usage text and the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {' '.join(message.split())}\n")


def _workers(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be 0 (all available CPUs) to {MAX_WORKERS}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="python -m tre.kernels.job", description=__doc__.splitlines()[0])
    p.add_argument("--input", type=Path, required=True, help="folder searched recursively for DICOM")
    p.add_argument("--output", type=Path, required=True, help="folder for manifest.json and series/")
    p.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        required=True,
        metavar=("X", "Y", "Z"),
        help="target voxel size in mm, NIfTI/ITK order (column, row, slice)",
    )
    p.add_argument("--window", type=float, nargs=2, metavar=("LO", "HI"), help="intensity window (HU for CT)")
    p.add_argument(
        "--percentile-clip", type=float, nargs=2, metavar=("PLO", "PHI"), help="nnU-Net style clip"
    )
    p.add_argument("--foreground-threshold", type=float, default=-500.0, help="foreground is value > this")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--suv",
        choices=["auto", "off"],
        default="auto",
        help="auto: PET series are converted to SUVbw (QIBA)",
    )
    p.add_argument(
        "--format",
        choices=list(FORMATS),
        default="nii.gz",
        help="nii.gz (multi-threaded gzip), nii (uncompressed) or zarr (chunked, one .zarr.zip)",
    )
    p.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default="float32",
        help="float32 (exact) or int16 (scaled per series, within --max-error; see tre.kernels.quantise)",
    )
    p.add_argument(
        "--max-error",
        type=float,
        default=None,
        metavar="E",
        help=f"int16 only: largest error after decoding, in z-score units (default {DEFAULT_MAX_ERROR:g})",
    )
    p.add_argument("--workers", type=_workers, default=0, help="decode/compress threads (0: available CPUs)")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first bad series (exit 2)")
    p.add_argument(
        "--resume-from",
        type=Path,
        metavar="DIR",
        help="an ended run's output folder (read-only): its finished series of this recipe are "
        "copied, checked by their hashes, instead of processed again (tre.kernels.carry_over)",
    )
    p.add_argument(
        "--timeline",
        type=Path,
        help="write a JSON-lines timeline of the job's stages to this file (also $TRE_KERNELS_TIMELINE)",
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="kept for old command lines: bad series are recorded in manifest.json and skipped by default",
    )
    return p


def run(argv: list[str] | None = None) -> int:
    """Run the job; returns the exit status (0 ok, 2 bad input, 1 internal failure)."""
    args = _parser().parse_args(argv)
    timeline = from_env(args.timeline)
    timeline.add("start-up", None, 0.0, timeline.now())  # interpreter + this module's imports
    with timeline.span("numba-seed"):  # before Numba is imported: it reads NUMBA_CACHE_DIR then
        seed_numba_cache()  # the image's compiled kernels, if any (see numba_seed.py)
    discovery: ForkedDiscovery | None = None
    try:
        try:
            params = PreprocessParams(
                spacing=(args.spacing[2], args.spacing[1], args.spacing[0]),
                window=tuple(args.window) if args.window else None,
                percentile_clip=tuple(args.percentile_clip) if args.percentile_clip else None,
                foreground_threshold=args.foreground_threshold,
                output_dtype=args.dtype,
                max_error=output_max_error(args.dtype, args.max_error),
            )
            check_format(args.format)
        except ValueError as exc:  # the arguments, before any work
            raise KernelInputError(str(exc)) from None
        if not args.input.is_dir():
            raise KernelInputError(f"input folder {args.input} does not exist")
        note = format_note(args.format)
        if note:
            print(note, flush=True)
        with timeline.span("imports"):  # before the fork: the children import nothing
            from tre.kernels.carry_over import carry_over
            from tre.kernels.cohort import CohortOptions, run_cohort, usable_workers
            from tre.kernels.forked_discovery import ForkedDiscovery
        # Headers parsed on the other cores (one left for the kernels' cache load here).
        discovery = ForkedDiscovery(args.input, timeline, max(1, usable_workers(args.workers) - 1))
        warm = start_warm(params, args.device, timeline)  # meanwhile, here (see warm.py)
        opts = CohortOptions(
            params=params,
            device=args.device,
            suv=args.suv,
            fmt=args.format,
            workers=args.workers,
            fail_fast=args.fail_fast,
        )
        if args.resume_from is not None:
            with timeline.span("carry-over"):
                args.output.mkdir(parents=True, exist_ok=True)
                carry_over(args.resume_from, args.output, opts.recipe())
        summary = run_cohort(
            args.input,
            args.output,
            opts,
            report=lambda line: print(line, flush=True),
            timeline=timeline,
            warm=warm,
            discovered=discovery.result,
        )
        if summary.ok + summary.resumed == 0:
            # Reason codes only: a series' reason quotes the data (paths, UIDs, tag values),
            # and this line is the researcher's; the reasons are in the manifest.
            noun = "the series" if summary.total == 1 else f"none of the {summary.total} series"
            raise KernelInputError(
                f"{noun} could not be preprocessed: {summary.failures() or 'no series processed'} "
                f"(reasons in {MANIFEST_NAME})"
            )
        print(
            f"done {summary.total} series: ok {summary.ok} resumed {summary.resumed} "
            f"failed {summary.failed} (details in {MANIFEST_NAME})",
            flush=True,
        )
    except (KernelInputError, MissingCodecError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BaseException as exc:  # noqa: BLE001 - the job log gets one line, never a traceback
        if is_fatal(exc):
            raise
        # The type only: an unexpected error's text can quote the input (a file name, a
        # decoder's message), and the log carries no input-controlled text.
        print(f"error: internal failure: {type(exc).__name__}", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if discovery is not None:
            discovery.close()
        try:
            timeline.save()
        except OSError as exc:  # a diagnostic file must not turn a finished job into a failure
            print(f"note: timeline not written: {exc.strerror or type(exc).__name__}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The process entry point: `run`, with everything that exists at its start and end
    moved out of the garbage collector's sight (``gc.freeze``).

    Why: the job's exit spent ~0.25 s in the interpreter's final collections walking every
    object of pydicom, Numba and the job (0.02-0.07 s frozen, on the dev machine); frozen
    objects are still freed by reference counting, only cycles among them stay, which a
    process about to exit does not mind. Not in `run`, which tests call in-process."""
    gc.freeze()
    without_downloaders()
    # pydicom warns about what it copes with (excess padding, odd values) with text from the
    # files, NumPy about arithmetic on odd values: in the job log that is noise at best and
    # file content at worst; what the job cannot cope with still fails the series with a
    # reason in the manifest.
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    with private_log_streams():
        try:
            # Its calls (header parsing here and in the forked children) in a frame-stack
            # chunk of their own (tre.kernels.stack_room).
            return with_stack_room(run, argv)
        finally:
            gc.freeze()


# Imported by pydicom only to download its example data (pydicom.data.download falls back to
# urllib without them); a preprocessing job never downloads (its sandbox has no network).
DOWNLOAD_ONLY_MODULES = ("requests",)


def without_downloaders() -> None:
    """Keep this process from importing `DOWNLOAD_ONLY_MODULES` (an import of one raises
    ImportError, which pydicom expects of a missing optional package).

    Why: ``import pydicom`` imports ``requests`` (with urllib3, charset_normalizer, idna and
    ssl) through its example-data downloader: 0.1-0.2 s of the job's start-up on one core,
    before discovery forks, while the other core idles (issue 13, tenth round). Only the job's
    own process (`main`), never a process that imported them already; which decoder decodes
    what is unchanged (pydicom's pixel plugins do not use them)."""
    for name in DOWNLOAD_ONLY_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


@contextlib.contextmanager
def private_log_streams() -> Iterator[None]:
    """Only the job's own lines reach the log: ``sys.stdout`` and ``sys.stderr`` write to
    copies of file descriptors 1 and 2 while 1 and 2 themselves point at /dev/null.

    Why: decoders written in C (OpenJPEG, GDCM) print their complaints about a codestream to
    file descriptor 2 themselves ("Invalid number of tiles : 938 x 938"), with numbers from
    the file, past anything Python can filter; the job log is an output channel that must
    hold fixed vocabulary only."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (sys.stdout, sys.stderr)
    try:
        out_fd, err_fd = os.dup(1), os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no descriptors to spare: keep the streams as they are
        yield
        return
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        sys.stdout = open(out_fd, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        sys.stderr = open(err_fd, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        sys.stdout, sys.stderr = saved
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        for fd in (out_fd, err_fd, devnull):
            os.close(fd)


if __name__ == "__main__":
    sys.exit(main())

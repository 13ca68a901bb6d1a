"""Write one preprocessed volume to disk fast, atomically, and hashed while it is written.

Why this module: gzip, not the kernels, dominated a preprocessing job (3.7 s of 4.6 s for a
512x512x300 CT). Three output formats, chosen per job:

* ``nii.gz`` -- gzip-compatible NIfTI, compressed by ISA-L (``isal``) or zlib-ng
  (``zlib-ng``) on several threads; plain ``gzip`` (slow, one thread) only when neither is
  installed, which is reported once in the job log and in the sidecar.
* ``nii`` -- uncompressed NIfTI: the disk's write rate, for the next step on the same disk.
* ``zarr`` -- a Zarr v3 array in one ZIP file (``.zarr.zip``), chunked 64^3 and compressed
  with Blosc LZ4 + byte shuffle on threads (`tre.kernels.zarr_zip`): what patch-based
  training loaders read chunk by chunk. Needs the optional ``zarr`` package.

Every file is written under a temporary name, made durable (``fdatasync``) and renamed into
place only when complete (the rename made durable too), so a crash, of the job or of the
machine, never leaves a partial output that a resumed job could mistake for a finished one; its
SHA-256 is computed from the bytes as they go to disk (no second read).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

OutputFormat = Literal["nii.gz", "nii", "zarr"]
FORMATS: tuple[str, ...] = ("nii.gz", "nii", "zarr")
SUFFIX: dict[str, str] = {"nii.gz": ".nii.gz", "nii": ".nii", "zarr": ".zarr.zip"}
ZARR_CHUNKS = (64, 64, 64)
NIFTI_DATA_OFFSET = 352  # 348-byte NIfTI-1 header + 4-byte extension flag
WRITE_CHUNK = 8 << 20  # bytes handed to the compressor / file per write call
WRITEBACK_STEP = 8 << 20  # start the disk write-back of each such many bytes written


class MissingCodecError(RuntimeError):
    """An optional package needed for the chosen output format is not installed."""


@dataclass(frozen=True)
class Written:
    """One finished output file: name inside the output folder, size and SHA-256."""

    name: str
    bytes: int
    sha256: str


# Linux only (absent from macOS, and from typeshed's view of ``os`` on other platforms).
_SYNC_FILE_RANGE: Callable[[int, int, int, int], None] | None = getattr(os, "sync_file_range", None)
_WRITE_START: int = getattr(os, "SYNC_FILE_RANGE_WRITE", 2)


class _HashingWriter(io.RawIOBase):
    """Raw file wrapper that hashes and counts every byte written through it, and starts
    the disk write-back of each WRITEBACK_STEP written (Linux ``sync_file_range``, which
    does not wait for it).

    Why start write-back: an output is ~200 MB; left to the kernel's dirty-page flusher it
    reaches the disk late, when the whole job's outputs compete for it at once (0.6 s of
    flushing after a 6-series job on the dev machine), instead of while the next series is
    decoded and processed."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.count = 0
        self._started = 0  # bytes whose write-back was started
        self._fd: int | None = raw.fileno() if _SYNC_FILE_RANGE is not None else None

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        self.digest.update(view)
        self._raw.write(view)
        self.count += len(view)
        if self._fd is not None and self.count - self._started >= WRITEBACK_STEP:
            self._start_writeback()
        return len(view)

    def _start_writeback(self) -> None:
        assert self._fd is not None and _SYNC_FILE_RANGE is not None  # noqa: S101 - checked by the caller
        try:
            self._raw.flush()
            _SYNC_FILE_RANGE(self._fd, self._started, self.count - self._started, _WRITE_START)
        except OSError:  # a file system without it: the kernel's flusher does it later
            self._fd = None
        self._started = self.count


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    """SHA-256 of a file on disk (used to verify outputs when resuming)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def gzip_backend() -> str:
    """The fastest gzip-compatible compressor installed: ``isal``, ``zlib-ng`` or ``gzip``."""
    try:
        import isal.igzip_threaded  # noqa: F401

        return "isal"
    except ImportError:
        pass
    try:
        import zlib_ng.gzip_ng_threaded  # noqa: F401

        return "zlib-ng"
    except ImportError:
        return "gzip"


def _gzip_opener(threads: int) -> Callable[[BinaryIO], BinaryIO]:
    """A function wrapping a raw binary file in a gzip writer (level tuned for speed)."""
    backend = gzip_backend()
    if backend == "isal":
        from isal import igzip_threaded

        return lambda fh: igzip_threaded.open(fh, "wb", compresslevel=1, threads=threads)
    if backend == "zlib-ng":
        from zlib_ng import gzip_ng_threaded

        return lambda fh: gzip_ng_threaded.open(fh, "wb", compresslevel=1, threads=threads)
    import gzip

    return lambda fh: gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=1, mtime=0)  # type: ignore[return-value]


def _nifti_image(image_zyx: np.ndarray, affine: np.ndarray, scaled: bool = False) -> Any:
    import nibabel as nib

    # The header needs the shape and the stored type only (int16 for a scaled output, else
    # float32): a zero-stride stand-in of them, so no image is converted (copied) to describe it.
    kind = np.int16 if scaled else np.float32
    stand_in = np.broadcast_to(np.zeros((), dtype=kind), tuple(image_zyx.shape[::-1]))
    img = nib.Nifti1Image(stand_in, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    return img


def sync_file(path: Path) -> None:
    """Wait until ``path``'s data (and the size that finds it) is on the disk (``fdatasync``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def sync_dir(folder: Path) -> None:
    """Make the renames into ``folder`` durable (``fsync`` of the directory)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_outputs(paths: list[Path], folder: Path) -> None:
    """Make finished outputs durable: their data, then their renames into ``folder``."""
    for path in paths:
        sync_file(path)
    sync_dir(folder)


def _atomic(out_dir: Path, name: str, fill: Callable[[Path], str | None], durable: bool = True) -> Written:
    """Run ``fill(tmp_path)``, make it durable, rename it into ``out_dir/name`` and make the
    rename durable; ``fill`` may return the hash.

    Why durable here, in the writer thread: the manifest records a file only after this
    returns, so an entry never points at data still in the page cache (a crash of the machine
    would otherwise leave a manifest that a resumed job trusts over a truncated file); and
    the write-back `_HashingWriter` started as the file was written has left little to wait
    for, so the wait overlaps the next series instead of ending the job (0.6 s of fsync after
    the mixed cohort's last series in the ninth round). ``durable=False``: the caller makes
    the file durable itself before recording it (`sync_outputs`; the cohort does so on a
    thread of its own, so its writers, and the kernels waiting for them, never wait for the
    disk)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        digest = fill(tmp)
        os.chmod(tmp, 0o644)
        if durable:
            sync_file(tmp)
        final = out_dir / name
        os.replace(tmp, final)
        if durable:
            sync_dir(out_dir)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Written(name, final.stat().st_size, digest or sha256_file(final))


def write_volume(
    out_dir: Path,
    stem: str,
    image_zyx: np.ndarray,
    affine: np.ndarray,
    fmt: OutputFormat = "nii.gz",
    threads: int = 2,
    durable: bool = True,
    scaling: tuple[float, float] | None = None,
) -> Written:
    """Write ``image_zyx`` (z/y/x, stored as float32) as ``stem`` + the format's suffix; see
    module doc.

    ``scaling``: (slope, intercept) of an int16 ``image_zyx`` (`tre.kernels.quantise`),
    stored as int16 with NIfTI's ``scl_slope`` / ``scl_inter``, which every NIfTI reader applies, or zarr's CF
    ``scale_factor`` / ``add_offset`` attributes (xarray applies them)."""
    if scaling is not None and image_zyx.dtype != np.int16:
        raise ValueError("a scaling is for an int16 output (tre.kernels.quantise)")
    name = stem + SUFFIX[fmt]
    if fmt == "zarr":

        def fill_zarr(tmp: Path) -> str:
            with tmp.open("r+b") as raw:  # not O_TRUNC: see below
                hashing = _HashingWriter(raw)
                _write_zarr_zip(hashing, image_zyx, affine, threads, scaling)  # type: ignore[arg-type]
                return hashing.digest.hexdigest()

        return _atomic(out_dir, name, fill_zarr, durable)
    header = nifti_header_bytes(image_zyx, affine, scaling)
    stored = "<i2" if scaling is not None else "<f4"
    data = np.ascontiguousarray(image_zyx, dtype=stored).data.cast("B")  # no copy when already so

    def fill(tmp: Path) -> str:
        # "r+b", not "wb": the temporary file is empty already, and on ext4 closing a file
        # opened with O_TRUNC starts its writeback synchronously (auto_da_alloc, meant for
        # replace-by-truncate): 0.06-0.25 s per 195 MB output on the dev machine, in the
        # writer's critical path. Writes of WRITE_CHUNK bypass the buffer.
        with tmp.open("r+b") as raw:
            hashing = _HashingWriter(raw)
            sink: Any = _gzip_opener(threads)(hashing) if fmt == "nii.gz" else hashing  # type: ignore[arg-type]
            try:
                sink.write(header)
                for start in range(0, len(data), WRITE_CHUNK):
                    sink.write(data[start : start + WRITE_CHUNK])
            finally:
                if sink is not hashing:
                    sink.close()
            return hashing.digest.hexdigest()

    return _atomic(out_dir, name, fill, durable)


def nifti_header_bytes(
    image_zyx: np.ndarray, affine: np.ndarray, scaling: tuple[float, float] | None = None
) -> bytes:
    """The 352 bytes nibabel writes before the voxels of a single-file NIfTI-1 image.

    Why not ``img.to_stream``: nibabel copies the data slice by slice (``tobytes``) and
    through a buffer before it reaches the file; the voxels of a C-contiguous float32 (z, y, x)
    array are already the NIfTI (x, y, z) Fortran-order bytes, so the writer sends the array's
    own memory after this header (the same bytes as nibabel's, tested)."""
    hdr = _nifti_image(image_zyx, affine, scaling is not None).header.copy()
    hdr.set_data_offset(NIFTI_DATA_OFFSET)
    if scaling is None:
        hdr.set_slope_inter(1.0, 0.0)  # what nibabel records for unscaled float32 data
    else:  # int16: decoded = stored * scl_slope + scl_inter (float32 fields, exact values)
        hdr.set_slope_inter(float(np.float32(scaling[0])), float(np.float32(scaling[1])))
    buf = io.BytesIO()
    hdr.write_to(buf)
    head = buf.getvalue()
    if len(head) > NIFTI_DATA_OFFSET:
        raise ValueError("NIfTI header with extensions is not supported here")
    return head.ljust(NIFTI_DATA_OFFSET, b"\0")


def write_bytes(out_dir: Path, name: str, data: bytes, durable: bool = True) -> Written:
    """Write a small file (a JSON sidecar) atomically, with its hash (``durable``: `_atomic`)."""

    def fill(tmp: Path) -> str:
        with tmp.open("r+b") as fh:  # not O_TRUNC: see write_volume
            fh.write(data)
        return hashlib.sha256(data).hexdigest()

    return _atomic(out_dir, name, fill, durable)


def _write_zarr_zip(
    sink: BinaryIO,
    image_zyx: np.ndarray,
    affine: np.ndarray,
    threads: int,
    scaling: tuple[float, float] | None = None,
) -> None:
    from tre.kernels.zarr_zip import MissingZarrError, write_zarr_zip

    attributes: dict[str, Any] = {"axes": ["z", "y", "x"], "affine_ras_xyz": np.asarray(affine).tolist()}
    if scaling is not None:  # CF conventions: decoded = stored * scale_factor + add_offset
        attributes["scale_factor"] = float(np.float32(scaling[0]))
        attributes["add_offset"] = float(np.float32(scaling[1]))
    try:
        dtype = "int16" if scaling is not None else "float32"
        write_zarr_zip(sink, image_zyx, attributes, threads=threads, chunks=ZARR_CHUNKS, dtype=dtype)
    except MissingZarrError as exc:
        raise MissingCodecError(
            "output format zarr needs the zarr package (pip install zarr); use nii or nii.gz"
        ) from exc


def check_format(fmt: str) -> None:
    """Fail before any work when the chosen format's optional package is missing."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "zarr":
        try:
            import zarr
            from zarr.codecs import BloscCodec  # noqa: F401 - zarr v3 API
        except ImportError as exc:
            raise MissingCodecError(
                "output format zarr needs the zarr package, version 3 (pip install 'zarr>=3'); "
                "use nii or nii.gz"
            ) from exc
        if not hasattr(zarr, "create_array"):
            raise MissingCodecError(
                f"output format zarr needs zarr version 3, found {getattr(zarr, '__version__', '?')}; "
                "use nii or nii.gz"
            )


def format_note(fmt: OutputFormat) -> str | None:
    """A one-line notice for the job log when the format falls back to a slow path."""
    if fmt == "nii.gz" and gzip_backend() == "gzip":
        return "note: isal and zlib-ng are not installed; .nii.gz is written with the slower gzip module"
    return None


def compressor_name(fmt: OutputFormat) -> str:
    """What compressed the output, for the sidecar."""
    if fmt == "nii.gz":
        return f"gzip-compatible ({gzip_backend()}, level 1)"
    if fmt == "zarr":
        from tre.kernels.zarr_zip import describe

        return f"zarr v3 in a zip (stored), {describe()}, chunks 64^3"
    return "none"

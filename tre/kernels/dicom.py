"""Load DICOM image series into a (z, y, x) stack with geometry, rescale and provenance.

Slices are grouped by SeriesInstanceUID and ordered by ImagePositionPatient projected on
the slice normal (row x column direction cosines) -- never by InstanceNumber, which
scanners and anonymisers renumber freely. Spacing along z comes from those positions, not
from SliceThickness. Anything that would silently produce a wrong volume (gaps, mixed
orientations, uneven spacing, sheared stacks, several stacks or phases, undecodable pixels)
raises a `SeriesError` whose message says what is wrong and where.

An enhanced multi-frame file (`tre.kernels.multiframe`) contributes one plane per frame, with
the frame's geometry and rescale from its functional groups; from there on frames and classic
slices are ordered, checked and stacked by the same code, so a multi-frame series gives the
volume the same series stored one slice per file gives.
"""

from __future__ import annotations

import os
import stat
import sys
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from tre.kernels import header_values as hv
from tre.kernels import memory
from tre.kernels.buffers import BufferPool
from tre.kernels.codestream import check_frame_size
from tre.kernels.decode import FastDecodeError, FrameRef, decode_bytes_into, decode_into, locate_frame
from tre.kernels.errors import (
    MissingSliceError,
    MixedOrientationError,
    NonUniformSpacingError,
    NotOneStackError,
    SeriesError,
    UndecodableError,
    is_fatal,
)
from tre.kernels.memory import check_fits
from tre.kernels.multiframe import (
    NATIVE_LE,
    PIXEL_DATA_TAG,
    FrameTable,
    MultiFrameRef,
    decode_frame,
    frame_table,
    is_multiframe,
    locate_pixels,
    native_pixel_element,
    number_of_frames,
    read_native,
    split_frames,
)
from tre.kernels.timeline import DISABLED, Timeline

# Direction cosines of one series must agree to this (DICOM stores them as decimal strings).
ORIENTATION_TOL = 1e-4


@dataclass(frozen=True)
class Series:
    """One loaded series: stored pixels plus per-slice rescale, in ascending normal order.

    ``raw`` keeps the stored integers (memory-light, what the kernels read); the real-world
    value of voxel (k, j, i) is raw[k, j, i] * slopes[k] + intercepts[k] (HU for CT).
    ``spacing`` is (z, y, x) in mm; ``direction`` has rows = unit vectors of the x (row),
    y (column) and z (normal) axes in patient LPS; ``origin`` = LPS of voxel (0, 0, 0).
    """

    series_uid: str
    modality: str
    raw: np.ndarray
    slopes: np.ndarray
    intercepts: np.ndarray
    spacing: tuple[float, float, float]
    origin: np.ndarray
    direction: np.ndarray
    header: Dataset
    files: tuple[Path, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (int(self.raw.shape[0]), int(self.raw.shape[1]), int(self.raw.shape[2]))

    def values(self) -> np.ndarray:
        """Real-world values (HU for CT) as float64; for tests and references, not kernels."""
        return self.raw.astype(np.float64) * self.slopes[:, None, None] + self.intercepts[:, None, None]

    def with_rescale(self, slopes: np.ndarray, intercepts: np.ndarray) -> Series:
        """Same pixels and geometry with other per-slice rescale (e.g. SUV folded in)."""
        return Series(
            self.series_uid,
            self.modality,
            self.raw,
            np.asarray(slopes, np.float64),
            np.asarray(intercepts, np.float64),
            self.spacing,
            self.origin,
            self.direction,
            self.header,
            self.files,
        )


def _file_stamp(path: Path) -> tuple[int, int, int]:
    """(size, mtime in ns, inode): a file rewritten or replaced after its header was read
    has another stamp, so its kept header is not trusted."""
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True, slots=True)
class SliceHeader:
    """What loading needs from one slice's header, kept from discovery to loading.

    Why not the pydicom Dataset: discovery parses every header anyway (to group files by
    series) and the loader needed them again, so each header was parsed twice (~0.5 ms a
    file, a third of an uncompressed job's CPU outside pixels); a Dataset costs 10-20 KB,
    this record well under 1 KB, so a cohort of thousands of files keeps them all. Values
    that are missing or malformed are None here and refused by `load_series` with the
    message it always gave. ``stamp`` is checked before the pixels are read: a file changed
    since discovery has its header read again. A multi-frame file is one record too, its
    per-frame geometry and rescale in ``frames`` (a `FrameTable`, tens of bytes a frame) and
    its top-level geometry fields unused; ``pixel`` is then a `MultiFrameRef` (or None).
    """

    path: Path
    stamp: tuple[int, int, int]
    series_uid: str
    orientation: tuple[float, ...] | None
    position: tuple[float, ...] | None
    pixel_spacing: tuple[float, ...] | None
    rows: int
    columns: int
    slope: float | None
    intercept: float | None
    pixel_representation: int
    bits_stored: int
    transfer_syntax: str | None
    pixel: PixelRef
    frames: FrameTable | None = None  # a multi-frame file: its frames' values (the fields above: none)
    photometric: str = "MONOCHROME2"  # PhotometricInterpretation ("" when absent)


def slice_header(path: Path) -> SliceHeader | None:
    """Read one file's header into a `SliceHeader`; None when it is not a DICOM image."""
    try:
        head = _read_slice_header(path)
    except BaseException as exc:  # noqa: BLE001 - one damaged file never fails discovery (the cohort)
        if is_fatal(exc):
            raise
        # Not DICOM (README, JSON sidecars, ...), no image, or a header pydicom cannot
        # parse: it raises NotImplementedError for an unknown VR, BytesLengthException for
        # a bad length, and more; those escaped and failed the whole cohort.
        return None
    return head if head.series_uid else None


def list_files(root: Path | str) -> list[Path]:
    """Every regular file under ``root`` (recursively), in the order discovery reads them.

    Skipped: FIFOs, sockets and device files (opening a FIFO blocks until a writer comes:
    the job hung), and symbolic links whose target is not a regular file inside ``root``
    (a link out of the input would read files the job was not given; links to folders are
    never followed, so a loop cannot recur)."""
    inside = os.path.realpath(root)
    out: list[Path] = []
    _walk(os.fspath(root), inside, out)
    return out


def _walk(folder: str, inside: str, out: list[Path]) -> None:
    """`list_files` of one folder: its files in name order, then its subfolders (the order
    of ``os.walk``). The entry types come with the folder listing (no stat per file)."""
    try:
        with os.scandir(folder) as listing:
            entries = list(listing)
    except OSError:  # unreadable or vanished: as os.walk, skipped
        return
    files = sorted(e.name for e in entries if _readable_file(e, inside))
    out.extend(Path(folder) / name for name in files)
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                _walk(entry.path, inside, out)
        except OSError:
            continue


def _readable_file(entry: os.DirEntry[str], inside: str) -> bool:
    """Whether ``entry`` is a regular file, or a link to one within the folder ``inside``."""
    try:
        if entry.is_file(follow_symlinks=False):
            return True
        if not entry.is_symlink():
            return False
        target = os.path.realpath(entry.path)
        return os.path.commonpath([target, inside]) == inside and stat.S_ISREG(os.stat(target).st_mode)
    except (OSError, ValueError):
        return False


def unreadable_files(root: Path | str, groups: dict[str, list[SliceHeader]]) -> list[Path]:
    """Files under ``root`` that begin as DICOM (the preamble and ``DICM``, or a bare data
    set) and are not in ``groups`` although they are images (their SOP class is an image
    storage class) or their header cannot be parsed at all, in listing order.

    Why: discovery skips them with the README files, so a slice cut short showed only as
    its series' "uneven spacing", and a series of such files vanished from the cohort
    unreported. Other DICOM files (DICOMDIR, reports, structure sets) are not images and
    not counted. Only files discovery did not use are read again (132 bytes each, and the
    header of those that begin as DICOM)."""
    known = {h.path for heads in groups.values() for h in heads}
    out: list[Path] = []
    for path in list_files(root):
        if path in known or not _starts_like_dicom(path):
            continue
        try:
            ds = parsed(read_dataset(path, stop_before_pixels=True), path)
            meta = getattr(ds, "file_meta", None)
            sop = str(ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else ""))
            if "Image Storage" not in UID(sop).name:
                continue
        except BaseException as exc:  # noqa: BLE001 - unreadable, whatever pydicom raised
            if is_fatal(exc):
                raise
        out.append(path)
    return out


def _starts_like_dicom(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return True  # it is there but cannot be read: as unreadable as a broken header
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.read(fd, 132)
    except OSError:
        return True
    finally:
        os.close(fd)
    return head[128:132] == b"DICM" or head[:2] in _BARE_STARTS


def group_headers(heads: Iterable[SliceHeader | None]) -> dict[str, list[SliceHeader]]:
    """Map SeriesInstanceUID -> its slices' headers (in the given order), series sorted by UID."""
    groups: dict[str, list[SliceHeader]] = defaultdict(list)
    for head in heads:
        if head is not None:
            groups[head.series_uid].append(head)
    return dict(sorted(groups.items()))


def discover_headers(root: Path | str) -> dict[str, list[SliceHeader]]:
    """Map SeriesInstanceUID -> its slices' headers under ``root`` (recursively, files in
    name order); skips non-image files. `load_series` takes these instead of parsing again."""
    return group_headers(slice_header(path) for path in list_files(root))


def discover_series(root: Path | str) -> dict[str, list[Path]]:
    """Map SeriesInstanceUID -> files under ``root`` (recursively); skips non-image files."""
    return {uid: [h.path for h in heads] for uid, heads in discover_headers(root).items()}


# Fastest installed decoder first (measured per 512x512 int16 CT slice on the 2-core dev
# machine: RLE pylibjpeg-rle 1.7 ms vs pydicom's NumPy 11 ms; JPEG-LS CharLS (pyjpegls)
# 11 ms vs libjpeg 46 ms; JPEG 2000 and JPEG lossless: GDCM ~20 % ahead of openjpeg/libjpeg).
_PREFERRED_PLUGINS: dict[str, tuple[str, ...]] = {
    RLELossless: ("pylibjpeg", "pydicom"),
    JPEGLSLossless: ("pyjpegls", "gdcm", "pylibjpeg"),
    JPEGLSNearLossless: ("pyjpegls", "gdcm", "pylibjpeg"),
    JPEG2000Lossless: ("gdcm", "pylibjpeg"),
    JPEG2000: ("gdcm", "pylibjpeg"),
    JPEGLosslessSV1: ("gdcm", "pylibjpeg"),
    JPEGLossless: ("gdcm", "pylibjpeg"),
}


def _plugin_for(tsyntax: UID | None) -> str:
    """The decoding plugin to ask pydicom for ("" = pydicom's own choice)."""
    if tsyntax is None or tsyntax not in _PREFERRED_PLUGINS:
        return ""
    try:
        available = get_decoder(tsyntax).available_plugins
    except (NotImplementedError, ValueError):
        return ""
    return next((p for p in _PREFERRED_PLUGINS[tsyntax] if p in available), "")


def _undecodable(where: object, tsyntax: object, exc: BaseException) -> UndecodableError:
    """The one-line refusal of pixel data no installed decoder reads."""
    name = getattr(tsyntax, "name", None) or (UID(str(tsyntax)).name if tsyntax else None) or "unknown"
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UndecodableError(
        f"{where}: pixel data in transfer syntax {name} ({tsyntax}) cannot be decoded: {reason}. "
        "Install a decoder plugin (pylibjpeg with -libjpeg/-openjpeg/-rle, or gdcm) or decompress first"
    )


def _pixels(ds: Dataset, where: Path, frames: int = 1) -> np.ndarray:
    """Decoded pixels, (rows, cols) for a slice or (frames, rows, cols) for a multi-frame
    file, or a clear error naming the transfer syntax."""
    if _header_int(ds, "NumberOfFrames", where) != frames:
        raise SeriesError(f"{where}: NumberOfFrames changed while the series was read")
    if _header_int(ds, "SamplesPerPixel", where) != 1:
        raise SeriesError(
            f"{where}: {ds.get('PhotometricInterpretation', '?')} colour images are not volumes"
        )
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if is_compressed_syntax(tsyntax):
        _check_frame_sizes(ds, where, frames, UID(str(tsyntax)))
    try:
        plugin = _plugin_for(tsyntax)
        if plugin:
            ds.pixel_array_options(decoding_plugin=plugin)
        arr = ds.pixel_array
    except BaseException as exc:  # noqa: BLE001 - decoders raise many types, panics included
        if is_fatal(exc):
            raise
        raise _undecodable(where, tsyntax, exc) from None
    if frames > 1 and (arr.ndim != 3 or arr.shape[0] != frames):
        raise SeriesError(f"{where}: expected {frames} frames, got pixel array of shape {arr.shape}")
    if frames == 1 and arr.ndim != 2:
        raise SeriesError(f"{where}: expected a 2-D slice, got pixel array of shape {arr.shape}")
    # Explicit VR Big Endian (retired, still in archives) decodes to big-endian arrays, which
    # the kernels cannot take: the volume is always in the machine's byte order.
    return native_byte_order(arr)


def _check_frame_sizes(ds: Dataset, where: Path, frames: int, tsyntax: UID) -> None:
    """Every encapsulated frame's declared size against Rows x Columns, before pydicom's
    decoders allocate it (`tre.kernels.codestream`). Pixel data that does not split into
    frames is left to pydicom, which refuses it."""
    rows, cols = hv.uint(ds, "Rows", 0), hv.uint(ds, "Columns", 0)
    try:
        for i, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=frames)):
            check_frame_size(frame, rows, cols, where if frames == 1 else f"{where} frame {i + 1}", tsyntax)
    except UndecodableError:
        raise
    except Exception:  # noqa: BLE001, S110 - malformed encapsulation: pydicom's refusal follows
        pass


def is_compressed_syntax(tsyntax: object) -> bool:
    """Whether ``tsyntax`` is a compressed (encapsulated) transfer syntax; False for None
    and for a UID that is no transfer syntax at all (pydicom raises ValueError on those:
    a damaged file meta made the series an internal error)."""
    if not tsyntax:
        return False
    try:
        return bool(UID(str(tsyntax)).is_compressed)
    except ValueError:
        return False


def native_byte_order(arr: np.ndarray) -> np.ndarray:
    """``arr`` itself when its bytes are in the machine's order, else a converted copy."""
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _header_int(ds: Dataset, keyword: str, where: Path) -> int:
    """A count such as NumberOfFrames (1 when absent or empty); a malformed value refuses the
    slice in one line instead of failing the series as an internal error."""
    value = ds.get(keyword, 1)
    try:
        return int(value or 1)
    except (TypeError, ValueError):
        raise SeriesError(f"{where}: malformed {keyword} value; cannot read the slice") from None


def _check_orientation(orients: list[np.ndarray], across: str, uid: str) -> np.ndarray:
    ref = orients[0]
    distinct = [ref]
    for o in orients[1:]:
        if not any(np.max(np.abs(o - d)) <= ORIENTATION_TOL for d in distinct):
            distinct.append(o)
    if len(distinct) > 1:
        shown = "; ".join("[" + ", ".join(f"{v:.4g}" for v in d) + "]" for d in distinct[:3])
        raise MixedOrientationError(
            f"series {uid}: {len(distinct)} different ImageOrientationPatient values "
            f"across {across} "
            f"({shown}{'; ...' if len(distinct) > 3 else ''}); a localiser or several stacks share the UID"
        )
    return ref


def _z_spacing(proj: np.ndarray, uid: str, rel_tol: float, header: Dataset, noun: str = "slices") -> float:
    """Spacing along the normal from sorted projections; raises on gaps or uneven steps."""
    if proj.size == 1:
        for kw in ("SpacingBetweenSlices", "SliceThickness"):
            value = hv.number(header, kw, 0.0)
            if value is not None and 0 < value < MAX_SPACING_MM:  # NaN, zero, negative: not a thickness
                return value
        return 1.0
    steps = np.diff(proj)
    if np.any(steps <= 1e-6 * max(1.0, float(np.abs(proj).max()))):
        dup = float(proj[1:][steps <= 1e-6 * max(1.0, float(np.abs(proj).max()))][0])
        raise NotOneStackError(
            f"series {uid}: two {noun} at the same position ({dup:.3f} mm along the normal); "
            "repeated acquisitions, stacks or phases share the series UID"
        )
    base = float(np.median(steps))
    tol = max(rel_tol * base, 1e-3)
    bad = np.flatnonzero(np.abs(steps - base) > tol)
    if bad.size == 0:
        return float((proj[-1] - proj[0]) / (proj.size - 1))
    ratios = steps[bad] / base
    whole = np.abs(ratios - np.round(ratios)) * base <= tol
    if np.all(whole) and np.all(np.round(ratios) >= 2):
        missing = int(np.sum(np.round(ratios) - 1))
        where = ", ".join(f"{proj[i]:.2f}->{proj[i + 1]:.2f} mm" for i in bad[:5])
        raise MissingSliceError(
            f"series {uid}: {missing} {noun[:-1] if missing == 1 else noun} missing (spacing "
            f"{base:.4g} mm; gaps at {where})"
        )
    raise NonUniformSpacingError(
        f"series {uid}: non-uniform slice spacing: steps range {steps.min():.4g}-{steps.max():.4g} mm "
        f"(median {base:.4g} mm, {bad.size} of {steps.size} steps off by more than {tol:.3g} mm)"
    )


# Native pixel data a slice's bytes can be read straight into the volume from (no pydicom
# pixel array, no per-slice copy, no np.stack): little-endian, uncompressed.


def _native_pixel_offset(fh: BinaryIO, ds: Dataset) -> int | None:
    """File offset of a slice's native 16-bit pixel bytes, read right after its header
    (``fh`` stands at the Pixel Data element), or None when pydicom must decode it."""
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if tsyntax not in NATIVE_LE or sys.byteorder != "little":
        return None
    if hv.uint(ds, "BitsAllocated", 0) != 16 or hv.uint(ds, "SamplesPerPixel", 1) != 1:
        return None
    if int(ds.get("NumberOfFrames", 1) or 1) != 1 or "Rows" not in ds or "Columns" not in ds:
        return None
    start = fh.tell()
    head = fh.read(12)
    if len(head) < 12 or head[:4] != PIXEL_DATA_TAG:
        return None
    element = native_pixel_element(head, tsyntax, start)
    if element is None:
        return None
    length, data = element
    return data if length == hv.uint(ds, "Rows", 0) * hv.uint(ds, "Columns", 0) * 2 else None


# Where a slice's pixels are: the offset of native pixel bytes, an encapsulated frame that
# `tre.kernels.decode` reads without pydicom, a multi-frame file's pixel data
# (`tre.kernels.multiframe`), or None (pydicom decodes the whole file).
PixelRef = int | FrameRef | MultiFrameRef | None


def _pixel_ref(fh: BinaryIO, ds: Dataset) -> PixelRef:
    """Where the pixels start (``fh`` stands right after the header); None when this cannot
    be worked out here, so pydicom reads the whole file (and refuses it if it must)."""
    start = fh.tell()
    try:
        if is_multiframe(ds):
            return locate_pixels(fh, ds, number_of_frames(ds) or 1)
        native = _native_pixel_offset(fh, ds)
        if native is not None:
            return native
        fh.seek(start)
        return locate_frame(fh, ds)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


# How a DICOM file without the 128-byte preamble and "DICM" begins: an element of the file
# meta group (0002) or of the identifying group (0008), little endian.
_BARE_STARTS = (b"\x02\x00", b"\x08\x00")


DEFLATED_UID = DeflatedExplicitVRLittleEndian.encode()
_META_BYTES = 1024  # the file meta group, where the transfer syntax is, comes first


def _check_inflated_size(fh: BinaryIO, where: object) -> None:
    """Inflate a deflated data set once, counting, before pydicom inflates it whole into
    memory: refuse it when it would not fit in the job's memory (`tre.kernels.memory`).

    Why: pydicom inflates the whole file with one ``zlib.decompress`` even for the header
    alone, and deflate expands up to ~1000 times: a 10 MB file can make 10 GB at discovery,
    killing the job (the whole cohort) for memory."""
    force = read_preamble(fh, True) is None
    if force:
        fh.seek(0)
    _read_file_meta_info(fh)
    inflate = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    limit = int(memory.SHARE * (memory.memory_limit_bytes() or 1 << 62))
    step = 1 << 24  # at most 16 MiB of inflated bytes in memory at a time
    while chunk := fh.read(1 << 20):
        total += len(inflate.decompress(chunk, step))
        while inflate.unconsumed_tail and total <= limit:
            total += len(inflate.decompress(inflate.unconsumed_tail, step))
        if total > limit:
            check_fits(f"{where}: the deflated data set", total)  # raises SeriesTooLargeError
        if inflate.eof:
            return


def _name(source: Path | BinaryIO) -> str:
    return str(source) if isinstance(source, Path) else str(getattr(source, "name", "a file"))


def parsed(ds: Dataset, where: object) -> Dataset:
    """``ds`` with every element converted now: pydicom converts an element's bytes when it is
    first read, so a damaged value (an unknown VR, a length that is no multiple of the value
    size) raised its own exception types later, wherever the value was used (an internal
    error); here it refuses the file in one line."""
    try:
        for elem in ds.iterall():
            _ = elem.value
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom's converters raise many types on damage
        raise SeriesError(f"{where}: a DICOM header value cannot be parsed ({type(exc).__name__})") from None
    return ds


def read_dataset(source: Path | BinaryIO, stop_before_pixels: bool = False) -> Dataset:
    """``pydicom.dcmread``, also of a file without the preamble and "DICM" prefix (old
    archives and some exporters write the data set bare, which the standard's media format
    forbids but every reader accepts): such files were skipped as not DICOM, so their series
    silently lost slices or vanished from the cohort."""
    fh = source.open("rb") if isinstance(source, Path) else source
    try:
        start = fh.tell()
        if DEFLATED_UID in fh.read(_META_BYTES):
            fh.seek(start)
            _check_inflated_size(fh, source)
        fh.seek(start)
        try:
            try:
                return pydicom.dcmread(fh, stop_before_pixels=stop_before_pixels)
            except InvalidDicomError:
                fh.seek(start)
                if fh.read(2) not in _BARE_STARTS:
                    raise
                fh.seek(start)
                return pydicom.dcmread(fh, stop_before_pixels=stop_before_pixels, force=True)
        except (InvalidDicomError, OSError, MemoryError, SeriesError):
            raise
        except Exception as exc:  # noqa: BLE001 - pydicom's parser raises many types on damage
            what = type(exc).__name__
            raise SeriesError(f"{_name(source)}: the DICOM data set cannot be parsed ({what})") from None
    finally:
        if isinstance(source, Path):
            fh.close()


def _read_header(path: Path) -> tuple[Dataset, PixelRef]:
    """A slice's header (everything before Pixel Data) and where its pixels start."""
    # O_NONBLOCK: a file swapped for a FIFO after the folder was listed must not hang the
    # job in open(); it is then refused as not a regular file.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidDicomError(f"{path}: not a regular file")
        ds = read_dataset(fh, stop_before_pixels=True)
        return ds, _pixel_ref(fh, ds)


def _read_native_into(path: Path, offset: int, out: np.ndarray, bits_stored: int) -> None:
    """Read a slice's native pixels straight into ``out`` (a row of the volume), with
    pydicom's correction of unused high bits (shift left, then back: sign-extends int16)."""
    view = out.data.cast("B")
    with path.open("rb", buffering=0) as fh:
        fh.seek(offset)
        done = 0
        while done < len(view):
            got = fh.readinto(view[done:])
            if not got:
                raise SeriesError(f"{path}: pixel data is shorter than Rows x Columns")
            done += got
    shift = 16 - bits_stored
    if 0 < shift < 16:
        np.left_shift(out, shift, out=out)
        np.right_shift(out, shift, out=out)


def _decode_file(path: Path) -> np.ndarray:
    """Read a whole slice file and decode its pixels (in a worker process for compressed data)."""
    return _pixels(parsed(read_dataset(path), path), path)


@dataclass(frozen=True, slots=True)
class _Plane:
    """One plane of the volume: a classic slice (``frame`` None) or frame ``frame`` (0-based)
    of a multi-frame file; the values every check and the stacking read."""

    head: SliceHeader
    frame: int | None
    orientation: tuple[float, ...] | None
    position: tuple[float, ...] | None
    pixel_spacing: tuple[float, ...] | None
    slope: float | None
    intercept: float | None

    @property
    def where(self) -> str:
        return str(self.head.path) if self.frame is None else f"{self.head.path} frame {self.frame + 1}"


def _planes(heads: list[SliceHeader]) -> list[_Plane]:
    """Every slice and every frame of the series' files, in file order."""
    out: list[_Plane] = []
    for h in heads:
        t = h.frames
        if t is None:
            out.append(_Plane(h, None, h.orientation, h.position, h.pixel_spacing, h.slope, h.intercept))
            continue
        for i in range(len(t)):
            out.append(
                _Plane(
                    h, i, t.orientations[i], t.positions[i], t.pixel_spacings[i], t.slopes[i], t.intercepts[i]
                )
            )
    return out


def _direct(ref: PixelRef) -> bool:
    """Whether the plane's pixels go straight into an int16/uint16 volume."""
    return isinstance(ref, int | FrameRef) or (isinstance(ref, MultiFrameRef) and ref.direct)


def _new_volume(
    shape: tuple[int, int, int], dtype: np.dtype | type, volumes: BufferPool | None
) -> np.ndarray:
    """An uninitialised volume, from ``volumes`` when one of its buffers fits (no fresh pages
    to fault in and zero), else a fresh array; the caller writes every element."""
    reused = volumes.take_as(shape, dtype) if volumes is not None else None
    return reused if reused is not None else np.empty(shape, dtype)


def _assemble(
    planes: list[_Plane],
    mapper: Callable[..., Iterable[object]],
    decode_pool: Executor | None,
    volumes: BufferPool | None = None,
) -> np.ndarray:
    """The (z, y, x) volume, filled in place plane by plane.

    First, straight into the volume: native slices and native multi-frame runs by one read
    each; compressed slices and frames that `tre.kernels.decode` handles decoded into their
    rows (on ``mapper``'s threads: the decoders release the GIL). Then the rest, and anything
    the fast path failed on, through pydicom: classic compressed slices on ``decode_pool``,
    other frames of multi-frame files on ``mapper``, copied into their rows."""
    rows, cols = planes[0].head.rows, planes[0].head.columns
    reps = {p.head.pixel_representation for p in planes if _direct(p.head.pixel)}
    mixed = len(reps) > 1  # signed and unsigned planes: let pydicom and NumPy pick the common type
    direct = [] if mixed else [k for k, p in enumerate(planes) if _direct(p.head.pixel)]
    kind = np.int16 if reps == {1} else np.uint16
    volume = _new_volume((len(planes), rows, cols), kind, volumes) if direct else None
    files: dict[Path, tuple[SliceHeader, list[tuple[int, int]]]] = {}  # multi-frame: (row, frame)
    slices: list[int] = []  # classic slices: rows
    for k, p in enumerate(planes):
        if p.frame is None:
            slices.append(k)
        else:
            files.setdefault(p.head.path, (p.head, []))[1].append((k, p.frame))
    plan = _plan_frames(list(files.values()), volume, mixed, rows, cols)
    tasks, later, whole = plan.tasks, plan.later, plan.whole
    chosen = set(direct)
    for k in slices:
        pixel = planes[k].head.pixel
        if k in chosen and isinstance(pixel, int | FrameRef):
            tasks.append(partial(_read_slice, planes[k].head, pixel, volume, k))
    retry = [k for done in mapper(_run, tasks) for k in done]  # type: ignore[attr-defined]
    others = sorted([k for k in slices if k not in chosen] + retry)
    paths = [planes[k].head.path for k in others]
    decoded: Iterable[np.ndarray] = iter(())
    if others:
        tsyntax = planes[others[0]].head.transfer_syntax
        if decode_pool is not None and is_compressed_syntax(tsyntax):
            chunk = max(1, len(others) // (4 * max(1, getattr(decode_pool, "_max_workers", 1))))
            decoded = decode_pool.map(_decode_file, paths, chunksize=chunk)
        else:
            decoded = mapper(_decode_file, paths)  # type: ignore[assignment]
    placed: list[tuple[int, np.ndarray, str]] = [
        (k, plane, str(path)) for k, plane, path in zip(others, decoded, paths, strict=True)
    ]
    if later:
        arrays = mapper(lambda item: item[1](), later)
        placed += [(k, arr, where) for (k, _f, where), arr in zip(later, arrays, strict=True)]  # type: ignore[misc]
    for head, pairs, unsplit in whole:
        stack = _decode_whole(head, unsplit)
        placed += [(k, stack[i], f"{head.path} frame {i + 1}") for k, i in pairs]
    for k, plane, where in placed:
        if plane.shape != (rows, cols):
            raise SeriesError(f"{where}: pixel array of shape {plane.shape}, expected {(rows, cols)}")
        if volume is None:
            volume = _new_volume((len(planes), rows, cols), plane.dtype, volumes)
        elif not np.can_cast(plane.dtype, volume.dtype, "safe"):
            volume = volume.astype(np.result_type(volume.dtype, plane.dtype))
        volume[k] = plane
    assert volume is not None  # noqa: S101 - a series has at least one plane
    return volume


Decode = Callable[[], np.ndarray]


@dataclass
class _FramePlan:
    """How the frames of a series' multi-frame files reach the volume."""

    tasks: list[Callable[[], list[int]]]  # into the volume, on the threads (return: rows to retry)
    later: list[tuple[int, Decode, str]]  # (row, pydicom's decoding of its frame, where)
    # Files pydicom decodes whole, with why their frames could not be split (None: not tried).
    whole: list[tuple[SliceHeader, list[tuple[int, int]], str | None]]


def _plan_frames(
    files: list[tuple[SliceHeader, list[tuple[int, int]]]],
    volume: np.ndarray | None,
    mixed: bool,
    rows: int,
    cols: int,
) -> _FramePlan:
    """Native files: one task reading their runs of frames; encapsulated files: split from
    one read, a fast-path task per JPEG frame, pydicom for the others; anything that cannot
    be located or split: pydicom decodes the whole file. ``files``: (header, (row, frame))."""
    plan = _FramePlan([], [], [])
    for head, pairs in files:
        ref = head.pixel
        if not isinstance(ref, MultiFrameRef) or (mixed and ref.direct):
            plan.whole.append((head, pairs, None))
            continue
        if ref.native:
            plan.tasks.append(partial(_read_frames, head.path, ref, pairs, volume))
            continue
        try:
            frames = split_frames(head.path, ref)  # one read of the pixel data
        except Exception as exc:  # noqa: BLE001 - pydicom may cope (a lying length raised struct.error)
            plan.whole.append(
                (head, pairs, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            )
            continue
        for k, i in pairs:
            where = f"{head.path} frame {i + 1}"
            fallback = _frame_decoder(frames[i], ref, rows, cols, where)
            if ref.codec is not None and volume is not None:
                fast = FrameRef(ref.offset, ref.codec, ref.signed, ref.bits_stored)
                plan.tasks.append(
                    partial(_fast_frame, frames[i], fast, volume, k, where, fallback, plan.later)
                )
            else:
                plan.later.append((k, fallback, where))
    return plan


def _decode_whole(head: SliceHeader, unsplit: str | None) -> np.ndarray:
    """All frames of a multi-frame file decoded by pydicom, (frames, rows, cols). When its
    encapsulated frames could not be split (``unsplit``: why) and pydicom cannot either, the
    refusal says so: a frame in several fragments without an offset table has no marked end."""
    frames = len(head.frames or ()) or 1
    try:
        stack = _pixels(parsed(read_dataset(head.path), head.path), head.path, frames)
    except UndecodableError:
        if unsplit is None:
            raise
        raise UndecodableError(
            f"{head.path}: the encapsulated pixel data does not split into its {frames} frames "
            f"({unsplit}); frames in several fragments need a Basic or Extended Offset Table: "
            "re-encode with one or decompress first"
        ) from None
    return stack[None] if stack.ndim == 2 else stack  # an enhanced image of one frame


def _run(task: Callable[[], list[int]]) -> list[int]:
    return task()


def _read_slice(head: SliceHeader, ref: int | FrameRef, volume: np.ndarray | None, k: int) -> list[int]:
    """A classic slice read or decoded into row ``k``; ``[k]`` when pydicom must do it."""
    assert volume is not None  # noqa: S101 - only called for direct planes
    if isinstance(ref, FrameRef):
        try:
            decode_into(head.path, ref, volume[k])
        except FastDecodeError:
            return [k]  # pydicom decodes it, or refuses it in one line
        return []
    _read_native_into(head.path, ref, volume[k], head.bits_stored)
    return []


def _read_frames(
    path: Path, ref: MultiFrameRef, pairs: list[tuple[int, int]], volume: np.ndarray | None
) -> list[int]:
    assert volume is not None  # noqa: S101 - only called for direct planes
    try:
        read_native(path, ref, pairs, volume)
    except EOFError as exc:
        raise SeriesError(str(exc)) from None
    return []


def _fast_frame(
    frame: bytes,
    ref: FrameRef,
    volume: np.ndarray | None,
    k: int,
    where: str,
    fallback: Callable[[], np.ndarray],
    later: list[tuple[int, Callable[[], np.ndarray], str]],
) -> list[int]:
    """A compressed frame decoded into row ``k``; else queued for pydicom (``later``)."""
    assert volume is not None  # noqa: S101 - only called for direct planes
    try:
        decode_bytes_into(frame, ref, volume[k], where)
    except FastDecodeError:
        later.append((k, fallback, where))  # list.append is atomic: safe from the threads
    return []


def _frame_decoder(
    frame: bytes, ref: MultiFrameRef, rows: int, cols: int, where: str
) -> Callable[[], np.ndarray]:
    """pydicom's decoding of one frame, with the one-line refusal when nothing decodes it."""

    def decode() -> np.ndarray:
        if ref.samples != 1:
            raise SeriesError(f"{where}: {ref.photometric or '?'} colour images are not volumes")
        tsyntax = UID(ref.transfer_syntax)
        check_frame_size(frame, rows, cols, where, tsyntax)
        try:
            return native_byte_order(decode_frame(frame, ref, rows, cols, _plugin_for(tsyntax)))
        except BaseException as exc:  # noqa: BLE001 - decoders raise many types, panics included
            if is_fatal(exc):
                raise
            raise _undecodable(where, tsyntax, exc) from None

    return decode


def _read_slice_header(path: Path) -> SliceHeader:
    """A file's `SliceHeader`, read now; errors propagate (the caller named this file)."""
    stamp = _file_stamp(path)
    ds, ref = _read_header(path)
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if "Rows" not in ds or "Columns" not in ds:
        raise SeriesError(f"{path}: no Rows/Columns; not an image slice")
    rows, columns = hv.uint(ds, "Rows", 0), hv.uint(ds, "Columns", 0)
    return SliceHeader(
        path=path,
        stamp=stamp,
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        orientation=hv.float_tuple(ds, "ImageOrientationPatient", 6),
        position=hv.float_tuple(ds, "ImagePositionPatient", 3),
        pixel_spacing=hv.float_tuple(ds, "PixelSpacing", 2),
        rows=rows,
        columns=columns,
        slope=hv.number(ds, "RescaleSlope", 1.0),
        intercept=hv.number(ds, "RescaleIntercept", 0.0),
        pixel_representation=hv.uint(ds, "PixelRepresentation", 0),
        bits_stored=hv.uint(ds, "BitsStored", 16),
        transfer_syntax=str(tsyntax) if tsyntax is not None else None,
        pixel=ref,
        frames=frame_table(ds, number_of_frames(ds) or 1) if is_multiframe(ds) else None,
        photometric=hv.text(ds, "PhotometricInterpretation").strip(),
    )


def _still_current(head: SliceHeader) -> SliceHeader:
    """``head`` when its file is unchanged since it was read, else the file's header now."""
    try:
        if _file_stamp(head.path) == head.stamp:
            return head
    except OSError:
        pass  # reading it again gives the error the caller reports
    return _read_slice_header(head.path)


def _values(planes: list[_Plane], field: str, keyword: str, n: int) -> list[tuple[float, ...]]:
    out = []
    for p in planes:
        value = getattr(p, field)
        if value is None or len(value) != n:
            where = "the slice" if p.frame is None else "the frame (no functional groups geometry)"
            raise SeriesError(f"{p.where}: missing or malformed {keyword}; cannot place {where} in space")
        out.append(value)
    return out


_DIMENSIONS = (
    ("StackID", "stacks"),
    ("TemporalPositionIndex", "temporal positions (phases)"),
    ("DiffusionBValue", "b-values"),
)


def _check_one_stack(planes: list[_Plane], uid: str) -> None:
    """Refuse frames from several stacks, temporal positions or b-values (FrameContentSequence,
    MRDiffusionSequence): even at distinct positions they are not one volume."""
    dims = [
        p.head.frames.dimensions[p.frame] for p in planes if p.head.frames is not None and p.frame is not None
    ]
    for i, (keyword, what) in enumerate(_DIMENSIONS):
        values = sorted({str(d[i]) for d in dims if d[i] is not None})
        if len(values) > 1:
            shown = ", ".join(values[:4]) + (", ..." if len(values) > 4 else "")
            raise NotOneStackError(
                f"series {uid}: frames of {len(values)} {what} ({keyword} {shown}) share the series; "
                "one volume needs one spatial stack: split them into one series each"
            )


# PhotometricInterpretation of greyscale images ("": absent, as in some old files).
GREYSCALE = frozenset({"MONOCHROME1", "MONOCHROME2", ""})
# Larger distances (1 km) are not an image's: a header error or a hostile value.
MAX_SPACING_MM = 1e6
# Rescaled values must stay finite in the kernels' float32 arithmetic, with room to spare.
MAX_VALUE = 1e30


def _check_geometry_values(orients: list[np.ndarray], positions: np.ndarray, uid: str, noun: str) -> None:
    """Refuse NaN, infinite or absurd orientation and position values in one line (they made
    NumPy warnings, "two slices at one position" or an internal error)."""
    if not all(np.all(np.isfinite(o)) for o in orients):
        raise SeriesError(f"series {uid}: ImageOrientationPatient holds values that are not numbers")
    if not np.all(np.abs(positions) < MAX_SPACING_MM):
        raise SeriesError(f"series {uid}: ImagePositionPatient of the {noun} is not finite or out of range")


def _unit_axes(iop: np.ndarray, uid: str) -> tuple[np.ndarray, np.ndarray]:
    """The row and column direction cosines as unit vectors; refuses a zero vector or row
    and column directions that are not perpendicular (no slice plane, or a sheared one)."""
    row, col = iop[:3], iop[3:]
    nr, nc = float(np.linalg.norm(row)), float(np.linalg.norm(col))
    if nr < 1e-6 or nc < 1e-6:
        raise SeriesError(f"series {uid}: ImageOrientationPatient has a zero direction vector")
    row, col = row / nr, col / nc
    if abs(float(row @ col)) > 0.01:
        raise SeriesError(f"series {uid}: ImageOrientationPatient's row and column are not perpendicular")
    return row, col


def _check_values(raw: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray, uid: str) -> None:
    """Refuse rescale values (and float pixel values) that would make the kernels' float32
    values infinite or NaN: an output of NaNs is not a volume. The stored type's range is
    enough for any sane slope; only a huge one costs a pass over the pixels."""
    if not (np.all(np.abs(slopes) < MAX_VALUE) and np.all(np.abs(intercepts) < MAX_VALUE)):
        raise SeriesError(f"series {uid}: RescaleSlope or RescaleIntercept is not finite or out of range")
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)) or (raw.size and float(np.abs(raw).max()) >= MAX_VALUE):
            raise SeriesError(f"series {uid}: float pixel data holds values that are not finite")
        biggest = float(np.abs(raw).max()) if raw.size else 0.0
    else:
        info = np.iinfo(raw.dtype)
        biggest = float(max(abs(int(info.min)), int(info.max)))
        if biggest * float(np.abs(slopes).max()) >= MAX_VALUE and raw.size:
            biggest = float(np.abs(raw.astype(np.float64)).max())
    if biggest * float(np.abs(slopes).max()) + float(np.abs(intercepts).max()) >= MAX_VALUE:
        raise SeriesError(f"series {uid}: RescaleSlope times the stored values is out of range")


def load_series(
    files: Iterable[Path | str | SliceHeader],
    *,
    spacing_rel_tol: float = 0.01,
    pool: Executor | None = None,
    decode_pool: Executor | None = None,
    timeline: Timeline = DISABLED,
    number: int | None = None,
    volumes: BufferPool | None = None,
) -> Series:
    """Read, validate and stack the slices of one series (all files must share the UID).

    ``files``: paths, or the `SliceHeader` records `discover_headers` read (then only a file
    changed since has its header read again). Headers come first (up to Pixel Data), then
    the pixels go straight into the volume in position order: native slices by one read
    each (native multi-frame files by one read per run of frames in volume order), JPEG 2000,
    JPEG-LS and JPEG lossless slices and frames decoded into their rows, the others through
    pydicom's decoders. ``pool``: an executor that reads and decodes
    slices concurrently; ``decode_pool``: one for compressed pixel data only (a process pool:
    JPEG 2000 decoding is CPU-bound and decoders may hold the GIL). The result does not
    depend on the executors, nor on whether the headers were given.
    ``timeline`` / ``number``: record the header and pixel stages as series ``number``.
    ``volumes``: take the stored-pixel volume from this pool when a free buffer fits
    (`tre.kernels.buffers.InputPool`); the caller may give ``raw`` back once nothing reads it.
    """
    items = list(files)
    if not items:
        raise SeriesError("no files given for the series")
    mapper: Callable[..., Iterable[object]] = pool.map if pool is not None else map

    def header_of(item: Path | str | SliceHeader) -> SliceHeader:
        if isinstance(item, SliceHeader):
            return _still_current(item)
        return _read_slice_header(Path(item))

    with timeline.span("headers", number):
        if all(isinstance(i, SliceHeader) for i in items):  # a stat per file: no thread hop
            heads = [header_of(i) for i in items]
        else:
            heads = list(mapper(header_of, items))  # type: ignore[arg-type]
    uids = {h.series_uid for h in heads}
    if len(uids) != 1:
        raise SeriesError(f"files span {len(uids)} SeriesInstanceUIDs; load one series at a time")
    uid = uids.pop()
    planes = _planes(heads)
    multiframe = any(p.frame is not None for p in planes)
    noun = "frames" if multiframe else "slices"
    _check_one_stack(planes, uid)
    orients = [
        np.asarray(v, np.float64) for v in _values(planes, "orientation", "ImageOrientationPatient", 6)
    ]
    positions = np.asarray(_values(planes, "position", "ImagePositionPatient", 3), np.float64)
    across = f"{len(planes)} frames" if multiframe else f"{len(planes)} files"
    _check_geometry_values(orients, positions, uid, noun)
    iop = _check_orientation(orients, across, uid)
    row, col = _unit_axes(iop, uid)
    normal = np.cross(row, col)
    proj = positions @ normal
    if not np.all(np.isfinite(proj)):
        raise SeriesError(f"series {uid}: ImagePositionPatient values too large to place the {noun}")
    order = np.argsort(proj, kind="stable")
    proj = proj[order]
    positions = positions[order]
    planes = [planes[i] for i in order]
    paths = list(dict.fromkeys(p.head.path for p in planes))  # each file once, in volume order
    header = parsed(read_dataset(paths[0], stop_before_pixels=True), paths[0])  # the one full header kept
    dz = _z_spacing(proj, uid, spacing_rel_tol, header, noun)
    if proj.size > 1:
        offsets_mm = positions - positions[0]
        off_plane = offsets_mm - np.outer(offsets_mm @ normal, normal)
        worst = float(np.abs(off_plane).max())
        if worst > max(0.01 * dz, 1e-3) * max(1.0, proj.size**0.5):
            raise SeriesError(
                f"series {uid}: {noun[:-1]} origins drift {worst:.3f} mm within the {noun[:-1]} plane "
                "(gantry tilt or sheared stack); resample to an orthogonal grid first"
            )
    spacing_yx = np.asarray(_values(planes, "pixel_spacing", "PixelSpacing", 2), np.float64)
    if not np.all((spacing_yx > 0) & (spacing_yx < MAX_SPACING_MM)):
        raise SeriesError(f"series {uid}: PixelSpacing must be positive and finite (mm)")
    if not (0 < dz < MAX_SPACING_MM):
        raise SeriesError(f"series {uid}: the spacing between {noun} is not a usable distance")
    if np.any(np.max(np.abs(spacing_yx - spacing_yx[0]), axis=1) > 1e-4):
        raise SeriesError(f"series {uid}: PixelSpacing differs between {noun}")
    shapes = {(p.head.rows, p.head.columns) for p in planes}
    if len(shapes) != 1:
        raise SeriesError(f"series {uid}: {noun} have different sizes {sorted(shapes)}")
    colour = sorted({p.head.photometric for p in planes} - GREYSCALE)
    if colour:
        # Palette indices or colour samples are not intensities (a palette image decoded
        # as if they were gives a volume of garbage); refused before any pixel is read.
        raise SeriesError(f"series {uid}: {colour[0]} images are not greyscale volumes")
    for p in planes:
        if p.slope is None or p.intercept is None:
            raise SeriesError(f"{p.where}: malformed RescaleSlope or RescaleIntercept")
    rows, cols = next(iter(shapes))  # at least 2 bytes a pixel: what the volume cannot undercut
    check_fits(f"series {uid}: {len(planes)} {noun} of {rows}x{cols}", len(planes) * rows * cols * 2)
    with timeline.span("pixels", number):
        raw = _assemble(planes, mapper, decode_pool, volumes)
    slopes = np.asarray([p.slope for p in planes], dtype=np.float64)
    intercepts = np.asarray([p.intercept for p in planes], dtype=np.float64)
    _check_values(raw, slopes, intercepts, uid)
    return Series(
        series_uid=uid,
        modality=str(header.get("Modality", "OT")),
        raw=raw,
        slopes=slopes,
        intercepts=intercepts,
        spacing=(float(dz), float(spacing_yx[0][0]), float(spacing_yx[0][1])),
        origin=positions[0].copy(),
        direction=np.stack([row, col, normal]),
        header=header,
        files=tuple(paths),
    )


def load_all(root: Path | str) -> list[Series]:
    """Every series under ``root``; raises on the first bad one (the job reports it)."""
    groups = discover_headers(root)
    if not groups:
        raise SeriesError(f"no DICOM image series found under {root}")
    return [load_series(heads) for heads in groups.values()]

"""Decode one compressed DICOM slice straight into its row of the volume, GIL released.

Why not pydicom's pixel handlers for everything: on a cohort with JPEG 2000 series the
decoder is most of the job's CPU, and through pydicom each slice costs a full ``dcmread``
(the header parsed a second time), a fresh array per slice, a copy into the volume and,
because pydicom's plugins hold the GIL, a worker process with its spawn cost and a pickled
array coming back. imagecodecs (well kept; OpenJPEG 2.5 for JPEG 2000, CharLS for JPEG-LS)
releases the GIL and decodes into a given buffer, so slices decode on threads, into the
preallocated volume, from the encapsulated bytes located when the header was read.

The result is bit-identical to pydicom's own decoding: the same sign and unused-bit
corrections are applied (pydicom 3's ``_apply_sign_correction`` / ``_correct_unused_bits``
rules; tested against ``pixel_array`` on pydicom's files and on synthetic series). Anything
outside what this path handles (RLE, colour, other bit depths, no imagecodecs installed, a
codestream it rejects) returns None or raises `FastDecodeError`, and the caller falls back to
pydicom, which also gives the one-line refusal for data nothing can decode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import get_j2k_parameters
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from tre.kernels import header_values as hv
from tre.kernels.codestream import check_frame_size
from tre.kernels.errors import UndecodableError, is_fatal

# (7FE0,0010) with undefined length; OB by the standard, OW in some writers' files.
ENCAPSULATED_HEADS = (
    b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff",
    b"\xe0\x7f\x10\x00OW\x00\x00\xff\xff\xff\xff",
)
_J2K = (JPEG2000Lossless, JPEG2000)
_JLS = (JPEGLSLossless, JPEGLSNearLossless)
# Process 14 SV1 only (first-order prediction, tested); other predictors (1.2.840.10008.1.2.4.57)
# stay with pydicom's handlers.
_LJPEG = (JPEGLosslessSV1,)


class FastDecodeError(ValueError):
    """This path could not decode the slice; the caller retries with pydicom."""


@dataclass(frozen=True)
class FrameRef:
    """Where a slice's encapsulated frame starts (its Basic Offset Table item) and how to
    decode it: what ``decode_into`` needs, taken from the header already read."""

    offset: int
    codec: str  # "j2k", "jls" or "ljpeg"
    signed: bool  # PixelRepresentation == 1
    bits_stored: int


def _imagecodecs() -> Any | None:
    try:
        import imagecodecs
    except ImportError:
        return None
    return imagecodecs


def _codec(tsyntax: object) -> str | None:
    if tsyntax in _J2K:
        return "j2k"
    if tsyntax in _JLS:
        return "jls"
    if tsyntax in _LJPEG:
        return "ljpeg"
    return None


def fast_codec(ds: Dataset) -> str | None:
    """The codec this path decodes the file's frames with, or None (pydicom decodes them):
    JPEG 2000, JPEG-LS or JPEG lossless SV1, 16-bit monochrome, imagecodecs installed."""
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    codec = _codec(tsyntax)
    if codec is None or _imagecodecs() is None:
        return None
    # The 16-bit values from their raw bytes (`tre.kernels.header_values`): pydicom's
    # conversion of each (~40 us) was a fifth of discovery's parse of a compressed slice.
    if hv.uint(ds, "BitsAllocated", 0) != 16 or hv.uint(ds, "SamplesPerPixel", 1) != 1:
        return None
    if "Rows" not in ds or "Columns" not in ds:
        return None
    if hv.text(ds, "PhotometricInterpretation") not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    bits = hv.uint(ds, "BitsStored", 16)
    return codec if 1 <= bits <= 16 else None


def locate_frame(fh: BinaryIO, ds: Dataset) -> FrameRef | None:
    """The slice's encapsulated frame when this path can decode it (``fh`` stands at the
    Pixel Data element, right after the header), else None (pydicom decodes it)."""
    codec = fast_codec(ds)
    if codec is None or int(ds.get("NumberOfFrames", 1) or 1) != 1:
        return None
    bits = hv.uint(ds, "BitsStored", 16)
    start = fh.tell()
    if fh.read(12) not in ENCAPSULATED_HEADS:
        return None
    signed = hv.uint(ds, "PixelRepresentation", 0) == 1
    return FrameRef(start + 12, codec, signed, bits)


def _frame(path: Path, offset: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read()
    try:
        return next(generate_frames(data, number_of_frames=1))
    except Exception as exc:  # noqa: BLE001 - a lying item or offset table length: struct.error too
        raise FastDecodeError(f"{path}: malformed encapsulated pixel data") from exc


def _shift(out: np.ndarray, bits: int) -> None:
    """Sign-extend (int16) or clear (uint16) the bits above ``bits``, in place."""
    shift = 16 - bits
    if 0 < shift < 16:
        np.left_shift(out, shift, out=out)
        np.right_shift(out, shift, out=out)


def _jls_precision(frame: bytes, default: int) -> int:
    try:
        from pydicom.pixels.utils import _get_jpg_parameters

        return int(_get_jpg_parameters(frame).get("precision", default))
    except (ImportError, ValueError, TypeError, KeyError):
        return default


def decode_into(path: Path, ref: FrameRef, out: np.ndarray) -> None:
    """Decode the slice at ``ref`` into ``out`` (a (rows, cols) int16 or uint16 row of the
    volume, signed as PixelRepresentation says), with pydicom's corrections."""
    decode_bytes_into(_frame(path, ref.offset), ref, out, str(path))


def decode_bytes_into(frame: bytes, ref: FrameRef, out: np.ndarray, where: str) -> None:
    """Decode one frame's codestream (already read, e.g. a frame of a multi-frame file) into
    ``out``, as `decode_into` does; ``ref.offset`` is not used, ``where`` names it in errors."""
    codecs = _imagecodecs()
    if codecs is None:
        raise FastDecodeError("imagecodecs is not installed")
    try:  # before a decoder allocates what the codestream declares
        check_frame_size(frame, out.shape[0], out.shape[1], where)
    except UndecodableError as exc:  # pydicom's path refuses it, naming the transfer syntax
        raise FastDecodeError(str(exc)) from None
    target = out.view(np.uint16)  # the decoders write bytes; signedness is fixed below
    decoders: dict[str, Callable[..., np.ndarray]] = {
        "j2k": lambda: codecs.jpeg2k_decode(frame, numthreads=1, out=target),
        "jls": lambda: codecs.jpegls_decode(frame, out=target),
        "ljpeg": lambda: codecs.ljpeg_decode(frame, out=target),
    }
    try:
        got = decoders[ref.codec]()
    except BaseException as exc:  # noqa: BLE001 - codec errors have their own types per codec
        if is_fatal(exc):
            raise
        raise FastDecodeError(f"{where}: {type(exc).__name__}") from None
    if got.shape != out.shape or not np.shares_memory(got, out):
        raise FastDecodeError(f"{where}: decoded frame of shape {got.shape}, expected {out.shape}")
    if ref.codec == "j2k":
        # pydicom: when the codestream's signedness differs from PixelRepresentation,
        # reinterpret its `precision` bits in the DICOM signedness.
        info = get_j2k_parameters(frame)
        precision = int(info.get("precision", ref.bits_stored))
        if bool(info.get("is_signed", ref.signed)) != ref.signed and precision < 16:
            _shift(out, precision)
    elif ref.codec == "jls":
        if ref.signed:  # JPEG-LS has no sign: pydicom sign-extends from the codestream's precision
            _shift(out, _jls_precision(frame, ref.bits_stored))
    elif ref.bits_stored < 16:  # JPEG lossless: pydicom's correction of unused bits
        _shift(out, ref.bits_stored)

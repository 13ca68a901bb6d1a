"""Enhanced multi-frame images: a whole series in one file, loaded like one slice per file.

Why: scanners and archives increasingly store a CT, MR or PET series as one Enhanced (or
Legacy Converted Enhanced) multi-frame object, often with each frame JPEG 2000, JPEG-LS or
RLE compressed. Such a file's geometry is in its functional groups, not at the top level:
per frame (Per-frame Functional Groups) or for all frames (Shared Functional Groups),
PlanePositionSequence > ImagePositionPatient, PlaneOrientationSequence >
ImageOrientationPatient, PixelMeasuresSequence > PixelSpacing and
PixelValueTransformationSequence > RescaleSlope / RescaleIntercept. `frame_table` reads them
into one `FrameTable` per file, and `tre.kernels.dicom` turns each frame into a plane that
is ordered, checked and stacked exactly as a classic slice is (so a series may also span
several multi-frame files, or mix them with classic slices, when the geometry agrees).

Frames that are not one spatial stack are refused by the loader, never averaged or mixed:
FrameContentSequence's StackID and TemporalPositionIndex and MRDiffusionSequence's
DiffusionBValue are kept per frame for that (`FrameTable.dimensions`), and two frames at one
position fail like two classic slices at one position.

Pixels: `locate_pixels` notes where the Pixel Data value starts while the header is read.
Native little-endian 16-bit frames are read straight into the volume's rows (`read_native`:
one read per run of frames stored in volume order, one read in all for a series stored in
order); encapsulated frames are split from one read of the value by pydicom's
`generate_frames` (Basic or Extended Offset Table, or the fragment walk) and decoded per frame
by the caller (`tre.kernels.decode`'s fast path, then pydicom's decoders via `decode_frame`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tre.kernels import header_values as hv
from tre.kernels.decode import ENCAPSULATED_HEADS, fast_codec

NATIVE_LE = (ImplicitVRLittleEndian, ExplicitVRLittleEndian)
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian


def native_pixel_element(head: bytes, tsyntax: object, start: int) -> tuple[int, int] | None:
    """(value length, file offset of the value) of a native little-endian Pixel Data element
    whose first 12 bytes, read at ``start``, are ``head``; None for an explicit VR other than
    OW/OB. Shared by the single-frame and multi-frame readers."""
    if tsyntax == ExplicitVRLittleEndian:
        if head[4:6] not in (b"OW", b"OB"):
            return None
        return int.from_bytes(head[8:12], "little"), start + 12
    return int.from_bytes(head[4:8], "little"), start + 8


_FUNCTIONAL_GROUPS = ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")


Numbers = tuple[float, ...] | None


@dataclass(frozen=True, slots=True)
class FrameTable:
    """Per-frame values of one multi-frame file, in the file's frame order; None where the
    functional groups (per-frame first, then shared) do not give a usable value."""

    positions: tuple[Numbers, ...]
    orientations: tuple[Numbers, ...]
    pixel_spacings: tuple[Numbers, ...]
    slopes: tuple[float | None, ...]
    intercepts: tuple[float | None, ...]
    # (StackID, TemporalPositionIndex, DiffusionBValue) per frame: more than one value of any
    # of them in a series means several stacks, phases or b-values, which one volume cannot be.
    dimensions: tuple[tuple[str | None, str | None, str | None], ...]

    def __len__(self) -> int:
        return len(self.positions)


@dataclass(frozen=True, slots=True)
class MultiFrameRef:
    """Where a multi-frame file's pixel data is, read from its header.

    ``offset``: file offset of the Pixel Data value (native bytes, or the Basic Offset Table
    item of encapsulated data); ``native``: little-endian 16-bit frames stored one after the
    other; ``codec``: the `tre.kernels.decode` codec for encapsulated frames (None: pydicom's
    decoders); ``extended``: the Extended Offset Table (offsets, lengths) when present."""

    offset: int
    frames: int
    native: bool
    codec: str | None
    signed: bool
    bits_stored: int
    transfer_syntax: str
    photometric: str
    bits_allocated: int
    samples: int
    extended: tuple[bytes, bytes] | None = None

    @property
    def direct(self) -> bool:
        """Whether the frames go straight into an int16/uint16 volume (no pydicom arrays)."""
        return self.native or self.codec is not None


def number_of_frames(ds: Dataset) -> int | None:
    """NumberOfFrames (1 when absent or empty), or None when malformed."""
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return None


def is_multiframe(ds: Dataset) -> bool:
    """Whether ``ds`` is loaded frame by frame: more than one frame, or functional groups
    (an enhanced image of one frame still keeps its geometry there)."""
    frames = number_of_frames(ds)
    if frames is None:
        return False  # the loader refuses the malformed count in one line
    return frames > 1 or any(kw in ds for kw in _FUNCTIONAL_GROUPS)


def _item(ds: Dataset | None, keyword: str) -> Dataset | None:
    """The first item of sequence ``keyword`` in ``ds``, or None."""
    if ds is None:
        return None
    seq = ds.get(keyword)
    try:
        return seq[0] if seq else None
    except (TypeError, IndexError):
        return None


def _macro(groups: tuple[Dataset | None, Dataset | None], macro: str) -> Dataset | None:
    """The per-frame item of functional group ``macro``, else the shared one, else None."""
    for group in groups:
        item = _item(group, macro)
        if item is not None:
            return item
    return None


def _numbers(groups: tuple[Dataset | None, Dataset | None], macro: str, keyword: str, n: int) -> Numbers:
    """``n`` numbers of ``keyword`` in functional group ``macro``, per-frame first."""
    for group in groups:
        item = _item(group, macro)
        value = hv.float_tuple(item, keyword, n) if item is not None else None
        if value is not None:
            return value
    return None


def _text(ds: Dataset | None, keyword: str) -> str | None:
    if ds is None or keyword not in ds:
        return None
    value = ds.get(keyword)
    return None if value is None or str(value) == "" else str(value)


def frame_table(ds: Dataset, frames: int) -> FrameTable:
    """The per-frame geometry, rescale and dimensions of a multi-frame header.

    Without functional-group positions there is no way to place the frames (an RT dose grid,
    ultrasound or NM frames, a cine loop): their positions are None and the loader refuses
    the file. A single-frame enhanced image may carry its geometry at the top level."""
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    # Without one item per frame no frame has a position and the loader refuses the file at
    # its first frame: one entry says as much as NumberOfFrames of them (a count of 10^5
    # cost 2 s of discovery per file, and the count goes to 2^31 - 1).
    per_items: list[Dataset | None] = list(per) if len(per) == frames else [None]
    top = ds if frames == 1 else None  # top-level geometry only means something for one frame
    positions: list[Numbers] = []
    orientations: list[Numbers] = []
    spacings: list[Numbers] = []
    slopes: list[float | None] = []
    intercepts: list[float | None] = []
    dims: list[tuple[str | None, str | None, str | None]] = []
    for frame in per_items:
        groups = (frame, shared)
        pos = _numbers(groups, "PlanePositionSequence", "ImagePositionPatient", 3)
        iop = _numbers(groups, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
        spacing = _numbers(groups, "PixelMeasuresSequence", "PixelSpacing", 2)
        if pos is None and top is not None:
            pos = hv.float_tuple(top, "ImagePositionPatient", 3)
        positions.append(pos)
        orientations.append(iop if iop is not None else hv.float_tuple(ds, "ImageOrientationPatient", 6))
        spacings.append(spacing if spacing is not None else hv.float_tuple(ds, "PixelSpacing", 2))
        rescale = _macro(groups, "PixelValueTransformationSequence")
        source = rescale if rescale is not None else ds  # classic top-level rescale, else 1 / 0
        slopes.append(hv.number(source, "RescaleSlope", 1.0))
        intercepts.append(hv.number(source, "RescaleIntercept", 0.0))
        content = _item(frame, "FrameContentSequence")
        diffusion = _macro(groups, "MRDiffusionSequence")
        dims.append(
            (
                _text(content, "StackID"),
                _text(content, "TemporalPositionIndex"),
                _text(diffusion, "DiffusionBValue"),
            )
        )
    return FrameTable(
        tuple(positions), tuple(orientations), tuple(spacings), tuple(slopes), tuple(intercepts), tuple(dims)
    )


def locate_pixels(fh: BinaryIO, ds: Dataset, frames: int) -> MultiFrameRef | None:
    """Where the frames are (``fh`` stands at the Pixel Data element, right after the
    header), or None when pydicom must decode the whole file (big endian, other layouts)."""
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if tsyntax is None or "Rows" not in ds or "Columns" not in ds:
        return None
    rows, cols = hv.uint(ds, "Rows", 0), hv.uint(ds, "Columns", 0)
    bits_allocated = hv.uint(ds, "BitsAllocated", 0)
    samples = hv.uint(ds, "SamplesPerPixel", 1)
    start = fh.tell()
    head = fh.read(12)
    if len(head) < 12 or head[:4] != PIXEL_DATA_TAG:
        return None

    def ref(
        offset: int, native: bool, codec: str | None, extended: tuple[bytes, bytes] | None
    ) -> MultiFrameRef:
        return MultiFrameRef(
            offset=offset,
            frames=frames,
            native=native,
            codec=codec,
            signed=hv.uint(ds, "PixelRepresentation", 0) == 1,
            bits_stored=hv.uint(ds, "BitsStored", 16),
            transfer_syntax=str(tsyntax),
            photometric=str(ds.get("PhotometricInterpretation", "")),
            bits_allocated=bits_allocated,
            samples=samples,
            extended=extended,
        )

    if tsyntax in NATIVE_LE:
        if sys.byteorder != "little" or bits_allocated != 16 or samples != 1:
            return None
        element = native_pixel_element(head, tsyntax, start)
        if element is None:
            return None
        length, data = element
        if length < rows * cols * 2 * frames:
            return None  # pydicom reads it and says what is wrong
        return ref(data, True, None, None)
    if head not in ENCAPSULATED_HEADS or not UID(tsyntax).is_compressed:
        return None
    extended = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        extended = (bytes(ds.ExtendedOffsetTable), bytes(ds.ExtendedOffsetTableLengths))
    return ref(start + 12, False, fast_codec(ds), extended)


def read_native(path: Path, ref: MultiFrameRef, rows: list[tuple[int, int]], volume: np.ndarray) -> None:
    """Read native frames straight into ``volume``: ``rows`` pairs each volume row with its
    frame in the file. A run of rows whose frames follow each other in the file takes one
    read, so a series stored in volume order is one read; pydicom's correction of unused
    high bits (BitsStored < 16) follows, as for classic slices."""
    frame_bytes = volume.shape[1] * volume.shape[2] * volume.itemsize
    pairs = sorted(rows)
    runs: list[tuple[int, int, int]] = []  # (first row, first frame, count)
    for k, i in pairs:
        if runs and runs[-1][0] + runs[-1][2] == k and runs[-1][1] + runs[-1][2] == i:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((k, i, 1))
    fd = os.open(path, os.O_RDONLY)
    try:
        for k, i, n in runs:
            view = volume[k : k + n].data.cast("B")
            offset, done = ref.offset + i * frame_bytes, 0
            while done < len(view):
                got = os.preadv(fd, [view[done:]], offset + done)
                if not got:
                    raise EOFError(f"{path}: pixel data is shorter than the frames it declares")
                done += got
    finally:
        os.close(fd)
    shift = 16 - ref.bits_stored
    if 0 < shift < 16:
        for k, _i, n in runs:
            np.left_shift(volume[k : k + n], shift, out=volume[k : k + n])
            np.right_shift(volume[k : k + n], shift, out=volume[k : k + n])


def split_frames(path: Path, ref: MultiFrameRef) -> list[bytes]:
    """Every frame's codestream, from one read of the encapsulated Pixel Data value; raises
    ValueError when the items do not give exactly ``ref.frames`` frames."""
    with path.open("rb") as fh:
        fh.seek(ref.offset)
        data = fh.read()
    frames = list(generate_frames(data, number_of_frames=ref.frames, extended_offsets=ref.extended))
    if len(frames) != ref.frames:
        raise ValueError(f"{len(frames)} frames in the encapsulated pixel data, NumberOfFrames {ref.frames}")
    return frames


def decode_frame(frame: bytes, ref: MultiFrameRef, rows: int, cols: int, plugin: str) -> np.ndarray:
    """One encapsulated frame decoded by pydicom's decoders (``plugin``: "" = its choice):
    the fallback for codecs and layouts `tre.kernels.decode` does not take (RLE, 8-bit)."""
    options: dict[str, Any] = {
        "rows": rows,
        "columns": cols,
        "samples_per_pixel": ref.samples,
        "bits_allocated": ref.bits_allocated,
        "bits_stored": ref.bits_stored,
        "pixel_representation": int(ref.signed),
        "photometric_interpretation": ref.photometric,
        "number_of_frames": 1,
        "planar_configuration": 0,
    }
    decoder = get_decoder(UID(ref.transfer_syntax))
    arr, _props = decoder.as_array(encapsulate([frame]), decoding_plugin=plugin, **options)
    return arr

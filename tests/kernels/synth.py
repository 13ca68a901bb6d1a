"""Synthetic DICOM series written with pydicom, for loader and job tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)


def rotation(axis: Sequence[float], degrees: float) -> np.ndarray:
    """Rotation matrix (Rodrigues) used to make oblique orientations."""
    a = np.asarray(axis, dtype=np.float64)
    a /= np.linalg.norm(a)
    t = np.deg2rad(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


def _geometry(
    nz: int,
    spacing_zyx: tuple[float, float, float],
    rot: np.ndarray | None,
    positions_mm: Sequence[float] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """Row and column directions, the slice normal, and each slice's distance along it."""
    r = np.eye(3) if rot is None else rot
    row, col = r[:, 0], r[:, 1]
    pos_along = [k * spacing_zyx[0] for k in range(nz)] if positions_mm is None else list(positions_mm)
    return row, col, np.cross(row, col), pos_along


def _image_dataset(sop_class: str, modality: str, shape_yx: tuple[int, int]) -> Dataset:
    """A data set with its file meta, SOP identity and a signed 16-bit monochrome pixel module."""
    meta = FileMetaDataset()
    sop = generate_uid()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.Modality = modality
    ds.Rows, ds.Columns = int(shape_yx[0]), int(shape_yx[1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    return ds


def write_series(
    folder: Path,
    raw: np.ndarray,
    *,
    spacing_zyx: tuple[float, float, float],
    rot: np.ndarray | None = None,
    origin: Sequence[float] = (-120.0, -80.5, 33.0),
    slopes: Sequence[float] | None = None,
    intercepts: Sequence[float] | None = None,
    positions_mm: Sequence[float] | None = None,
    orientations: Sequence[Sequence[float]] | None = None,
    modality: str = "CT",
    instance_order: Sequence[int] | None = None,
    extra: dict[str, object] | None = None,
    series_uid: str | None = None,
) -> list[Path]:
    """Write raw (z, y, x) int16 slices; files named in shuffled order, InstanceNumber shuffled."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    nz = raw.shape[0]
    row, col, normal, pos_along = _geometry(nz, spacing_zyx, rot, positions_mm)
    dz, dy, dx = spacing_zyx
    numbers = list(instance_order) if instance_order is not None else list(rng.permutation(nz) + 1)
    uid = series_uid or generate_uid()
    study = generate_uid()
    frame = generate_uid()
    sop_class = PositronEmissionTomographyImageStorage if modality == "PT" else CTImageStorage
    paths = []
    for k in range(nz):
        ds = _image_dataset(sop_class, modality, (raw.shape[1], raw.shape[2]))
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = uid
        ds.FrameOfReferenceUID = frame
        ds.InstanceNumber = int(numbers[k])
        iop = list(row) + list(col) if orientations is None else list(orientations[k])
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        p = np.asarray(origin) + pos_along[k] * normal
        ds.ImagePositionPatient = [f"{v:.6f}" for v in p]
        ds.PixelSpacing = [f"{dy:g}", f"{dx:g}"]
        ds.SliceThickness = f"{dz:g}"
        ds.RescaleSlope = f"{(1.0 if slopes is None else slopes[k]):g}"
        ds.RescaleIntercept = f"{(-1024.0 if intercepts is None else intercepts[k]):g}"
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        ds.PixelData = np.ascontiguousarray(raw[k], dtype="<i2").tobytes()
        path = folder / f"f{int(rng.integers(1_000_000)):07d}_{k}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def chest_phantom(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Small chest-like stored values (intercept -1024): air, body ellipse, lungs, bone."""
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(
        np.linspace(-1, 1, nz), np.linspace(-1, 1, ny), np.linspace(-1, 1, nx), indexing="ij"
    )
    hu = np.full(shape, -1000.0)
    body = (x / 0.8) ** 2 + (y / 0.6) ** 2 < 1
    hu[body] = 40.0
    lungs = (((x - 0.35) / 0.25) ** 2 + (y / 0.35) ** 2 < 1) | (
        ((x + 0.35) / 0.25) ** 2 + (y / 0.35) ** 2 < 1
    )
    hu[lungs & body] = -850.0
    hu[((x / 0.1) ** 2 + ((y + 0.45) / 0.1) ** 2 < 1)] = 700.0
    hu += rng.normal(0, 20, shape) + 30 * z
    return np.clip(np.round(hu + 1024), -2000, 4000).astype(np.int16)


def compress_files(paths: Sequence[Path], transfer_syntax: str) -> None:
    """Re-encode DICOM files in place, losslessly, with pydicom's encoders.

    RLE needs nothing extra; JPEG 2000 needs pylibjpeg-openjpeg and JPEG-LS pyjpegls (the
    dev extra installs both).
    """
    import pydicom
    from pydicom.uid import UID

    for path in paths:
        ds = pydicom.dcmread(path)
        ds.compress(UID(transfer_syntax))
        ds.save_as(path, enforce_file_format=True)


def compress_files_jpeg_lossless_gdcm(paths: Sequence[Path]) -> None:
    """Re-encode DICOM files in place as JPEG lossless process 14 SV1 with GDCM (python-gdcm,
    dev extra), which pydicom cannot encode. Callers skip when ``gdcm`` is missing."""
    import gdcm

    for path in paths:
        reader = gdcm.ImageReader()
        reader.SetFileName(str(path))
        assert reader.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(reader.GetImage())
        assert change.Change()
        writer = gdcm.ImageWriter()
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        writer.SetFileName(str(path))
        assert writer.Write()


def write_enhanced(
    path: Path,
    raw: np.ndarray,
    *,
    spacing_zyx: tuple[float, float, float],
    rot: np.ndarray | None = None,
    origin: Sequence[float] = (-120.0, -80.5, 33.0),
    slopes: Sequence[float] | None = None,
    intercepts: Sequence[float] | None = None,
    shared_rescale: bool = True,
    positions_mm: Sequence[float] | None = None,
    orientations: Sequence[Sequence[float]] | None = None,
    frame_order: Sequence[int] | None = None,
    stack_ids: Sequence[str] | None = None,
    transfer_syntax: str | None = None,
    offsets: str = "basic",
    modality: str = "CT",
    extra: dict[str, object] | None = None,
    series_uid: str | None = None,
) -> Path:
    """Write raw (z, y, x) int16 planes as one Enhanced CT (or PET) multi-frame file.

    Geometry as `write_series` writes it for the same arguments (the same decimal strings),
    but in the functional groups: orientation and pixel measures shared, each frame's
    position per frame, rescale shared (one slope/intercept) or per frame. ``frame_order``:
    the plane stored as frame i (default: in order). ``transfer_syntax``: compressed with
    pydicom's encoders; ``offsets``: "basic" (Basic Offset Table), "none" (empty BOT, one
    fragment per frame) or "extended" (Extended Offset Table).
    """
    import pydicom.uid as uids
    from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import UID

    nz = raw.shape[0]
    row, col, normal, pos_along = _geometry(nz, spacing_zyx, rot, positions_mm)
    dz, dy, dx = spacing_zyx
    order = list(range(nz)) if frame_order is None else list(frame_order)
    sop_class = uids.EnhancedPETImageStorage if modality == "PT" else uids.EnhancedCTImageStorage
    ds = _image_dataset(sop_class, modality, (raw.shape[1], raw.shape[2]))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(order)

    def item(**values: object) -> Dataset:
        d = Dataset()
        for key, value in values.items():
            setattr(d, key, value)
        return d

    def rescale(k: int) -> Dataset:
        slope = 1.0 if slopes is None else slopes[k]
        intercept = -1024.0 if intercepts is None else intercepts[k]
        kind = "BQML" if modality == "PT" else "HU"
        return item(RescaleSlope=f"{slope:g}", RescaleIntercept=f"{intercept:g}", RescaleType=kind)

    shared = Dataset()
    if orientations is None:
        iop = [f"{v:.8f}" for v in list(row) + list(col)]
        shared.PlaneOrientationSequence = DicomSequence([item(ImageOrientationPatient=iop)])
    shared.PixelMeasuresSequence = DicomSequence(
        [item(PixelSpacing=[f"{dy:g}", f"{dx:g}"], SliceThickness=f"{dz:g}")]
    )
    if shared_rescale:
        shared.PixelValueTransformationSequence = DicomSequence([rescale(0)])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    frames = []
    for i, k in enumerate(order):
        frame = Dataset()
        p = np.asarray(origin) + pos_along[k] * normal
        frame.PlanePositionSequence = DicomSequence([item(ImagePositionPatient=[f"{v:.6f}" for v in p])])
        if orientations is not None:
            iop = [f"{v:.8f}" for v in orientations[k]]
            frame.PlaneOrientationSequence = DicomSequence([item(ImageOrientationPatient=iop)])
        if not shared_rescale:
            frame.PixelValueTransformationSequence = DicomSequence([rescale(k)])
        content = item(InStackPositionNumber=k + 1, StackID="1" if stack_ids is None else stack_ids[i])
        frame.FrameContentSequence = DicomSequence([content])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(raw[order], dtype="<i2").tobytes()
    if transfer_syntax is not None:
        ds.compress(UID(transfer_syntax))
        if offsets != "basic":
            parts = list(generate_frames(ds.PixelData, number_of_frames=len(order)))
            if offsets == "none":
                ds.PixelData = encapsulate(parts, has_bot=False)
            else:
                ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(
                    parts
                )
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path

"""A planted-leak corpus: a fictional patient's CT dataset, outputs that leak it, and harmless outputs.

The dataset is pydicom's bundled CT_small.dcm re-labelled with a fictional patient (name,
hospital ID, birth and study dates, accession number) and a clinical sidecar table of MRNs,
as a real job would see it. Each leak is written the way a job would write it (a slice as a
CSV, a base64 DICOM in a log, a name drawn into pixels...), in several variants per class;
each control is a normal research output that must not raise alarms. Every leak names the
checks that should catch it, so a leak caught for the wrong reason is noticed.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import io
import json
import pickle
import struct
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from egress_review.checks import CheckContext, CheckResult, gather_identifiers, run_checks, worst
from egress_review.checks.identifiers import dataset_patients
from tre.policy import Policy, load_policy

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"

# The fictional patient. None of these is a real person.
NAME = "DOE^JANE"
PATIENT_ID = "HOSP-77-1234"
BIRTH = "19620315"
STUDY = "20190412"
ACCESSION = "ACC558812"
MRN = "MRN-0048213"
PATHOLOGY_ID = "PA-2019-55731"
SLICES = 24

KEEP = {
    "SpecificCharacterSet", "ImageType", "SOPClassUID", "Modality", "SliceThickness", "KVP",
    "PatientPosition", "SeriesNumber", "InstanceNumber", "ImagePositionPatient",
    "ImageOrientationPatient", "SliceLocation", "SamplesPerPixel", "PhotometricInterpretation",
    "Rows", "Columns", "PixelSpacing", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "RescaleIntercept", "RescaleSlope", "PixelData",
}  # fmt: skip


@dataclass(frozen=True)
class Planted:
    """One output file; ``caught_by`` lists check-name prefixes of which one must fire."""

    name: str
    data: bytes
    caught_by: tuple[str, ...] = ()
    others: tuple[tuple[str, bytes], ...] = ()
    """The same request's other files (name, bytes), which the checks may read (leaks17)."""


def _source() -> Dataset:
    ds = pydicom.dcmread(CT_SMALL)
    ds.PatientName = NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH
    ds.StudyDate = STUDY
    ds.SeriesDate = STUDY
    ds.AccessionNumber = ACCESSION
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    return ds


def volume(ds: Dataset) -> np.ndarray:
    """A smooth CT-like volume built from the sample slice (each slice shifted a little)."""
    base = ds.pixel_array.astype(np.int16)
    return np.stack([np.roll(base, z, axis=1) for z in range(SLICES)])


def build_dataset(root: Path) -> Path:
    """The granted dataset: SLICES DICOM slices of the fictional patient and a clinical CSV."""
    root.mkdir(parents=True, exist_ok=True)
    src = _source()
    vol = volume(src)
    for z in range(SLICES):
        sl = copy.deepcopy(src)
        sl.SOPInstanceUID = generate_uid()
        sl.file_meta.MediaStorageSOPInstanceUID = sl.SOPInstanceUID
        sl.InstanceNumber = z + 1
        sl.PixelData = vol[z].tobytes()
        sl.save_as(root / f"slice{z:03d}.dcm", enforce_file_format=True)
    (root / "clinical.csv").write_text(
        "mrn,age_group,histology\n" + f"{MRN},60-69,adenocarcinoma\n" + "MRN-0051177,50-59,squamous\n"
    )
    # a second sidecar, as a workbook: the pathology system's own patient numbers
    (root / "pathology.xlsx").write_bytes(_xlsx([["Patient ID", "grade"], [PATHOLOGY_ID, "G2"]]))
    return root


# ------------------------------------------------------------------------------ helpers


def _png(img: Image.Image, **info: str) -> bytes:
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    for k, v in info.items():
        meta.add_text(k, v)
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=meta)
    return buf.getvalue()


def _jpeg(img: Image.Image, exif: Image.Exif | None = None) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=95, **({"exif": exif} if exif is not None else {}))
    return buf.getvalue()


def _ct_image(ds: Dataset) -> Image.Image:
    arr = ds.pixel_array.astype(np.float64)
    arr = (arr - arr.min()) / max(1.0, arr.max() - arr.min()) * 255
    return Image.fromarray(arr.astype(np.uint8)).resize((512, 512))


def _draw(img: Image.Image, lines: list[str], size: int = 28) -> Image.Image:
    img = img.convert("RGB")
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, size)
    for i, line in enumerate(lines):
        draw.text((12, 12 + i * (size + 10)), line, fill=(255, 255, 255), font=font)
    return img


def _nifti(arr: np.ndarray, descrip: str = "", datatype: int = 4) -> bytes:
    """A NIfTI-1 single file (.nii) written by hand: header, 4 bytes of extension flag, voxels."""
    dtype = {2: np.uint8, 4: np.int16, 16: np.float32}[datatype]
    data = np.asarray(arr, dtype=dtype)
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    dims = [data.ndim, *data.shape] + [1] * (7 - data.ndim)
    struct.pack_into("<8h", hdr, 40, *dims)
    struct.pack_into("<hh", hdr, 70, datatype, data.dtype.itemsize * 8)
    struct.pack_into("<8f", hdr, 76, 1, 0.7, 0.7, 5.0, 1, 1, 1, 1)
    struct.pack_into("<f", hdr, 108, 352.0)
    struct.pack_into("<f", hdr, 112, 1.0)  # scl_slope
    hdr[148 : 148 + len(descrip)] = descrip.encode()
    hdr[344:348] = b"n+1\x00"
    return bytes(hdr) + b"\x00" * 4 + data.tobytes(order="F")


def _deidentified(ds: Dataset, patient_id: str = "SUBJ-0001") -> Dataset:
    out = copy.deepcopy(ds)
    for elem in list(out):
        if elem.keyword not in KEEP:
            del out[elem.tag]
    out.SOPInstanceUID = generate_uid()
    out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    out.StudyInstanceUID = generate_uid()
    out.SeriesInstanceUID = generate_uid()
    out.PatientID = patient_id
    out.PatientName = patient_id
    out.PatientIdentityRemoved = "YES"
    out.BurnedInAnnotation = "NO"
    out.DeidentificationMethod = "tre test pipeline"
    out.preamble = b"\x00" * 128
    return out


def _dicom_bytes(ds: Dataset, preamble: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    if preamble is not None:
        ds.preamble = preamble.ljust(128, b"\x00")[:128]
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class _Evil:
    """Loading the pickle of this runs a shell command (never loaded by the tests)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("echo leaked > /tmp/never",))


def _xlsx(rows: list[list[object]]) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Results"
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _parquet(columns: dict[str, list[object]], metadata: dict[str, str] | None = None) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _csv(grid: np.ndarray, header: bool = False, fmt: str = "%d", delimiter: str = ",") -> bytes:
    buf = io.StringIO()
    if header:
        buf.write(delimiter.join(f"px{i}" for i in range(grid.shape[1])) + "\n")
    np.savetxt(buf, grid, fmt=fmt, delimiter=delimiter)
    return buf.getvalue().encode()


def _radiomics(rows: int, small: int) -> bytes:
    """A features-by-site table with one cell of ``small`` patients; ~1.1 MB at 5,000 rows."""
    rng = np.random.default_rng(7)
    names = [f"original_firstorder_f{i}" for i in range(24)]
    out = ["site,n_patients," + ",".join(names)]
    for r in range(rows):
        n = small if r == rows // 2 else 40 + r % 7 * 5
        out.append(f"site{r},{n}," + ",".join(f"{v:.5f}" for v in rng.normal(size=24)))
    return ("\n".join(out) + "\n").encode()


# ------------------------------------------------------------------------------ corpus


def leaks(dataset: Path) -> list[Planted]:
    """Every leak class of issue 10, with variants beyond its examples."""
    src = pydicom.dcmread(dataset / "slice000.dcm")
    raw_dicom = (dataset / "slice000.dcm").read_bytes()
    ct = src.pixel_array.astype(np.int64)
    vol = volume(src)
    image_lines = ["JANE DOE", f"ID {PATIENT_ID}", "DOB 1962-03-15"]
    out: list[Planted] = []
    grid = ("sdc:image_table",)

    # images written as tables
    out.append(Planted("slice_int.csv", _csv(ct), grid))
    out.append(Planted("slice_float.csv", _csv(ct / 1000.0, header=True, fmt="%.4f"), grid))
    out.append(Planted("slice.tsv", _csv(ct, delimiter="\t"), grid))
    out.append(Planted("slice_semicolon.csv", _csv(ct[::2, ::2], header=True, delimiter=";"), grid))
    out.append(Planted("slice_grid.json", json.dumps({"pixels": ct.tolist()}).encode(), grid))
    out.append(Planted("slice_values.csv", ("value\n" + "\n".join(map(str, ct.ravel()))).encode(),
                       ("sdc:record_level",)))  # fmt: skip
    # type detection cut short: > 1 MiB CSV with n=3, and a .csv that is not a table
    big = _radiomics(5000, 3)
    assert len(big) > 1024 * 1024
    out.append(Planted("radiomics_big.csv", big, ("sdc:threshold",)))
    out.append(Planted("counts.csv", b"results by site\nsite A had 3 patients\nsite B had 40\n",
                       ("extension",)))  # fmt: skip
    # counts outside CSV
    out.append(Planted("counts_records.json",
                       json.dumps([{"site": "A", "n": 3}, {"site": "B", "n": 45}]).encode(),
                       ("sdc:threshold",)))  # fmt: skip
    out.append(Planted("counts_columns.json",
                       json.dumps({"site": ["A", "B"], "count": [45, 4]}).encode(),
                       ("sdc:threshold",)))  # fmt: skip
    out.append(Planted("counts_nested.json",
                       json.dumps({"summary": {"A": {"n": 40, "deaths": 3},
                                               "B": {"n": 55, "deaths": 12}}}).encode(),
                       ("sdc:subcount", "sdc:threshold")))  # fmt: skip
    out.append(Planted("counts.tsv", b"stage\tpatients\nI\t25\nIV\t2\n", ("sdc:threshold",)))
    out.append(Planted("counts.xlsx", _xlsx([["site", "n"], ["A", 45], ["B", 3]]), ("sdc:threshold",)))
    out.append(Planted("counts.parquet", _parquet({"site": ["A", "B"], "n": [2, 50]}), ("sdc:threshold",)))
    # count columns misjudged
    out.append(
        Planted("deaths.csv", b"site,n,deaths\nA,40,3\nB,55,12\nC,61,15\n", ("sdc:subcount", "sdc:threshold"))
    )
    out.append(
        Planted("events.csv", b"site,n,relapsed\nA,40,2\nB,55,20\n", ("sdc:subcount", "sdc:threshold"))
    )
    out.append(Planted("dose_totals.csv", b"site,n,total_dose\nA,40,1200.5\nB,55,1800.25\n",
                       ("sdc:magnitudes",)))  # fmt: skip
    out.append(Planted("missing.csv", b"site,n\nA,40\nB,\nC,35\n", ("sdc:missing",)))
    # whole volumes
    out.append(Planted("ct_volume.nii", _nifti(vol.transpose(2, 1, 0)), ("volume:similar_to_input",)))
    out.append(Planted("ct_volume_float.nii", _nifti(vol.transpose(2, 1, 0) / 1000.0, datatype=16),
                       ("volume:similar_to_input",)))  # fmt: skip
    import gzip

    out.append(Planted("ct_volume.nii.gz", gzip.compress(_nifti(vol.transpose(2, 1, 0))), ("volume:",)))
    big_vol = np.tile(vol, (8, 2, 2))  # 192 x 256 x 256: a whole scan's worth of voxels
    out.append(Planted("big_volume.nii", _nifti(big_vol.transpose(2, 1, 0)), ("volume:size",)))
    # text in pixels
    drawn = _draw(_ct_image(src), image_lines)
    out.append(Planted("overlay.png", _png(drawn), ("ocr:identifiers",)))
    out.append(Planted("overlay.jpg", _jpeg(_draw(_ct_image(src), [f"MRN {MRN}"])), ("ocr:identifiers",)))
    burned = _deidentified(src)
    burned_pixels = np.asarray(
        _draw(_ct_image(src).resize((128, 128)).resize((512, 512)), image_lines).convert("L")
    )
    burned.Rows, burned.Columns = burned_pixels.shape
    burned.BitsAllocated, burned.BitsStored, burned.HighBit, burned.PixelRepresentation = 16, 16, 15, 0
    burned.RescaleIntercept, burned.RescaleSlope = 0, 1
    burned.PixelData = burned_pixels.astype(np.uint16).tobytes()
    out.append(Planted("burned.dcm", _dicom_bytes(burned), ("ocr:identifiers",)))
    # identifiers in other forms
    out.append(
        Planted("notes_iso.txt", b"subject born 1962-03-15, scanned with protocol B\n", ("identifiers",))
    )
    out.append(Planted("notes_eu.txt", b"DOB: 15/03/1962\n", ("identifiers",)))
    out.append(Planted("notes_words.md", b"Born March 15, 1962.\n", ("identifiers",)))
    out.append(Planted("exam_dates.csv", b"scan,exam_date,n\n1,2019-04-12,40\n2,2019-05-01,45\n",
                       ("identifiers",)))  # fmt: skip
    out.append(Planted("joined.csv", f"mrn,response\n{MRN},partial\nMRN-0051177,complete\n".encode(),
                       ("identifiers",)))  # fmt: skip
    out.append(Planted("preamble.dcm", _dicom_bytes(_deidentified(src), preamble=b"JANE DOE HOSP-77-1234"),
                       ("dicom:preamble_identifiers",)))  # fmt: skip
    # encodings
    out.append(Planted("dump_mime.txt", b"payload:\n" + base64.encodebytes(raw_dicom), ("decoded:dicom",)))
    xxd = subprocess.run(["xxd"], input=raw_dicom, capture_output=True, check=True).stdout
    out.append(Planted("dump_xxd.log", xxd, ("decoded:dicom",)))
    hexc = subprocess.run(["hexdump", "-C"], input=raw_dicom, capture_output=True, check=True).stdout
    out.append(Planted("dump_hexdump.txt", hexc, ("decoded:dicom",)))
    out.append(Planted("dump_line.json", json.dumps({"blob": base64.b64encode(raw_dicom).decode()}).encode(),
                       ("decoded:dicom",)))  # fmt: skip
    table = f"mrn,site\n{MRN},A\n".encode() * 20
    out.append(Planted("table_b64.txt", base64.encodebytes(table), ("decoded:identifiers",)))
    # models
    rng = np.random.default_rng(1)
    out.append(Planted("weights.json", json.dumps({"layer1": rng.normal(size=(32, 32)).tolist()}).encode(),
                       ("model:release_review",)))  # fmt: skip
    out.append(Planted("results.txt", pickle.dumps(_Evil(), protocol=0), ("model:pickle",)))
    out.append(
        Planted("model.pkl", pickle.dumps({"w": [1.0, 2.0], "hook": _Evil()}, protocol=4), ("model:pickle",))
    )
    out.append(Planted("model.bin", pickle.dumps(_Evil(), protocol=2), ("model:pickle",)))
    torch_zip = io.BytesIO()
    with zipfile.ZipFile(torch_zip, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(_Evil(), protocol=2))
        zf.writestr("archive/data/0", b"\x00" * 4096)
    out.append(Planted("model.pt", torch_zip.getvalue(), ("model:pickle",)))
    header = json.dumps({"w": {"dtype": "F32", "shape": [64, 64], "data_offsets": [0, 16384]}}).encode()
    out.append(Planted("model.safetensors", struct.pack("<Q", len(header)) + header + b"\x00" * 16384,
                       ("model:release_review",)))  # fmt: skip
    npz = io.BytesIO()
    np.savez(npz, w=rng.normal(size=(16, 16)))
    out.append(Planted("weights.npz", npz.getvalue(), ("model:release_review",)))
    tree = pickle.dumps({"min_samples_leaf": 1, "n_samples": 24}, protocol=4)
    out.append(Planted("tree.pkl", tree, ("model:structure",)))
    # EXIF UserComment with its charset prefix
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\x00\x00\x00" + PATIENT_ID.encode()
    out.append(Planted("photo_ascii.jpg", _jpeg(Image.new("RGB", (64, 64), (90, 90, 90)), exif),
                       ("image_metadata_identifiers",)))  # fmt: skip
    exif2 = Image.Exif()
    exif2.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + "Jane Doe".encode("utf-16-be")
    out.append(Planted("photo_unicode.jpg", _jpeg(Image.new("RGB", (64, 64), (90, 90, 90)), exif2),
                       ("image_metadata_identifiers",)))  # fmt: skip
    out.append(Planted("plot_meta.png", _png(Image.new("RGB", (64, 64)), Comment="born 15.03.1962"),
                       ("image_metadata_identifiers",)))  # fmt: skip
    out.append(
        Planted("meta.parquet", _parquet({"site": ["A"], "n": [50]}, {"source": MRN}), ("identifiers",))
    )
    out.append(
        Planted("names.xlsx", _xlsx([["patient", "response"], ["Jane Doe", "partial"]]), ("identifiers",))
    )
    # further variants: encodings of other formats, counts as strings and floats, overlays, arrays
    png_b64 = base64.encodebytes(_png(drawn)).decode()
    out.append(Planted("figure.json", json.dumps({"figure_png_base64": png_b64}).encode(),
                       ("decoded:ocr:identifiers",)))  # fmt: skip
    table_bytes = b"site,n\nA,45\nB,3\nC,40\n" * 8
    hex_lines = b"\n".join(
        b" ".join(f"{b:02x}".encode() for b in table_bytes[i : i + 16])
        for i in range(0, len(table_bytes), 16)
    )
    out.append(Planted("counts_hex.txt", hex_lines + b"\n", ("decoded:sdc:threshold",)))
    as_strings = json.dumps([{"site": "A", "n": "3"}, {"site": "B", "n": "45"}]).encode()
    out.append(Planted("counts_strings.json", as_strings, ("sdc:threshold",)))
    out.append(Planted("counts_float.csv", b"site,n\nA,3.0\nB,45.0\n", ("sdc:threshold",)))
    overlay = _deidentified(src)
    from pydicom.pixels import pack_bits

    text_mask = np.asarray(_draw(Image.new("L", (128, 128)), ["DOE"], size=30).convert("L")) > 128
    overlay.add_new(0x60000010, "US", 128)
    overlay.add_new(0x60000011, "US", 128)
    overlay.add_new(0x60000040, "CS", "G")
    overlay.add_new(0x60000050, "SS", [1, 1])
    overlay.add_new(0x60000100, "US", 1)
    overlay.add_new(0x60000102, "US", 0)
    overlay.add_new(0x60003000, "OW", pack_bits(text_mask.astype(np.uint8).ravel()))
    out.append(Planted("overlay.dcm", _dicom_bytes(overlay), ("ocr:identifiers",)))
    npy = io.BytesIO()
    np.save(npy, vol)
    out.append(Planted("volume.npy", npy.getvalue(), ("model:release_review",)))
    out.append(Planted("slice_named.tsv", _csv(ct, header=True, delimiter="\t"), grid))
    out.extend(variant_leaks(dataset))
    return out


def controls(dataset: Path) -> list[Planted]:
    """Harmless outputs that a DAC member expects to pass (at most one may be flagged)."""
    src = pydicom.dcmread(dataset / "slice000.dcm")
    out: list[Planted] = []
    out.append(Planted("frequencies.csv", b"histology,sex,n\nadenocarcinoma,F,45\nadenocarcinoma,M,30\n"
                       b"squamous,F,20\nsquamous,M,25\n"))  # fmt: skip
    out.append(Planted("lesion_sizes.csv", b"group,n,median_diameter_mm,max_size_mm\nA,25,12,31\nB,40,7,9\n"))
    out.append(Planted("uids.log", b"reading series: SOP Class 1.2.840.10008.5.1.4.1.1.2 (CT Image Storage)\n"
                       b"transfer syntax 1.2.840.10008.1.2.1, 24 slices, done in 3.2 s\n"))  # fmt: skip
    mask = np.zeros((64, 64, 12), dtype=np.uint8)
    mask[20:40, 22:44, 3:9] = 1
    mask[25:30, 25:30, 4:6] = 2
    out.append(Planted("tumour_mask.nii", _nifti(mask, descrip="TE=2.3;Time=101530.000;phase=1", datatype=2)))
    out.append(Planted("deidentified.dcm", _dicom_bytes(_deidentified(src, "SUBJ-0001"))))
    plot = Image.new("RGB", (640, 480), "white")
    draw = ImageDraw.Draw(plot)
    font = ImageFont.truetype(FONT, 22)
    draw.text((40, 20), "Dice score by fold", fill="black", font=font)
    draw.line([(60, 420), (600, 420)], fill="black", width=2)
    draw.line([(60, 420), (60, 60)], fill="black", width=2)
    for i, h in enumerate([0.81, 0.84, 0.79, 0.86, 0.83]):
        draw.rectangle([100 + i * 100, 420 - int(h * 300), 160 + i * 100, 420], fill="steelblue")
    out.append(Planted("dice.png", _png(plot, Software="matplotlib version3.8")))
    out.append(Planted("metrics.json", json.dumps({"dice": 0.83, "hausdorff_mm": 4.2, "folds": 5}).encode()))
    out.append(Planted("README.md", b"# Results\n\nSegmentation model trained on 24 slices; see dice.png.\n"))
    out.append(Planted("summary.tsv", b"site\tn\tmean_age\nA\t45\t61.2\nB\t30\t58.9\n"))
    out.append(Planted("summary.parquet", _parquet({"site": ["A", "B"], "n": [45, 30]})))
    out.append(Planted("gradient.jpg", _jpeg(Image.linear_gradient("L").resize((128, 128)))))
    scores = "\n".join(" ".join(str(10 + (r * 7 + c * 3) % 89) for c in range(20)) for r in range(30))
    out.append(Planted("dice_by_case.txt", ("dice x100 per case and fold\n" + scores + "\n").encode()))
    out.extend(variant_controls(dataset))
    return out


# ------------------------------------------------------------------ round-3 variants


class _Eval:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (eval, ("__import__('os').getcwd()",))


class _Popen:
    def __reduce__(self) -> tuple[object, tuple[list[str]]]:
        import subprocess as sp

        return (sp.Popen, (["id"],))


def _xlsx_sheets(sheets: dict[str, list[list[object]]]) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    first = True
    for title, rows in sheets.items():
        ws = wb.active if first else wb.create_sheet()
        first = False
        ws.title = title
        for r in rows:
            ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _exif_jpeg(tag: int, value: bytes | str, ifd: int | None = 0x8769) -> bytes:
    exif = Image.Exif()
    if ifd is None:
        exif[tag] = value
    else:
        exif.get_ifd(ifd)[tag] = value
    return _jpeg(Image.new("RGB", (64, 64), (90, 90, 90)), exif)


def _onnx_tree(metadata: dict[str, str]) -> bytes:
    import onnx
    from skl2onnx import to_onnx
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(3)
    x = rng.normal(size=(24, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    model = to_onnx(DecisionTreeClassifier(min_samples_leaf=1).fit(x, y), x[:1])
    onnx.helper.set_model_props(model, metadata)
    return bytes(model.SerializeToString())


def variant_leaks(dataset: Path) -> list[Planted]:
    """Variants of each leak class that the first corpus lacks (issue 10: "the run will be
    repeated with variants that are not listed")."""
    import gzip

    src = pydicom.dcmread(dataset / "slice000.dcm")
    raw_dicom = (dataset / "slice000.dcm").read_bytes()
    ct = src.pixel_array.astype(np.int64)
    vol = volume(src)
    grid = ("sdc:image_table",)
    out: list[Planted] = []
    # images as tables: transposed TSV with a header row; pandas-style index row and column;
    # JSON lines of pixel rows
    out.append(Planted("v_slice_transposed.tsv", _csv(ct.T, header=True, delimiter="\t"), grid))
    indexed = "," + ",".join(map(str, range(ct.shape[1]))) + "\n"
    indexed += "".join(f"{i}," + ",".join(map(str, row)) + "\n" for i, row in enumerate(ct))
    out.append(Planted("v_slice_indexed.csv", indexed.encode(), grid))
    out.append(Planted("v_slice_rows.jsonl", "".join(json.dumps(r) + "\n" for r in ct.tolist()).encode(),
                       ("sdc:image_table", "sdc:record_level")))  # fmt: skip
    # type detection: JSON lines past 1.5 MiB with n=2; TSV past 1 MiB with n=3; CRLF CSV
    rng = np.random.default_rng(11)
    lines = [
        json.dumps({"site": f"site{r}", "n": 2 if r == 3000 else 40 + r % 9,
                    **{f"f{i}": round(float(v), 5) for i, v in enumerate(rng.normal(size=20))}})
        for r in range(6000)
    ]  # fmt: skip
    jsonl = ("\n".join(lines) + "\n").encode()
    assert len(jsonl) > 1536 * 1024
    out.append(Planted("v_radiomics.jsonl", jsonl, ("sdc:threshold",)))
    big_tsv = _radiomics(5000, 3).replace(b",", b"\t")
    out.append(Planted("v_radiomics_big.tsv", big_tsv, ("sdc:threshold",)))
    out.append(
        Planted("v_radiomics_crlf.csv", _radiomics(5200, 4).replace(b"\n", b"\r\n"), ("sdc:threshold",))
    )
    # counts outside CSV: the second sheet of a workbook; a JSON mapping of counts; Parquet
    # with the count as a float column
    out.append(Planted("v_counts_sheet2.xlsx",
                       _xlsx_sheets({"About": [["Counts by site, see next sheet"]],
                                     "Counts": [["site", "patients"], ["A", 48], ["B", 2]]}),
                       ("sdc:threshold",)))  # fmt: skip
    mapping = json.dumps({"n_by_site": {"A": 45, "B": 3, "C": 51}}).encode()
    out.append(Planted("v_counts_mapping.json", mapping, ("sdc:threshold",)))
    out.append(Planted("v_counts_float.parquet", _parquet({"site": ["A", "B"], "count": [44.0, 4.0]}),
                       ("sdc:threshold",)))  # fmt: skip
    # count columns: deaths beside "cases"; a crosstab of categories whose cells are counts
    out.append(Planted("v_cases_deaths.csv", b"hospital,cases,deaths_30d\nA,52,4\nB,61,13\n",
                       ("sdc:subcount", "sdc:threshold")))  # fmt: skip
    out.append(Planted("v_crosstab.csv", b"stage,female,male\nI,31,2\nII,28,35\nIII,19,22\n",
                       ("sdc:unclassified", "sdc:threshold")))  # fmt: skip
    # whole volumes: gzip float32 scaled; int16 gz volume not transposed (slices on another axis)
    scaled = (vol.transpose(2, 1, 0).astype(np.float32) * 0.25) + 10.0
    out.append(Planted("v_volume_scaled.nii.gz", gzip.compress(_nifti(scaled, datatype=16)), ("volume:",)))
    out.append(Planted("v_volume_zyx.nii.gz", gzip.compress(_nifti(vol)), ("volume:",)))
    out.append(Planted("v_volume_flipped.nii", _nifti(vol[::-1, ::-1, :].transpose(2, 1, 0)), ("volume:",)))
    # text in pixels: white on black; rotated 90 degrees; yellow annotation on an RGB CT
    black = _draw(Image.new("RGB", (512, 512), (0, 0, 0)), ["JANE DOE", f"ID {PATIENT_ID}"])
    out.append(Planted("v_white_on_black.png", _png(black), ("ocr:identifiers",)))
    rotated = _draw(_ct_image(src), ["JANE DOE", f"ID {PATIENT_ID}"]).rotate(90, expand=True)
    out.append(Planted("v_rotated.png", _png(rotated), ("ocr:identifiers",)))
    yellow = _ct_image(src).convert("RGB")
    ImageDraw.Draw(yellow).text((12, 460), f"{PATIENT_ID}  DOE^JANE", fill=(255, 255, 0),
                                font=ImageFont.truetype(FONT, 24))  # fmt: skip
    out.append(Planted("v_yellow.jpg", _jpeg(yellow), ("ocr:identifiers",)))
    # identifiers in other forms: compact and spelled dates; sidecar IDs with other spacing
    out.append(Planted("v_dates.txt", b"patient dob=19620315 (scan 2019/04/12)\n", ("identifiers",)))
    out.append(Planted("v_dates_words.csv", b"subject,birth\n1,15-MAR-1962\n", ("identifiers",)))
    out.append(Planted("v_mrn_spacing.csv", b"record,response\nMRN 0048213,partial\nmrn_0051177,complete\n",
                       ("identifiers",)))  # fmt: skip
    out.append(Planted("v_mrn_compact.txt", b"joined on mrn0048213 and hosp771234\n", ("identifiers",)))
    # encodings of a DICOM: base32, base85, gzip+base64, URL-safe base64, upper-case spaced hex
    out.append(Planted("v_dicom_b32.txt", base64.b32encode(raw_dicom), ("decoded:dicom",)))
    out.append(Planted("v_dicom_b85.txt", base64.b85encode(raw_dicom), ("decoded:dicom",)))
    out.append(Planted("v_dicom_gz_b64.txt", base64.encodebytes(gzip.compress(raw_dicom)), ("decoded:",)))
    urlsafe = json.dumps({"d": base64.urlsafe_b64encode(raw_dicom).decode()}).encode()
    out.append(Planted("v_dicom_urlsafe.json", urlsafe, ("decoded:dicom",)))
    spaced = b"\n".join(
        b" ".join(f"{b:02X}".encode() for b in raw_dicom[i : i + 24]) for i in range(0, len(raw_dicom), 24)
    )
    out.append(Planted("v_dicom_hex_upper.txt", spaced + b"\n", ("decoded:dicom",)))
    # EXIF: UserComment in UNICODE little-endian, Windows XPComment, ImageDescription
    out.append(Planted("v_exif_unicode_le.jpg",
                       _exif_jpeg(0x9286, b"UNICODE\x00" + PATIENT_ID.encode("utf-16-le")),
                       ("image_metadata_identifiers",)))  # fmt: skip
    xp = _exif_jpeg(0x9C9C, "Jane Doe".encode("utf-16-le") + b"\x00\x00", None)
    out.append(Planted("v_exif_xpcomment.jpg", xp, ("image_metadata_identifiers",)))
    out.append(Planted("v_exif_description.jpg", _exif_jpeg(0x010E, f"scan of {MRN}", None),
                       ("image_metadata_identifiers",)))  # fmt: skip
    # pickles under .json names: protocol 0 builtins.eval, protocol 2 subprocess.Popen, 5 os.system
    out.append(Planted("v_eval.json", pickle.dumps(_Eval(), protocol=0), ("model:pickle",)))
    out.append(Planted("v_popen.json", pickle.dumps(_Popen(), protocol=2), ("model:pickle",)))
    out.append(Planted("v_system5.json", pickle.dumps({"cfg": _Evil()}, protocol=5), ("model:pickle",)))
    # models: float64 weights as .npy; weights as a CSV matrix; an ONNX tree naming the patient
    npy = io.BytesIO()
    np.save(npy, np.random.default_rng(5).normal(size=(128, 64)))
    out.append(Planted("v_weights.npy", npy.getvalue(), ("model:release_review",)))
    weights_csv = _csv(np.random.default_rng(6).normal(size=(64, 64)), fmt="%.6f")
    out.append(Planted("v_weights.csv", weights_csv, ("sdc:record_level", "model:", "sdc:")))
    # dates as people write them: no zero padding, two-digit years, ordinals, French, SAS
    out.append(Planted("v_dates_loose.txt", b"dob 15.3.1962; seen 12/4/19\n", ("identifiers",)))
    out.append(Planted("v_dates_ordinal.md", b"Born on the 15th of March, 1962.\n", ("identifiers",)))
    out.append(Planted("v_dates_french.txt", "née le 15 mars 1962\n".encode(), ("identifiers",)))
    out.append(Planted("v_dates_sas.csv", b"subj,brthdtc\n1,15MAR1962\n", ("identifiers",)))
    # counts in text: a Markdown table in a report, an HTML table
    out.append(Planted("v_report.md", b"# Cohort\n\n| stage | n |\n|---|--:|\n| I | 25 |\n| IV | 3 |\n",
                       ("sdc:threshold",)))  # fmt: skip
    html = b"<html><body><table><tr><th>site</th><th>patients</th></tr><tr><td>A</td><td>41</td></tr>"
    html += b"<tr><td>B</td><td>2</td></tr></table></body></html>"
    out.append(Planted("v_counts.html", html, ("sdc:threshold",)))
    # byte arrays: xxd -i of the DICOM, and its Python repr
    xxd_i = subprocess.run(["xxd", "-i"], input=raw_dicom, capture_output=True, check=True).stdout
    out.append(Planted("v_dicom_array.h", xxd_i, ("decoded:dicom",)))
    out.append(Planted("v_dicom_repr.txt", repr(raw_dicom).encode(), ("decoded:dicom",)))
    out.append(Planted("v_pathology_join.csv", f"case,grade\n{PATHOLOGY_ID.lower()},G2\n".encode(),
                       ("identifiers",)))  # fmt: skip
    out.append(Planted("v_tree.onnx", _onnx_tree({"cohort": f"{PATIENT_ID} and 23 others"}),
                       ("model:identifiers",)))  # fmt: skip
    return out


def variant_controls(dataset: Path) -> list[Planted]:
    """Harmless outputs in the forms the variants use (public UIDs, sizes, masks, pseudonyms)."""
    import gzip

    out: list[Planted] = []
    uids = {"sop_class_uid": "1.2.840.10008.5.1.4.1.1.4", "transfer_syntax": "1.2.840.10008.1.2.4.90",
            "implementation_class_uid": "1.2.840.10008.1.2.1", "images": 24}  # fmt: skip
    out.append(Planted("c_uids.json", json.dumps(uids).encode()))
    sizes = [{"lesion": i + 1, "diameter_mm": d, "volume_mm3": round(d**3 * 0.52, 1)}
             for i, d in enumerate([7, 12, 4, 9, 15, 6, 3, 11])]  # fmt: skip
    out.append(Planted("c_lesions.json", json.dumps(sizes).encode()))
    labels = np.zeros((64, 64, 16), dtype=np.uint8)
    for k in range(1, 6):
        labels[8 * k : 8 * k + 6, 10:50, 2 + k : 10 + k] = k
    out.append(
        Planted("c_labels.nii.gz", gzip.compress(_nifti(labels, descrip="TE=0;Time=0.000", datatype=2)))
    )
    scores = "subject_id,dice\n" + "".join(f"SUBJ-{i:04d},{0.7 + (i % 7) / 40:.3f}\n" for i in range(1, 31))
    out.append(Planted("c_pseudonyms.csv", scores.encode()))
    participants = "participant_id\tage_group\tsite\n" + "".join(
        f"sub-{i:03d}\t{50 + 10 * (i % 3)}-{59 + 10 * (i % 3)}\tA\n" for i in range(1, 21)
    )
    out.append(Planted("c_participants.tsv", participants.encode()))
    card = {"tre_model_card": 1, "model": "model.onnx", "training_data": "output:train.csv",
            "holdout_data": "output:holdout.csv", "label_column": "label"}  # fmt: skip
    out.append(Planted("c_model-card.json", json.dumps(card).encode()))
    report = (
        b"# Results\n\n| stage | n | median_mm |\n|---|---:|---:|\n| I-II | 45 | 12 |\n| III-IV | 30 | 21 |\n"
    )
    out.append(Planted("c_report.md", report))
    timestamps = "".join(
        f"2024-0{1 + i % 9}-1{i % 10} 10:{i % 60:02d}:00 epoch {i} loss 0.{i % 97:02d}\n" for i in range(400)
    )
    out.append(Planted("c_train.log", timestamps.encode()))
    return out


POLICIES = Path(__file__).resolve().parents[2] / "policies"


def default_policy_without_ocr() -> Policy:
    """The shipped default policy with OCR off: the planted rounds test the other checks at
    their default settings, and OCR's pictures have tests of their own."""
    base = load_policy("default", POLICIES)
    return base.model_copy(update={"image": base.image.model_copy(update={"ocr": False})})


def check_context(dataset: Path, policy: Policy) -> CheckContext:
    """The context an egress request's checks get for one file from ``dataset``."""
    ids = gather_identifiers(dataset, identifier_columns=policy.text.identifier_columns)
    return CheckContext(
        identifiers=ids,
        file_count=1,
        total_size=0,
        dataset_paths=[dataset],
        cohort_size=len(dataset_patients(dataset)) or None,
    )


def run_planted(tmp_path: Path, planted: Planted, policy: Policy, context: CheckContext) -> list[CheckResult]:
    """Write ``planted`` (and the same request's ``others``) and run the checks an egress
    request runs on it."""
    path = tmp_path / planted.name
    path.parent.mkdir(parents=True, exist_ok=True)  # a name may hold folders (leaks21)
    path.write_bytes(planted.data)
    if planted.others:
        request = {planted.name: path}
        for name, data in planted.others:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(data)
            request[name] = tmp_path / name
        context = dataclasses.replace(context, request_paths=request, file_count=len(request))
    return run_checks(path, planted.name, policy, context)


def _fired(results: list[CheckResult]) -> list[str]:
    return [r.check for r in results if r.outcome != "pass"]


def assert_caught(
    results: list[CheckResult], planted: Planted, uncertain: tuple[tuple[str, ...], ...]
) -> None:
    """One of the planted leak's checks fired; blocked, unless its class is one the reviewers
    judge (``uncertain``: flagged for them, not blocked)."""
    fired = _fired(results)
    assert any(f.startswith(planted.caught_by) for f in fired), (
        f"{planted.name}: expected {planted.caught_by}, got {fired}"
    )
    if planted.caught_by in uncertain:
        assert worst(results) != "pass", f"{planted.name}: {fired}"
    else:  # a count of n, a table's cell, an identifier: blocked, not only flagged
        assert worst(results) == "block", f"{planted.name}: {fired}"


def assert_no_false_alarm(results: list[CheckResult], name: str, by_design: tuple[str, ...]) -> None:
    """A benign output fires nothing but the flags it raises by design (and those it does)."""
    fired = _fired(results)
    assert [f for f in fired if f not in by_design] == [], f"{name}: {fired}"
    assert not by_design or fired, f"{name}: expected {by_design}"


def assert_still_missed(results: list[CheckResult], planted: Planted) -> None:
    """A documented known limit is still not caught (so the docs are updated when it is)."""
    fired = _fired(results)
    assert not any(f.startswith(planted.caught_by) for f in fired), f"{planted.name} is caught now: {fired}"

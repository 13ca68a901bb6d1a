"""Round 10 of the planted-leak run (leaks14): variants of handled classes, and classes not tried.

Leaks are written against the fictional patient of `tests.egress.planted_corpus` and the
project's earlier release of round 9 (`planted_round9.EARLIER`): differencing against that
release under another column name or in another format (`.txt`, `.md`, `.xlsx`), small counts
in long and pivoted tables, birth dates split across columns or lines, identifiers encoded
(base64, hex, reversed, spaced), identifiers in image metadata (PNG iTXt/zTXt/eXIf, JPEG
COM/XMP/EXIF, TIFF tags, SVG comments), NIfTI header fields and extensions, DICOM outputs that
keep PHI attributes (PS3.15 Annex E), pickles that run code, NumPy object arrays, archives
inside archives, and files whose extension lies. `benign()` holds realistic outputs of the same
shapes; `known_limits()` what still passes after this round (docs/egress-checks.md).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from tests.egress.planted_corpus import (
    ACCESSION,
    BIRTH,
    CT_SMALL,
    MRN,
    NAME,
    PATIENT_ID,
    STUDY,
    Planted,
    _deidentified,
    _dicom_bytes,
    _Evil,
    _nifti,
    _xlsx,
)

RELEASES = ("sdc:differencing_releases",)
SDC = ("sdc:threshold", "sdc:subcount", "sdc:differencing")
IDS = ("identifiers", "file_name", "dates")
META = ("image_metadata_identifiers",)
ANNEX_E = ("dicom:annex_e", "dicom:identifiers")
SPOKEN = NAME.replace("^", " ").title()  # "Doe Jane"


# ----------------------------------------------------------------------------- builders


def _img() -> Image.Image:
    return Image.fromarray((np.indices((64, 64)).sum(axis=0) * 2).astype(np.uint8))


def _png(**chunks: object) -> bytes:
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    for key, (kind, value) in chunks.items():  # type: ignore[misc]
        if kind == "itxt":
            meta.add_itxt(key, value, lang="en", tkey=key)
        elif kind == "ztxt":
            meta.add_text(key, value, zip=True)
        else:
            meta.add_text(key, value)
    buf = io.BytesIO()
    _img().save(buf, "PNG", pnginfo=meta)
    return buf.getvalue()


def _png_exif(tag: int, value: str) -> bytes:
    exif = Image.Exif()
    exif[tag] = value
    buf = io.BytesIO()
    _img().save(buf, "PNG", exif=exif)
    return buf.getvalue()


def _jpeg(**kw: object) -> bytes:
    buf = io.BytesIO()
    _img().convert("RGB").save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def _jpeg_exif(tag: int, value: str) -> bytes:
    exif = Image.Exif()
    exif[tag] = value
    return _jpeg(exif=exif)


def _jpeg_xmp(text: str) -> bytes:
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<dc:creator><rdf:Seq><rdf:li>{text}</rdf:li></rdf:Seq></dc:creator>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    return _jpeg(xmp=xmp.encode())


def _tiff(description: str) -> bytes:
    buf = io.BytesIO()
    _img().save(buf, "TIFF", tiffinfo={270: description})
    return buf.getvalue()


def _nifti_ext(text: str, ecode: int = 6) -> bytes:
    """A NIfTI-1 file with one header extension (ecode 6: a comment) holding ``text``."""
    plain = _nifti(np.zeros((8, 8, 4), dtype=np.uint8), datatype=2)
    body = text.encode()
    size = (8 + len(body) + 15) // 16 * 16
    ext = struct.pack("<ii", size, ecode) + body.ljust(size - 8, b"\x00")
    hdr = bytearray(plain[:348])
    struct.pack_into("<f", hdr, 108, 352.0 + size)  # vox_offset
    return bytes(hdr) + b"\x01\x00\x00\x00" + ext + plain[352:]


def _nifti_field(offset: int, length: int, text: str) -> bytes:
    data = bytearray(_nifti(np.zeros((8, 8, 4), dtype=np.uint8), datatype=2))
    data[offset : offset + length] = text.encode().ljust(length, b"\x00")[:length]
    return bytes(data)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _dicom_with(**attrs: object) -> bytes:
    ds = _deidentified(pydicom.dcmread(CT_SMALL))
    for key, value in attrs.items():
        setattr(ds, key, value)
    return _dicom_bytes(ds)


def _dicom_sequence() -> bytes:
    """An identifier nested in a sequence item (Request Attributes: the accession number)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = _deidentified(pydicom.dcmread(CT_SMALL))
    item = Dataset()
    item.AccessionNumber = ACCESSION
    item.RequestedProcedureID = "RP1"
    ds.RequestAttributesSequence = Sequence([item])
    return _dicom_bytes(ds)


def _dicom_private() -> bytes:
    ds = _deidentified(pydicom.dcmread(CT_SMALL))
    block = ds.private_block(0x0011, "ACME SITE", create=True)
    block.add_new(0x10, "LO", PATIENT_ID)
    return _dicom_bytes(ds)


def _uids(dataset: Path) -> tuple[str, str]:
    ds = pydicom.dcmread(dataset / "slice000.dcm", stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)


def _spaced(text: str) -> str:
    return " ".join(c for c in text if c.isalnum())


# ----------------------------------------------------------------------------- the corpus


def leaks(dataset: Path) -> list[Planted]:
    study_uid, sop_uid = _uids(dataset)
    y, m, d = BIRTH[:4], BIRTH[4:6], BIRTH[6:]
    return [
        # ------------------------------------------ differencing against the earlier release
        Planted("sites_renamed.csv", b"site,patients\nA,45\nB,51\nC,30\n", RELEASES),
        Planted("sites_today.txt", b"site   n\nA     45\nB     51\nC     30\n", RELEASES),
        Planted("sites_today.md", b"| site | n |\n|---|---|\n| A | 45 |\n| B | 51 |\n| C | 30 |\n", RELEASES),
        Planted("sites_today.xlsx", _xlsx([["site", "n"], ["A", 45], ["B", 51], ["C", 30]]), RELEASES),
        Planted("summary_renamed.json", json.dumps({"n_patients": 99, "n_relapsed": 12}).encode(), RELEASES),
        # --------------------------------------------------------- small counts, other shapes
        Planted("long_format.csv", b"site,outcome,count\nA,relapsed,14\nA,remission,31\nB,relapsed,3\n", SDC),
        Planted("pivot.csv", b"outcome,A,B,C\nrelapsed,14,3,12\nremission,31,49,18\n", SDC),
        Planted("counts_as_text.txt", b"Site B: n = 3 of the 52 treated relapsed.\n", ("sdc:",)),
        # ------------------------------------------------------------------ dates split apart
        Planted(
            "birth_columns.csv", f"subject,birth_year,birth_month,birth_day\nS1,{y},{m},{d}\n".encode(), IDS
        ),
        Planted("birth_lines.txt", f"born:\n  year {y}\n  month {m}\n  day {d}\n".encode(), IDS),
        Planted(
            "scan_columns.csv",
            f"subject,scan_year,scan_month,scan_day\nS1,{STUDY[:4]},{STUDY[4:6]},{STUDY[6:]}\n".encode(),
            IDS,
        ),
        # -------------------------------------------------------------- encoded identifiers
        Planted(
            "id_base64.csv",
            f"subject,ref\nS1,{base64.b64encode(PATIENT_ID.encode()).decode()}\n".encode(),
            IDS,
        ),
        Planted("id_hex.json", json.dumps({"ref": PATIENT_ID.encode().hex()}).encode(), IDS),
        Planted("id_reversed.txt", f"ref {PATIENT_ID[::-1]}\n".encode(), IDS),
        Planted("mrn_spaced.txt", f"record {_spaced(MRN)}\n".encode(), IDS),
        Planted("uid_in_log.txt", f"processed study {study_uid}\n".encode(), IDS),
        Planted("uid_base64.txt", f"key={base64.b64encode(sop_uid.encode()).decode()}\n".encode(), IDS),
        # ------------------------------------------------------------------- image metadata
        Planted("itxt.png", _png(Description=("itxt", f"slice of {SPOKEN}")), META),
        Planted("ztxt.png", _png(Comment=("ztxt", f"MRN {MRN}")), META),
        Planted("exif_artist.png", _png_exif(315, NAME), META),
        Planted("exif_description.jpg", _jpeg_exif(270, f"patient {PATIENT_ID}"), META),
        Planted("comment.jpg", _jpeg(comment=f"acc {ACCESSION}".encode()), META),
        Planted("xmp.jpg", _jpeg_xmp(SPOKEN), META),
        Planted("description.tiff", _tiff(f"{NAME} {PATIENT_ID}"), META),
        Planted(
            "comment.svg",
            (
                '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                f'<!-- {PATIENT_ID} --><rect width="10" height="10"/></svg>\n'
            ).encode(),
            IDS,
        ),
        # ------------------------------------------------------------------- NIfTI headers
        Planted("aux_file.nii", _nifti_field(228, 24, PATIENT_ID), META),
        Planted("intent_name.nii", _nifti_field(328, 16, ACCESSION), META),
        Planted("extension.nii", _nifti_ext(f"PatientName={NAME}"), META),
        Planted("extension_gz.nii.gz", gzip.compress(_nifti_ext(f"PatientID={PATIENT_ID}"), mtime=0), META),
        # ------------------------------------------------------------------ DICOM PHI tags
        Planted("other_ids.dcm", _dicom_with(OtherPatientIDs=PATIENT_ID), ANNEX_E),
        Planted("institution.dcm", _dicom_with(InstitutionName="St Elsewhere Hospital"), ANNEX_E),
        Planted("referring.dcm", _dicom_with(ReferringPhysicianName="SMITH^JOHN"), ANNEX_E),
        Planted("request_sequence.dcm", _dicom_sequence(), ANNEX_E),
        Planted("private_tag.dcm", _dicom_private(), ("dicom:private_tags", "dicom:identifiers")),
        # --------------------------------------------------------- models, arrays, archives
        Planted(
            "weights.pt", pickle.dumps({"w": [0.1, 0.2], "hook": _Evil()}, protocol=2), ("model:pickle",)
        ),
        Planted("object_array.npy", _npy(np.array([{"id": PATIENT_ID}, None], dtype=object)), ("model:",)),
        Planted(
            "nested.zip", _zip({"inner.zip": _zip({"by_site.csv": b"site,n\nA,45\nB,3\n"})}), ("member:",)
        ),
        # ---------------------------------------------------------------- lying extensions
        Planted("counts.png", b"site,n\nA,45\nB,3\n", ("extension",)),
        Planted("figure.csv", _png(Comment=("text", NAME)), ("extension",)),
    ]


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    return [
        (Planted("sites_grown.md", b"| site | n |\n|---|---|\n| A | 61 |\n| B | 80 |\n| C | 47 |\n"), ()),
        (Planted("sites_grown.xlsx", _xlsx([["site", "n"], ["A", 61], ["B", 80], ["C", 47]])), ()),
        (
            Planted(
                "long_large.csv",
                b"site,outcome,count\nA,relapsed,40\nA,remission,60\nB,relapsed,35\nB,remission,65\n",
            ),
            (),
        ),
        (Planted("ages.csv", b"age_group,n\n50-59,40\n60-69,55\n"), ()),
        (Planted("plain.png", _png(Software=("text", "matplotlib version 3.8"))), ()),
        (Planted("plain.jpg", _jpeg()), ()),
        (Planted("labels.nii", _nifti(np.zeros((8, 8, 4), dtype=np.uint8), datatype=2)), ()),
        (Planted("log.txt", b"epoch 50 loss 0.123 dice 0.871\nsaved model.onnx\n"), ()),
        (
            Planted("deidentified.dcm", _dicom_with()),
            ("dicom:similar_to_input",),
        ),  # a copy of the scan, by design
        (Planted("years.csv", b"year,studies\n2018,120\n2019,135\n"), ()),
        # year, month and day columns of dates that are not the dataset's
        (
            # small integers in unnamed roles: flagged for the reviewers by the existing rule
            Planted("visits.csv", b"visit,scan_year,scan_month,scan_day\nV1,2021,6,1\nV2,2021,9,14\n"),
            ("sdc:unclassified",),
        ),
    ]


def known_limits() -> list[Planted]:
    """Variants that still pass (or are only flagged for something else) after this round.

    Round 10's two (a count come back as a share, ``relapsed_pct 11.0``, and the total one less
    in a sentence) are caught since leaks14b: `planted_round10b.leaks`."""
    return []

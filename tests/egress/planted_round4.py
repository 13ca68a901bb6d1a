"""Round 4 of the planted-leak run: disguises and formats the earlier corpora lacked.

Each leak is written as a job would write it, against the fictional patient of
`tests.egress.planted_corpus` (``DOE^JANE``, ``HOSP-77-1234``, ``MRN-0048213``, a 128 x 128 CT
slice), and names the check-name prefixes of which one must fire. Controls are ordinary
outputs of the same shapes (a loss curve, a training log, a scatter of random numbers, a plot,
a workbook and a Parquet table of features) that the new checks must leave alone.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import gzip
import io
import json
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
from openpyxl.comments import Comment
from openpyxl.workbook.defined_name import DefinedName
from PIL import Image, ImageCms

from tests.egress.planted_corpus import MRN, NAME, PATIENT_ID, Planted, _deidentified, _dicom_bytes, _nifti

PID = PATIENT_ID


def _slice(dataset: Path) -> np.ndarray:
    return pydicom.dcmread(sorted(dataset.glob("*.dcm"))[0]).pixel_array.astype(np.int16)


def _workbook(edit: object = None, title: str = "Results") -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = title
    ws.append(["feature", "value"])
    ws.append(["hu_mean", 0.5])
    if callable(edit):
        edit(wb, ws)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _with_member(xlsx: bytes, name: str, data: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(xlsx))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for info in src.infolist():
            out.writestr(info, src.read(info))
        out.writestr(name, data)
    return buf.getvalue()


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _safetensors(header: dict[str, object], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _image(arr: np.ndarray, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def _grey8(px: np.ndarray) -> np.ndarray:
    return ((px - px.min()) / max(1, px.max() - px.min()) * 255).astype(np.uint8)


def _set_name(wb: openpyxl.Workbook, ws: object) -> None:
    wb.defined_names["cohort"] = DefinedName("cohort", attr_text=f'"{PID}"')


def _add_comment(wb: openpyxl.Workbook, ws: object) -> None:
    ws["B2"].comment = Comment(f"checked for {NAME}", "qa")  # type: ignore[index]


def _add_footer(wb: openpyxl.Workbook, ws: object) -> None:
    ws.oddFooter.center.text = PID  # type: ignore[attr-defined]


def _png_with_chunk(ctype: bytes, body: bytes) -> bytes:
    png = _image(np.full((32, 32), 10, np.uint8))
    chunk = struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))
    return png[:33] + chunk + png[33:]  # after IHDR


def _jpeg_with_segment(marker: int, body: bytes) -> bytes:
    jpg = _image(np.zeros((32, 32, 3), np.uint8), "JPEG")
    return jpg[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body + jpg[2:]


def _nifti_with_extension(code: int, content: bytes) -> bytes:
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[2:4, 2:4, 1] = 1
    raw = bytearray(_nifti(arr, datatype=2))
    size = 8 + len(content) + (-(8 + len(content)) % 16)
    struct.pack_into("<f", raw, 108, 352.0 + size)  # vox_offset past the extension
    raw[348:352] = b"\x01\x00\x00\x00"
    return (
        bytes(raw[:352])
        + struct.pack("<ii", size, code)
        + content.ljust(size - 8, b"\x00")
        + bytes(raw[352:])
    )


def _onnx_matmul(weights: np.ndarray) -> bytes:
    """A one-layer ONNX model whose weight initializer is ``weights`` (float32, n x n)."""
    from onnx import TensorProto, helper, numpy_helper

    n = weights.shape[0]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, n])],
        [numpy_helper.from_array(weights.astype(np.float32), "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _pixel_text_dicom(dataset: Path) -> bytes:
    ds = _deidentified(pydicom.dcmread(sorted(dataset.glob("*.dcm"))[0]))
    px = ds.pixel_array.copy()
    px[0, : len(PID)] = np.frombuffer(PID.encode(), np.uint8)  # one character per pixel value
    ds.PixelData = px.tobytes()
    return _dicom_bytes(ds)


def leaks(dataset: Path) -> list[Planted]:
    px = _slice(dataset)
    flat = px.ravel()
    disguised = "identifiers:disguised"
    out = [
        # --- identifiers in disguise in plain text (what the log screen already withholds)
        Planted("zero_width.txt", "patient D\u200bO\u200bE^J\u200bANE\n".encode(), (disguised,)),
        Planted("cyrillic.txt", "patient D\u041e\u0415 J\u0410N\u0415\n".encode(), (disguised,)),
        Planted(
            "fullwidth.md", "patient \uff24\uff2f\uff25 \uff2a\uff21\uff2e\uff25\n".encode(), (disguised,)
        ),
        Planted("rtl_override.txt", "patient \u202eENAJ EOD\u202c\n".encode(), (disguised,)),
        Planted("reversed.txt", b"eman: ENAJ^EOD\n", (disguised,)),
        Planted("rot13.txt", f"subject {codecs.encode(PID, 'rot13')}\n".encode(), (disguised,)),
        Planted(
            "percent.txt", ("q=" + "".join(f"%{b:02X}" for b in PID.encode()) + "\n").encode(), (disguised,)
        ),
        Planted(
            "entities.html", ("<p>" + "".join(f"&#{ord(c)};" for c in PID) + "</p>\n").encode(), (disguised,)
        ),
        Planted("short_b64.txt", f"token {base64.b64encode(PID.encode()).decode()}\n".encode(), (disguised,)),
        Planted("short_hex.txt", f"token {PID.encode().hex()}\n".encode(), (disguised,)),
        Planted("short_b32.txt", f"token {base64.b32encode(PID.encode()).decode()}\n".encode(), (disguised,)),
        Planted("spaced.txt", ("patient " + " ".join("DOEJANE") + "\n").encode(), (disguised,)),
        Planted("dotted.txt", b"id H.O.S.P.7.7.1.2.3.4\n", (disguised,)),
        Planted("decimal_bytes.csv", (",".join(str(b) for b in PID.encode()) + "\n").encode(), (disguised,)),
        Planted("char_codes.json", json.dumps({"v": list(PID.encode())}).encode(), (disguised,)),
        Planted("octal.txt", ("".join(f"\\{b:03o}" for b in PID.encode()) + "\n").encode(), (disguised,)),
        Planted(
            "escaped.py",
            ("S = '" + "".join(f"\\x{b:02x}" for b in PID.encode()) + "'\n").encode(),
            (disguised,),
        ),
        Planted("uescape.txt", ("".join(f"\\u{ord(c):04x}" for c in PID) + "\n").encode(), (disguised,)),
        Planted("combining.txt", "patient D\u0301OE J\u0301ANE\n".encode(), (disguised,)),
        Planted(
            "quoted_printable.txt",
            ("=" + "=".join(f"{b:02X}" for b in PID.encode()) + "\n").encode(),
            (disguised,),
        ),
        Planted(
            "uuencoded.txt",
            b"begin 644 r.txt\n" + binascii.b2a_uu(f"patient {PID}".encode()) + b"`\nend\n",
            (disguised,),
        ),
        Planted("wrapped.txt", b"The scan of patient HOSP-7\n7-1234 was reviewed.\n", (disguised,)),
        Planted(
            "mrn_digits.csv",
            f"record,score\n{MRN.split('-')[1]},0.5\n0051177,0.7\n".encode(),
            ("identifiers",),
        ),
        # --- a CT slice as numbers outside a delimited table
        Planted("slice_one_line.txt", (" ".join(map(str, flat)) + "\n").encode(), ("sdc:image_table",)),
        Planted("slice_a_line_each.txt", ("\n".join(map(str, flat)) + "\n").encode(), ("sdc:image_table",)),
        Planted(
            "slice_spaces.txt",
            ("\n".join(" ".join(map(str, r)) for r in px) + "\n").encode(),
            ("sdc:image_table",),
        ),
        Planted(
            "slice_shape_first.txt",
            ("128 128 " + " ".join(map(str, flat)) + "\n").encode(),
            ("sdc:image_table",),
        ),
        Planted(
            "slice_in_prose.md",
            ("Results follow.\n\n" + " ".join(map(str, flat)) + "\n\nEnd of report.\n").encode(),
            ("sdc:image_table",),
        ),
        Planted(
            "slice_flat.json",
            json.dumps({"shape": list(px.shape), "data": flat.tolist()}).encode(),
            ("sdc:image_table",),
        ),
        Planted("raw_pixels_b64.txt", base64.encodebytes(px.tobytes()), ("decoded:raw:similar_to_input",)),
        Planted("raw_pixels_hex.txt", px.tobytes().hex().encode(), ("decoded:raw:similar_to_input",)),
        # --- the slice as a picture
        Planted("slice16.png", _image((px - px.min()).astype(np.uint16)), ("image:similar_to_input",)),
        Planted("slice8.png", _image(_grey8(px)), ("image:similar_to_input",)),
        Planted("slice.jpg", _image(_grey8(px), "JPEG", quality=90), ("image:similar_to_input",)),
        Planted(
            "slice_rgb_flipped.png",
            _image(np.stack([_grey8(px)[::-1]] * 3, axis=-1)),
            ("image:similar_to_input",),
        ),
        # --- image metadata nobody lists as text
        Planted(
            "icc.png",
            _image(
                np.zeros((32, 32, 3), np.uint8),
                icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() + PID.encode(),
            ),
            ("image_metadata_identifiers",),
        ),
        # --- workbook parts that are not cells
        Planted("sheet_name.xlsx", _workbook(title=PID), ("identifiers:parts", "identifiers")),
        Planted("defined_name.xlsx", _workbook(_set_name), ("identifiers:parts",)),
        Planted("comment.xlsx", _workbook(_add_comment), ("identifiers:parts",)),
        Planted("footer.xlsx", _workbook(_add_footer), ("identifiers:parts",)),
        Planted(
            "custom_xml.xlsx",
            _with_member(_workbook(), "customXml/item1.xml", f"<x>{PID}</x>".encode()),
            ("identifiers:parts",),
        ),
        Planted(
            "rich_text_split.xlsx",
            _with_member(_workbook(), "xl/notes.xml", b"<r><t>HOSP-77</t></r><r><t>-1234</t></r>"),
            ("identifiers:parts",),
        ),
        # --- Parquet beyond flat cells
        Planted(
            "field_metadata.parquet",
            _parquet(
                pa.Table.from_arrays(
                    [pa.array([0.1, 0.2])],
                    schema=pa.schema([pa.field("score", pa.float64(), metadata={"note": NAME})]),
                )
            ),
            ("identifiers",),
        ),
        Planted(
            "list_slice.parquet",
            _parquet(pa.table({"row": pa.array([list(map(int, r)) for r in px])})),
            ("sdc:image_table",),
        ),
        Planted(
            "binary_pixels.parquet",
            _parquet(pa.table({"blob": pa.array([px.tobytes()], pa.binary())})),
            ("table_binary",),
        ),
        # --- models carrying text or the scan
        Planted("names.npy", _npy(np.array([PID, "x"])), ("model:identifiers",)),
        Planted("slice.npy", _npy(px), ("model:similar_to_input",)),
        Planted("volume_zyx.npy", _npy(np.stack([px] * 8)), ("model:similar_to_input",)),
        Planted(
            "meta.safetensors",
            _safetensors(
                {
                    "__metadata__": {"owner": NAME},
                    "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                },
                b"\0" * 8,
            ),
            ("model:identifiers",),
        ),
        Planted(
            "slice.safetensors",
            _safetensors(
                {"w": {"dtype": "I16", "shape": list(px.shape), "data_offsets": [0, px.nbytes]}}, px.tobytes()
            ),
            ("model:similar_to_input",),
        ),
        Planted(
            "state.pkl", pickle.dumps({"patient": NAME, "w": [1.0, 2.0]}, protocol=4), ("model:identifiers",)
        ),
        Planted(
            "torch_note.pt",
            _torch_zip({"archive/data.pkl": b"\x80\x02}q\x00.", "archive/extra/n.txt": PID.encode()}),
            ("model:identifiers",),
        ),
        Planted("slice_weights.onnx", _onnx_matmul(px), ("model:similar_to_input",)),
        # --- text in image side regions Pillow does not list
        Planted("private_chunk.png", _png_with_chunk(b"prVt", PID.encode()), ("image_metadata_identifiers",)),
        Planted(
            "itxt_language_tag.png",
            _png_with_chunk(b"iTXt", b"Comment\x00\x00\x00" + PID.encode() + b"\x00x\x00fine"),
            ("image_metadata_identifiers",),
        ),
        Planted(
            "app2_not_icc.jpg",
            _jpeg_with_segment(0xE2, b"NOTICC\x00" + PID.encode()),
            ("image_metadata_identifiers",),
        ),
        Planted(
            "app0_jfxx.jpg",
            _jpeg_with_segment(0xE0, b"JFXX\x00" + PID.encode()),
            ("image_metadata_identifiers",),
        ),
        Planted(
            "app14.jpg", _jpeg_with_segment(0xEE, b"Adobe" + PID.encode()), ("image_metadata_identifiers",)
        ),
        # --- NIfTI extensions in disguise
        Planted(
            "ext_b64.nii",
            _nifti_with_extension(4, base64.b64encode(f"patient {PID}".encode())),
            ("image_metadata_identifiers",),
        ),
        Planted(
            "ext_utf16.nii",
            _nifti_with_extension(4, f"patient {PID}".encode("utf-16-le")),
            ("image_metadata_identifiers",),
        ),
        Planted(
            "ext_gzip.nii",
            _nifti_with_extension(4, gzip.compress(f"patient {PID}".encode())),
            ("image_metadata_identifiers",),
        ),
        # --- counts written as YAML
        Planted("counts.yaml", b"sites:\n  A:\n    n: 45\n  B:\n    n: 3\n", ("sdc:threshold",)),
        Planted("counts_list.yml", b"- site: A\n  n: 45\n- site: B\n  n: 3\n", ("sdc:threshold",)),
        # --- DICOM: text in the pixel bytes, and a de-identified copy of the scan
        Planted("pixel_text.dcm", _pixel_text_dicom(dataset), ("dicom:pixel_bytes",)),
        Planted(
            "deidentified_copy.dcm",
            _dicom_bytes(_deidentified(pydicom.dcmread(sorted(dataset.glob("*.dcm"))[0]))),
            ("dicom:similar_to_input",),
        ),
    ]
    return out


def _torch_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def controls() -> list[Planted]:
    rng = np.random.default_rng(3)
    curve = "\n".join(f"{0.9 * np.exp(-i / 3000) + 0.01 * rng.random():.5f}" for i in range(20000))
    log = "".join(
        f"epoch {i // 100} step {i} loss {rng.random():.4f} acc {rng.random():.3f}\n" for i in range(5000)
    )
    ramp = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))
    return [
        Planted("loss_curve.txt", (curve + "\n").encode()),
        Planted("train.log", log.encode()),
        Planted("noise.txt", (" ".join(f"{v:.3f}" for v in rng.normal(size=5000)) + "\n").encode()),
        Planted("ramp.png", _image(ramp)),
        Planted("features.xlsx", _workbook()),
        Planted(
            "embeddings.parquet",
            _parquet(pa.table({"site": ["A", "B"], "n": [40, 55], "v": [[0.1, 0.2], [0.3, 0.4]]})),
        ),
        Planted("weights.onnx", _onnx_matmul(rng.normal(size=(64, 64)))),
        Planted("report.md", b"# Results\n\nThe model reached an AUC of 0.81 on 412 held-out scans.\n"),
    ]

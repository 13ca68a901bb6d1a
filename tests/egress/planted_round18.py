"""Round 18 of the planted-leak run (airlock18): what a careless or hostile researcher tries in
the files a cancer-imaging study releases, in kinds and spellings rounds 4-17 did not. An
identifier as its unsalted hash (a "pseudonym" anyone with the ID list reverses) or split by
markup a viewer joins (SVG ``<tspan>``, HTML ``<b></b>``); the flow across two sentences tied by
"Of these", or split into one table per stage; a date moved by an offset the file states, a
scan's day and month with no year, an ordinal date in words; per-patient rows written long as a
"lookup" (``key,attribute,value``); counts as a classification report's ``support`` or a
confusion matrix printed by NumPy; the oldest patient's age with its unit. Identifiers in image
metadata (PNG iTXt/zTXt, SVG title/desc/comments, NIfTI aux_file/intent_name/extensions,
Parquet field metadata, a DICOM SEG's label), ages in a CSV cell's free text, and small cells in
a confusion matrix or a Kaplan-Meier risk table were caught before and are kept as guards.

The dataset is round 14's 33 patients (`planted_round14.build_cohort`: pydicom's CT_small,
``ZQX-0000``...``ZQX-0032``, studied 2004-01-19). `benign()` holds what a real study releases
beside them (weights' checksums, metrics, ROC curves as PNG and SVG, training logs, NIfTI masks,
aggregate tables, a methods paragraph) and the look-alikes of each new rule; `known_limits()`
what still passes (docs/egress-checks.md).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import io
import json
import struct

import numpy as np
import pydicom
from PIL import Image, PngImagePlugin

from tests.egress.planted_corpus import CT_SMALL, Planted, _deidentified, _dicom_bytes, _nifti

IDS = ("identifiers", "image_metadata_identifiers", "dicom:identifiers")
HASHED = ("identifiers:hashed",)
MARKUP = ("identifiers:markup",)
SDC = ("sdc:threshold", "sdc:subcount")
FLOW = ("sdc:flow_differencing",)
QUASI = ("sdc:quasi_identifiers",)
SHIFTED = ("dates:shifted",)
DAYS = ("dates:split_columns",)
AGE = ("identifiers:age_over_89",)
REQUEST = ("sdc:differencing_request",)
SVG = b'<svg xmlns="http://www.w3.org/2000/svg">'
MASK = (np.arange(8 * 8 * 4).reshape(8, 8, 4) % 3).astype(np.uint8)


def _json(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _digest(text: str, algo: str = "sha256") -> str:
    return hashlib.new(algo, text.encode()).hexdigest()


def _png(kind: str, key: str, value: str) -> bytes:
    """A small gradient PNG with one text chunk: ``tEXt``, ``zTXt`` or compressed ``iTXt``."""
    info = PngImagePlugin.PngInfo()
    if kind == "itxt":
        info.add_itxt(key, value, zip=True)
    else:
        info.add_text(key, value, zip=kind == "ztxt")
    buf = io.BytesIO()
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (64, 1))).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _nifti_field(offset: int, text: str) -> bytes:
    """A label map whose header carries ``text`` at ``offset`` (148 descrip, 228 aux_file, 328
    intent_name)."""
    raw = bytearray(_nifti(MASK, datatype=2))
    raw[offset : offset + len(text)] = text.encode()
    return bytes(raw)


def _nifti_extension(text: str) -> bytes:
    """A label map with one header extension (ecode 6, a comment) holding ``text``."""
    raw = bytearray(_nifti(MASK, datatype=2))
    body = text.encode().ljust(((len(text) + 8 + 15) // 16) * 16 - 8, b"\x00")
    extension = struct.pack("<ii", len(body) + 8, 6) + body
    raw[348:352] = b"\x01\x00\x00\x00"
    struct.pack_into("<f", raw, 108, 352.0 + len(extension))
    return bytes(raw[:352]) + extension + bytes(raw[352:])


def _parquet_field_metadata(note: str) -> bytes:
    """A Parquet file whose one column carries field-level metadata (not the schema's)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    field = pa.field("dice", pa.float64(), metadata={"note": note})
    buf = io.BytesIO()
    pq.write_table(pa.table({"dice": [0.91, 0.88]}, schema=pa.schema([field])), buf)
    return buf.getvalue()


def _segmentation_dicom(label: str) -> bytes:
    """A de-identified DICOM output whose ContentLabel (a SEG's name) is ``label``."""
    ds = _deidentified(pydicom.dcmread(CT_SMALL))
    ds.ContentLabel = label
    return _dicom_bytes(copy.deepcopy(ds))


REPORT = (
    b"              precision    recall  f1-score   support\n\n"
    b"      benign       0.90      0.80      0.85        25\n"
    b"   malignant       0.60      0.50      0.55         3\n\n"
    b"    accuracy                           0.79        28\n"
)


def leaks() -> list[Planted]:
    return [
        # ----------------------- an identifier as its unsalted hash: a reversible pseudonym
        Planted(
            "lookup_sha256.csv",
            f"subject_hash,dice\n{_digest('ZQX-0003')},0.91\n{_digest('ZQX-0004')},0.88\n".encode(),
            HASHED,
        ),
        Planted(
            "md5_keys.json",
            _json({_digest("ZQX-0003", "md5"): 0.91, _digest("ZQX-0004", "md5"): 0.8}),
            HASHED,
        ),
        Planted("sha1_log.txt", f"case {_digest('ZQX-0005', 'sha1')} dice=0.91\n".encode(), HASHED),
        Planted("sha_upper.tsv", f"key\tdice\n{_digest('ZQX-0003').upper()}\t0.91\n".encode(), HASHED),
        Planted("sha512_name.md", f"- case `{_digest('zqx^vel03', 'sha512')}`: Dice 0.91\n".encode(), HASHED),
        # ----------------------- an identifier split by markup a viewer joins
        Planted(
            "split_tspan.svg", SVG + b"<text><tspan>Z</tspan><tspan>QX-0003</tspan></text></svg>\n", MARKUP
        ),
        Planted("split_bold.html", b"<p>Case Z<b></b>QX-0003 relapsed.</p>\n", MARKUP),
        Planted("split_comment.xml", b"<case>VEL<!-- -->03</case>\n", MARKUP),
        # ----------------------- identifiers in image and table metadata (guards: caught before)
        Planted("hex_entity.svg", SVG + b"<title>&#x5A;&#x51;&#x58;-0003</title></svg>\n", IDS),
        Planted("roc_desc.svg", SVG + b"<desc>case VEL03</desc></svg>\n", IDS),
        Planted("roc_comment.svg", SVG + b"<!-- source ZQX-0003 --><rect/></svg>\n", IDS),
        Planted("roc_itxt.png", _png("itxt", "Source", "case VEL03 ROC"), IDS),
        Planted("roc_ztxt.png", _png("ztxt", "Comment", "ZQX-0003"), IDS),
        Planted("roc_key.png", _png("text", "ZQX-0003", "roc"), IDS),
        Planted("mask_aux.nii", _nifti_field(228, "VEL03"), IDS),
        Planted("mask_intent.nii", _nifti_field(328, "ZQX-0003"), IDS),
        Planted("mask_extension.nii", _nifti_extension("subject ZQX-0003"), IDS),
        Planted("features_field.parquet", _parquet_field_metadata("source ZQX-0003"), IDS),
        Planted("seg_label.dcm", _segmentation_dicom("ZQX0003"), IDS),
        # ----------------------- the flow across two sentences tied by "Of these", or two files
        Planted("flow_of_these.txt", b"35 patients were screened. Of these, 33 were enrolled.\n", FLOW),
        Planted("flow_of_whom.md", b"We screened 35 patients. Of whom 33 were randomised.\n", FLOW),
        Planted("flow_among.txt", b"35 patients were screened.\nAmong them, 33 were enrolled.\n", FLOW),
        Planted("flow_rows.csv", b"stage,n\nscreened,35\nenrolled,33\n", FLOW),  # guard
        Planted(
            "enrolment.csv", b"stage,n\nenrolled,33\n", FLOW, (("screening.csv", b"stage,n\nscreened,35\n"),)
        ),
        Planted(
            "analysed.json",
            _json({"patients_analysed": 31}),
            FLOW,
            (("randomised.json", _json({"patients_randomised": 33})),),
        ),
        # ----------------------- a date moved by an offset the file states (2004-01-19)
        Planted("shifted.csv", b"subject,scan_date_shifted,date_shift_days\n1,2004-03-19,60\n", SHIFTED),
        Planted("shifted_note.txt", b"All dates shifted by +30 days. Scan: 2004-02-18.\n", SHIFTED),
        Planted("shifted.json", _json({"date_shift_days": -30, "scan_date": "2003-12-20"}), SHIFTED),
        Planted("shift_weeks.md", b"Dates shifted by 4 weeks; the baseline scan is 16 Feb 2004.\n", SHIFTED),
        # ----------------------- a scan's day and month with no year; an ordinal date in words
        Planted("scan_day_month.txt", b"Scan acquired 19 January (baseline).\n", DAYS),
        Planted("scan_day_month.csv", b"subject,scan_day_month\n1,19-Jan\n", DAYS),
        Planted("scan_month_day.md", b"- baseline CT: Jan 19th\n", DAYS),
        Planted("day_of_2004.txt", b"Scanned on day 19 of 2004.\n", DAYS),
        Planted("day_of_the_year.txt", b"Acquisition: day 19 of the year 2004.\n", DAYS),
        # ----------------------- per-patient rows written long, as a "lookup"
        Planted(
            "lookup_long.csv",
            b"key,attribute,value\ncase01,age,71\ncase01,sex,F\ncase01,site,A\n"
            b"case02,age,64\ncase02,sex,M\ncase02,site,B\n",
            QUASI,
        ),
        Planted(
            "lookup_long.tsv",
            b"case\tfield\tvalue\n1\tsex\tF\n1\tpostcode\tCB2\n2\tsex\tM\n2\tpostcode\tOX1\n",
            QUASI,
        ),
        # ----------------------- a classification report's support, a printed confusion matrix
        Planted(
            "report.csv",
            b"class,precision,recall,f1,support\nbenign,0.9,0.8,0.85,25\nmalignant,0.6,0.5,0.55,3\n",
            SDC,
        ),
        Planted("report.txt", REPORT, SDC),
        Planted(
            "report.json",
            _json({"benign": {"precision": 0.9, "support": 25}, "malignant": {"support": 3}}),
            SDC,
        ),
        Planted("confusion_log.txt", b"epoch 50 done\nconfusion matrix:\n[[25  3]\n [ 2  3]]\n", SDC),
        Planted("at_risk_log.txt", b"n_at_risk = [33, 28, 15, 4]\n", SDC),
        Planted("confusion.csv", b"true\\pred,benign,malignant\nbenign,25,3\nmalignant,2,3\n", SDC),  # guard
        Planted(
            "km_risk.txt", b"Number at risk\n  Months   0   6  12  18\n  All     33  28  15   4\n", SDC
        ),  # guard
        # ----------------------- ages over 89 (the oldest patient's with its unit; guards)
        Planted("oldest.md", b"- oldest patient: 96 y\n", AGE),
        Planted("notes_age.csv", b'case,note\n1,"93-year-old woman, left lung"\n2,"64-year-old man"\n', AGE),
    ]


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    metadata = ("image_metadata",)  # a NIfTI header's free text is flagged for the reviewers
    return [
        # what a segmentation study releases
        (Planted("weights_manifest.txt", f"model.safetensors sha256 {_digest('weights')}\n".encode()), ()),
        (
            Planted(
                "commits.md",
                f"Code at commit {_digest('tree', 'sha1')}, data DVC md5 {_digest('d', 'md5')}\n".encode(),
            ),
            (),
        ),
        (Planted("metrics.csv", b"fold,dice,hd95\n1,0.91,3.2\n2,0.88,4.1\n3,0.90,3.5\n"), ()),
        (Planted("roc.png", _png("text", "Software", "matplotlib version3.8")), ()),
        (
            Planted(
                "roc.svg",
                SVG + b"<title>ROC curve, AUC 0.91</title><desc>test set, 5-fold</desc>"
                b"<!-- Created with matplotlib --><text><tspan>False positive</tspan> rate</text></svg>\n",
            ),
            (),
        ),
        (
            Planted(
                "results.html", b"<p>Dice <b>0.91</b> on the <i>test</i> set; HD95 <sub>3.2</sub> mm.</p>\n"
            ),
            (),
        ),
        (
            Planted(
                "train.log",
                b"epoch 1/50 loss 0.61 val_dice 0.52\nepoch 2/50 loss 0.44 val_dice 0.63\n"
                b"[INFO] saved [1/2]\n",
            ),
            (),
        ),
        (Planted("mask.nii", _nifti(MASK, datatype=2)), ()),
        (Planted("mask_labelled.nii", _nifti_field(148, "label map v1")), metadata),
        (Planted("aggregate.csv", b"site,n,mean_age\nA,120,63.4\nB,95,61.2\n"), ()),
        (
            Planted(
                "methods.md",
                b"## Methods\n\nOf 350 patients screened, 330 were enrolled. Of these, 120 were women. "
                b"Images were resampled to 1 mm.\n",
            ),
            (),
        ),
        (Planted("methods_two.txt", b"350 patients were screened. Of these, 330 were enrolled.\n"), ()),
        (Planted("of_these_slices.txt", b"35 slices were screened. Of these, 33 were kept.\n"), ()),
        # the new rules' look-alikes
        (
            Planted(
                "deid_note.md",
                b"Dates were shifted by a random offset of up to 30 days per patient; "
                b"data collected 2003-06-01 to 2004-12-31.\n",
            ),
            (),
        ),
        (
            Planted(
                "shift_augment.txt", b"Intensities shifted by +30 HU in augmentation (atlas of 2004-01-01).\n"
            ),
            (),
        ),
        (Planted("day_of_training.txt", b"Training finished on day 19 of 30.\n"), ()),
        (Planted("scan_window.txt", b"Scans were read between 1 March and 30 June.\n"), ()),
        (Planted("frozen.txt", b"Data frozen on 19 January; analysis plan v2.\n"), ()),
        (
            Planted("summary_long.csv", b"variable,level,n\nsex,F,120\nsex,M,95\nsite,A,110\nsite,B,105\n"),
            (),
        ),
        (
            Planted(
                "metrics_long.csv",
                b"model,metric,value\nunet,dice,0.91\nunet,hd95,3.2\nnnunet,dice,0.93\nnnunet,hd95,2.9\n",
            ),
            (),
        ),
        (Planted("label_lookup.csv", b"label,name\n0,background\n1,liver\n2,tumour\n"), ()),
        (
            Planted(
                "report_large.txt",
                REPORT.replace(b"       25\n", b"      250\n").replace(b"   3\n", b" 130\n"),
            ),
            (),
        ),
        (Planted("confusion_large.txt", b"confusion matrix:\n[[250  30]\n [ 20 300]]\n"), ()),
        (Planted("normalised.txt", b"confusion matrix (normalised):\n[[0.89 0.11]\n [0.06 0.94]]\n"), ()),
        (Planted("layers.txt", b"channels: [32, 64, 128]\nkernel: [3, 3, 3]\n"), ()),
        (
            Planted(
                "oldest_scanner.txt",
                b"The oldest scanner was 12 years old; patients 90 or older were grouped.\n",
            ),
            (),
        ),
        (
            Planted(
                "flow_far_files.csv",
                b"stage,n\nenrolled,330\n",
                (),
                (("screened.csv", b"stage,n\nscreened,350\n"),),
            ),
            (),
        ),
    ]


def known_limits() -> list[Planted]:
    """Variants that still pass after this round."""
    keyed = hmac.new(b"project-key", b"ZQX-0003", "sha256").hexdigest()
    return [
        # a keyed hash (HMAC) or a salted one is no digest of the ID alone
        Planted("hmac_keys.csv", f"key,dice\n{keyed},0.91\n".encode(), HASHED),
        # an identifier split across two <text> elements placed side by side
        Planted("split_text.svg", SVG + b'<text x="0">ZQ</text><text x="14">X-0003</text></svg>\n', MARKUP),
        # the flow across two sentences with no words that tie them
        Planted("flow_apart.txt", b"35 patients were screened. 33 were enrolled.\n", FLOW),
        # a breakdown whose sum is a few short of a total another file states (2 of unknown sex)
        Planted("by_sex.csv", b"sex,n\nF,18\nM,13\n", REQUEST, (("cohort.csv", b"group,n\nall,33\n"),)),
    ]

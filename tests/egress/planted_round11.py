"""Round 11 of the planted-leak run (leaks15): differencing against the project's earlier
release (`planted_round9.EARLIER`: 100 patients, 12 relapsed, sites A 45, B 52, C 30, arms
control/treated 50/50, 17 excluded) by subgroups, shares, ``N = 99``, numbers in words and
captions; small cells in other shapes (long format, nested JSON, a notebook's Markdown output,
LaTeX, thousands separators, suppressed cells recoverable from margins); dates and identifiers
inside workbook comments and sheet names, PNG text chunks, JPEG EXIF, NIfTI header fields and
archives inside archives. `benign()` holds realistic outputs of the same shapes;
`known_limits()` what still passes after this round (docs/egress-checks.md).
"""

from __future__ import annotations

import io
import json
import tarfile

from PIL import Image

from tests.egress.planted_corpus import BIRTH, NAME, PATIENT_ID, STUDY, Planted
from tests.egress.planted_round8 import _code_cell, _notebook
from tests.egress.planted_round10 import _jpeg, _nifti_field, _png, _zip

RELEASES = ("sdc:differencing_releases",)
SDC = ("sdc:threshold", "sdc:subcount", "sdc:differencing", "sdc:suppression")
META = ("image_metadata_identifiers", "identifiers", "dates")
IDS = ("identifiers", "dates", "file_name")
SPOKEN = NAME.replace("^", " ").title()  # "Doe Jane"
ISO_BIRTH = f"{BIRTH[:4]}-{BIRTH[4:6]}-{BIRTH[6:]}"
EXIF_STUDY = f"{STUDY[:4]}:{STUDY[4:6]}:{STUDY[6:]} 09:30:00"


# ----------------------------------------------------------------------------- builders


def _markdown_output(markdown: str) -> dict[str, object]:
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {"text/markdown": markdown, "text/plain": "<IPython.core.display.Markdown object>"},
    }


def _workbook(comment: str | None = None, title: str = "Results") -> bytes:
    import openpyxl
    from openpyxl.comments import Comment

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = title
    ws.append(["site", "n"])
    ws.append(["A", 45])
    if comment is not None:
        ws["B2"].comment = Comment(comment, "analyst")
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _exif_jpeg(tag: int, value: str | bytes, ifd: int | None = 0x8769) -> bytes:
    exif = Image.Exif()
    if ifd is None:
        exif[tag] = value
    else:
        exif.get_ifd(ifd)[tag] = value
    return _jpeg(exif=exif)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _svg_caption(title: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="200" '
        f'height="120"><title>{title}</title><path d="M0 0 L200 120" stroke="black"/></svg>\n'
    ).encode()


# ----------------------------------------------------------------------------- the corpus


def leaks() -> list[Planted]:
    return [
        # -------------------------------------------- differencing against the earlier release
        # the total released once (100), the subgroups now: 51 + 48 = 99
        Planted("arms_today.csv", b"arm,patients\nexperimental,51\nstandard,48\n", RELEASES),
        Planted("arms_today.json", json.dumps({"by_arm": {"control": 49, "treated": 50}}).encode(), RELEASES),
        Planted("sites_today.json", json.dumps({"by_site": {"A": 45, "B": 51, "C": 30}}).encode(), RELEASES),
        Planted(
            "arm_today.md", b"| Arm | Patients |\n|---|---|\n| control | 49 |\n| treated | 49 |\n", RELEASES
        ),
        # the total in prose as N = 99
        Planted("abstract.txt", b"Patients (N = 99) were followed for a median of 24 months.\n", RELEASES),
        Planted("abstract_n.md", b"# Abstract\n\nN=99; median follow-up 24 months.\n", RELEASES),
        Planted("cohort_n.txt", b"The study cohort (n = 99) was followed for 24 months.\n", RELEASES),
        # the total in words
        Planted("words.txt", b"Ninety-nine patients were included in the analysis.\n", RELEASES),
        Planted("words_total.md", b"A total of ninety nine patients were analysed.\n", RELEASES),
        # the total in a figure's caption
        Planted("km.svg", _svg_caption("Overall survival (N = 99)"), RELEASES),
        Planted("figure.md", b"![Overall survival of all 99 patients](km.png)\n", RELEASES),
        Planted(
            "figure.tex",
            b"\\begin{figure}\\includegraphics{km}\\caption{Overall survival, N = 99}\\end{figure}\n",
            RELEASES,
        ),
        # -------------------------------------------------------- small cells in other shapes
        Planted(
            "crosstab_long.csv",
            b"row,column,value\nA,relapsed,14\nA,remission,31\nB,relapsed,3\nB,remission,49\n",
            SDC,
        ),
        Planted(
            "nested.json", json.dumps({"site": {"A": {"relapsed": 14}, "B": {"relapsed": 3}}}).encode(), SDC
        ),
        Planted(
            "notebook_markdown.ipynb",
            _notebook(
                _code_cell(
                    "display(Markdown(table))",
                    [_markdown_output("| site | relapsed |\n|---|---|\n| A | 14 |\n| B | 3 |\n")],
                )
            ),
            SDC,
        ),
        Planted(
            "table.tex",
            b"\\begin{tabular}{lrr}\n\\hline\nSite & Relapsed & Remission \\\\\n\\hline\n"
            b"A & 14 & 31 \\\\\nB & 3 & 49 \\\\\n\\hline\n\\end{tabular}\n",
            SDC,
        ),
        Planted("thousands.csv", b'site,patients\nA,"1,204"\nB,3\n', SDC),
        Planted("thousands_space.txt", b"site   patients\nA      1 204\nB          3\n", SDC),
        # a suppressed cell recoverable from the margins
        Planted("suppressed_row.csv", b"site,relapsed,remission,total\nA,<5,40,43\nB,14,31,45\n", SDC),
        Planted(
            "suppressed_column.csv",
            b"site,relapsed\nA,*\nB,14\nC,12\nTotal,29\n",
            SDC,
        ),
        Planted(
            "suppressed_c.csv",
            b"site,relapsed,remission,total\nA,[c],40,43\nB,14,31,45\nTotal,17,71,88\n",
            SDC,
        ),
        Planted(
            "suppressed.md",
            b"| site | relapsed | remission | total |\n|---|---|---|---|\n"
            b"| A | <10 | 40 | 44 |\n| B | 14 | 31 | 45 |\n",
            SDC,
        ),
        Planted("suppressed_n_lt.csv", b"site,relapsed,remission,total\nA,n<10,40,46\nB,14,31,45\n", SDC),
        # pandas' melt of a crosstab: "variable" and "value"
        Planted("melted.csv", b"site,variable,value\nA,relapsed,14\nB,relapsed,3\nB,died,2\n", SDC),
        # -------------------------------------------------- dates and identifiers inside files
        Planted("comment.xlsx", _workbook(comment=f"checked against {PATIENT_ID}"), IDS),
        Planted("comment_dob.xlsx", _workbook(comment=f"DOB {ISO_BIRTH}"), IDS),
        Planted("sheet_name.xlsx", _workbook(title=PATIENT_ID), IDS),
        Planted("sheet_date.xlsx", _workbook(title=f"scan {STUDY}"), IDS),
        Planted("text_birth.png", _png(Description=("text", f"born {ISO_BIRTH}")), META),
        Planted("itxt_name.png", _png(Title=("itxt", SPOKEN)), META),
        Planted("exif_date.jpg", _exif_jpeg(0x9003, EXIF_STUDY), META),
        Planted("exif_xpcomment.jpg", _exif_jpeg(0x9C9C, PATIENT_ID.encode("utf-16-le"), ifd=None), META),
        Planted("exif_usercomment.jpg", _exif_jpeg(0x9286, b"ASCII\x00\x00\x00" + NAME.encode()), META),
        Planted("descrip_birth.nii", _nifti_field(148, 80, f"DOB {ISO_BIRTH}"), META),
        Planted("descrip_name.nii", _nifti_field(148, 80, SPOKEN), META),
        Planted("aux_date.nii", _nifti_field(228, 24, STUDY), META),
        Planted(
            "nested_ids.zip",
            _zip({"inner.zip": _zip({"notes.txt": f"subject {PATIENT_ID}\n".encode()})}),
            ("member:",),
        ),
        Planted(
            "zip_in_tar.tar.gz",
            _tar_gz({"out/inner.zip": _zip({"dob.txt": f"born {ISO_BIRTH}\n".encode()})}),
            ("member:",),
        ),
    ]


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    return [
        # a breakdown by a dimension released whole, summing to the released total
        (Planted("arms_same.csv", b"arm,patients\nexperimental,50\nstandard,50\n"), ()),
        (Planted("arms_grown.csv", b"arm,patients\nexperimental,71\nstandard,69\n"), ()),
        # a share of the released total (12 of 100), and metrics with decimals
        (Planted("excluded_same.csv", b"cohort,withdrawn_pct\nall,17.0\n"), ()),
        (Planted("dice.csv", b"model,dice_pct,sensitivity_pct\nunet,87.5,91.7\n"), ()),
        (Planted("abstract_grown.txt", b"Patients (N = 140) were followed for a median of 24 months.\n"), ()),
        (Planted("site_n.txt", b"At site A (n = 45) the median follow-up was 24 months.\n"), ()),
        (Planted("words_same.txt", b"One hundred patients were included in the analysis.\n"), ()),
        (Planted("km_grown.svg", _svg_caption("Overall survival (N = 140)")), ()),
        # a crosstab with its row and column totals and no small cell
        (
            Planted(
                "totals.csv",
                b"site,relapsed,remission,total\nA,25,30,55\nB,20,40,60\nTotal,45,70,115\n",
            ),
            (),
        ),
        # a long table of measurements: "value" is not a count there
        (Planted("melted_measures.csv", b"site,variable,value\nA,age_median,61\nB,age_median,58\n"), ()),
        (Planted("big_numbers.txt", b"site   voxels\nA      1 204 311\nB      2 310 007\n"), ()),
        (
            Planted(
                "nested_large.json",
                json.dumps({"site": {"A": {"relapsed": 40}, "B": {"relapsed": 35}}}).encode(),
            ),
            (),
        ),
        (
            Planted(
                "table_large.tex",
                b"\\begin{tabular}{lrr}\nSite & Relapsed & Remission \\\\\n"
                b"A & 40 & 60 \\\\\nB & 35 & 65 \\\\\n\\end{tabular}\n",
            ),
            (),
        ),
        (Planted("thousands_large.csv", b'site,patients\nA,"1,204"\nB,"2,310"\n'), ()),
        (Planted("comment_plain.xlsx", _workbook(comment="checked by the analyst")), ("xlsx_parts",)),
        (Planted("sheet_plain.xlsx", _workbook(title="Summary 2024")), ()),
        # text metadata is flagged for the reviewers by design (invisible in viewers)
        (
            Planted(
                "title.png", _png(Software=("text", "matplotlib 3.8"), Title=("itxt", "Overall survival"))
            ),
            ("image_metadata",),
        ),
        (Planted("exif_other_date.jpg", _exif_jpeg(0x9003, "2024:06:01 10:00:00")), ("image_metadata",)),
        (
            Planted("descrip_plain.nii", _nifti_field(148, 80, "tumour mask v2 (nnU-Net)")),
            ("image_metadata",),
        ),
        # an archive inside an archive is flagged by the round's policy, by design
        (
            Planted(
                "nested_plain.zip", _zip({"inner.zip": _zip({"notes.txt": b"model trained for 50 epochs\n"})})
            ),
            ("file_type", "member:file_type"),
        ),
    ]


def known_limits() -> list[Planted]:
    """Variants that still pass after this round."""
    return [
        # a share of a total whose count was never released: 11.1 % is 11 of 99, but also 10 of
        # 90 and 12 of 108; a one-decimal share fits a whole count of nearly every total near
        # the released one, so a shrunk cohort cannot be told from a grown one without its count
        Planted("excluded_share.csv", b"cohort,withdrawn_pct\nall,11.1\n", RELEASES),
        Planted("excluded_share.json", json.dumps({"withdrawn_percent": 33.3}).encode(), RELEASES),
    ]

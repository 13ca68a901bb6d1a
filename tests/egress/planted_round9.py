"""Round 9 of the planted-leak run (leaks13): differencing across releases, figures, PDF.

Leaks are written against the fictional patient of `tests.egress.planted_corpus` and small
counts, in shapes round 8 left open: counts a few off those the project released before
(`EARLIER`, extracted and marked released as the workflow does), counts drawn in raster
figures (a bar's label, a legend's ``n=3``, a category's ``B (n=3)``) and bars drawn without
labels, and PDF reports (their text layer, metadata, pictures, encryption, attachments,
scripts). `benign()` holds realistic outputs of the same shapes; `known_limits()` what still
passes after this round (docs/egress-checks.md).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from egress_review.checks.released import Released, extract_aggregates
from tests.egress.planted_corpus import BIRTH, NAME, PATIENT_ID, Planted
from tre.policy import Policy

RELEASES = ("sdc:differencing_releases",)
FIGURE = ("sdc:figure",)
BARS = ("figure:bars",)
IDS = ("identifiers", "ocr:identifiers", "dates")
SDC = ("sdc:",)
PDF = ("pdf",)
EARLIER_REQUEST = "5f0c1e2d3b4a59687766554433221100"

# what the project released last week (request EARLIER_REQUEST)
EARLIER = {
    "total.csv": b"cohort,patients\nall,100\n",
    "by_site.csv": b"site,n\nA,45\nB,52\nC,30\n",
    "summary.json": json.dumps(
        {"patients": 100, "relapsed": 12, "by_arm": {"control": 50, "treated": 50}}
    ).encode(),
    "cohort.yaml": b"patients: 100\nexcluded: 17\n",
}


def released(tmp: Path, policy: Policy) -> dict[str, list[Released]]:
    """The aggregates of `EARLIER` as the workflow stores them once the DAC released them."""
    out: dict[str, list[Released]] = {}
    for name, data in EARLIER.items():
        path = tmp / name
        path.write_bytes(data)
        for key, value in extract_aggregates(path, name, policy).items():
            out.setdefault(key, []).append(Released(value, EARLIER_REQUEST))
    return out


# ----------------------------------------------------------------------------- builders


def _plot(draw: Callable[[object], object], fmt: str = "png", size: tuple[float, float] = (4, 4)) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    draw(ax)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=80, **({"metadata": {"CreationDate": None}} if fmt == "pdf" else {}))
    plt.close(fig)
    return buf.getvalue()


def _labelled_bars(
    values: list[int], labels: tuple[str, ...] = ("A", "B", "C")
) -> Callable[[object], object]:
    def draw(ax: object) -> None:
        ax.bar_label(ax.bar(list(labels), values))  # type: ignore[attr-defined]

    return draw


def _text_pdf(lines: list[str], **meta: str) -> bytes:
    """A one-page report whose text layer holds ``lines`` (matplotlib's PDF backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(8.27, 11.69))
    for i, line in enumerate(lines):
        fig.text(0.08, 0.95 - i * 0.03, line, family="monospace", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf", metadata={"CreationDate": None, **meta})
    plt.close(fig)
    return buf.getvalue()


def _image_pdf(png: bytes) -> bytes:
    """A picture saved as a PDF page (a scan, or a chart pasted as an image)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(buf, format="PDF", resolution=80)
    return buf.getvalue()


def _name_png() -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (640, 240), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=28)
    draw.text((20, 60), f"Patient {NAME.replace('^', ' ')}", fill="black", font=font)
    draw.text((20, 120), f"ID {PATIENT_ID}", fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _writer_pdf(change: Callable[[object], None]) -> bytes:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=io.BytesIO(_text_pdf(["Dice 0.87 on the test set."])))
    change(writer)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def _open_action(writer: object) -> None:
    """A script run when the document opens (an /OpenAction of type JavaScript)."""
    from pypdf.generic import DictionaryObject, NameObject, TextStringObject

    action = DictionaryObject(
        {NameObject("/S"): NameObject("/JavaScript"), NameObject("/JS"): TextStringObject("app.alert('x');")}
    )
    writer._root_object[NameObject("/OpenAction")] = action  # type: ignore[attr-defined]


def _jpeg(png: bytes) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _legend(ax: object) -> None:
    x = np.linspace(0, 1, 20)
    ax.plot(x, x**0.5, label="relapsed (n=3)")  # type: ignore[attr-defined]
    ax.plot(x, x**2, label="remission (n=117)")  # type: ignore[attr-defined]
    ax.legend()  # type: ignore[attr-defined]


def _hbar(ax: object) -> None:
    ax.bar_label(ax.barh(["A", "B", "C"], [45, 3, 52]))  # type: ignore[attr-defined]


def _category_counts(ax: object) -> None:
    ax.bar(["A (n=45)", "B (n=3)", "C (n=52)"], [0.91, 0.88, 0.93])  # type: ignore[attr-defined]


def _histogram(ax: object) -> None:
    ax.hist(np.random.default_rng(3).normal(60, 8, 40), bins=6)  # type: ignore[attr-defined]


def _annotated_scatter(ax: object) -> None:
    rng = np.random.default_rng(4)
    ax.scatter(rng.uniform(0, 1, 30), rng.uniform(0, 1, 30))  # type: ignore[attr-defined]
    ax.text(0.45, 0.5, "2", fontsize=12)  # type: ignore[attr-defined]


def _pie(ax: object) -> None:
    ax.pie([45, 3, 52], labels=["A: 45", "B: 3", "C: 52"])  # type: ignore[attr-defined]


def _roc(ax: object) -> None:
    fpr = np.linspace(0, 1, 50)
    ax.plot(fpr, fpr**0.3, label="AUC = 0.87")  # type: ignore[attr-defined]
    ax.plot([0, 1], [0, 1], "--")  # type: ignore[attr-defined]
    ax.set_xlabel("False positive rate")  # type: ignore[attr-defined]
    ax.set_ylabel("True positive rate")  # type: ignore[attr-defined]
    ax.legend()  # type: ignore[attr-defined]


def _loss(ax: object) -> None:
    epochs = np.arange(1, 51)
    ax.plot(epochs, np.exp(-epochs / 12), label="train")  # type: ignore[attr-defined]
    ax.plot(epochs, np.exp(-epochs / 15) + 0.05, label="validation")  # type: ignore[attr-defined]
    ax.set_xlabel("epoch")  # type: ignore[attr-defined]
    ax.set_ylabel("loss")  # type: ignore[attr-defined]
    ax.legend()  # type: ignore[attr-defined]


def _scatter(ax: object) -> None:
    rng = np.random.default_rng(5)
    ax.scatter(rng.normal(0, 1, 200), rng.normal(0, 1, 200), s=4)  # type: ignore[attr-defined]
    ax.set_xlabel("volume z-score")  # type: ignore[attr-defined]


def _big_legend(ax: object) -> None:
    x = np.linspace(0, 1, 20)
    ax.plot(x, x**0.5, label="site A (n=212)")  # type: ignore[attr-defined]
    ax.plot(x, x**2, label="site B (n=187)")  # type: ignore[attr-defined]
    ax.legend()  # type: ignore[attr-defined]


def _heatmap(ax: object) -> None:
    ax.imshow(np.random.default_rng(6).random((8, 8)), cmap="viridis")  # type: ignore[attr-defined]


def _boxplot(ax: object) -> None:
    rng = np.random.default_rng(7)
    ax.boxplot([rng.normal(0.85, 0.05, 60), rng.normal(0.8, 0.06, 60)])  # type: ignore[attr-defined]
    ax.set_ylabel("Dice")  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- the corpus


def leaks() -> list[Planted]:
    return [
        # ---------------------------------------------------- differencing across releases
        Planted("total_today.csv", b"cohort,patients\nall,99\n", RELEASES),
        Planted("one_column.csv", b"Patients\n98\n", RELEASES),
        Planted("grand_total.csv", b"site,patients\nA,45\nB,26\nC,30\nGrand total,101\n", RELEASES),
        Planted("sites_today.tsv", b"site\tn\nA\t45\nB\t53\nC\t30\n", RELEASES),
        Planted("sites_semicolon.csv", b"site;n\nA;45\nB;51\nC;30\n", RELEASES),
        Planted("sites_case.csv", b"Site,N\na,45\nb,52\nc,28\n", RELEASES),
        Planted("summary_today.json", json.dumps({"patients": 99, "relapsed": 12}).encode(), RELEASES),
        Planted("arms.json", json.dumps({"by_arm": {"control": 49, "treated": 50}}).encode(), RELEASES),
        Planted("cohort_today.yaml", b"patients: 100\nexcluded: 15\n", RELEASES),
        Planted("relapse_update.json", json.dumps({"relapsed": 14, "auc": 0.87}).encode(), RELEASES),
        # ------------------------------------------------------------ counts drawn in figures
        Planted("bars_labelled.png", _plot(_labelled_bars([45, 3, 52])), FIGURE),
        Planted("bars_two.png", _plot(_labelled_bars([60, 4], ("control", "treated"))), FIGURE),
        Planted("bars_labelled.jpg", _jpeg(_plot(_labelled_bars([45, 3, 52]))), FIGURE),
        Planted("legend_n.png", _plot(_legend), FIGURE),
        Planted("hbar_labelled.png", _plot(_hbar), FIGURE),
        Planted("category_counts.png", _plot(_category_counts), FIGURE),
        Planted("annotated_point.png", _plot(_annotated_scatter), FIGURE),
        Planted("pie_counts.png", _plot(_pie), FIGURE),
        Planted("bars_unlabelled.png", _plot(lambda ax: ax.bar(["A", "B", "C"], [45, 3, 52])), BARS),  # type: ignore[attr-defined]
        Planted("histogram.png", _plot(_histogram), BARS),
        Planted("bars_grey.png", _plot(lambda ax: ax.bar(["A", "B"], [40, 2], color="0.5")), BARS),  # type: ignore[attr-defined]
        # ------------------------------------------------------------------------------ PDF
        Planted("report_name.pdf", _text_pdf([f"Case review: {NAME}", f"MRN {PATIENT_ID}"]), IDS),
        Planted("report_count.pdf", _text_pdf(["Site B (n=3) relapsed within a year."]), SDC),
        Planted(
            "report_table.pdf",
            _text_pdf(["site    patients", "A             45", "B              3", "C             52"]),
            SDC,
        ),
        Planted(
            "report_birth.pdf",
            _text_pdf([f"Born {BIRTH[:4]}-{BIRTH[4:6]}-{BIRTH[6:]}, scanned in 2019."]),
            IDS,
        ),
        Planted("report_author.pdf", _text_pdf(["Results"], Author=NAME.replace("^", " ")), IDS),
        Planted("scan.pdf", _image_pdf(_name_png()), IDS),
        Planted("chart_pasted.pdf", _image_pdf(_plot(_labelled_bars([45, 3, 52]))), FIGURE),
        Planted("encrypted.pdf", _writer_pdf(lambda w: w.encrypt("s3cret", algorithm="AES-128")), PDF),  # type: ignore[attr-defined]
        Planted(
            "attachment.pdf",
            _writer_pdf(lambda w: w.add_attachment("cells.csv", b"site,n\nB,3\n")),  # type: ignore[attr-defined]
            PDF,
        ),
        Planted("script.pdf", _writer_pdf(_open_action), PDF),
        Planted(
            "broken.pdf",
            b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R\n" + b"\x00" * 64,
            PDF + ("structure",),
        ),
    ]


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    return [
        # the same counts again, and counts far from the released ones
        (Planted("total_again.csv", b"cohort,patients\nall,100\n"), ()),
        (Planted("total_grown.csv", b"cohort,patients\nall,140\n"), ()),
        (Planted("sites_grown.csv", b"site,n\nA,61\nB,80\nC,47\n"), ()),
        (Planted("metrics.json", json.dumps({"auc": 0.87, "epochs": 50, "dice": 0.91}).encode()), ()),
        (Planted("new_site.csv", b"site,n\nD,64\nE,71\n"), ()),
        (
            # the same counts again; 12 is under the rounding base, flagged by the rounding rule
            Planted("summary_same.json", json.dumps({"patients": 100, "relapsed": 12}).encode()),
            ("sdc:rounding",),
        ),
        # figures
        (Planted("roc.png", _plot(_roc)), ()),
        (Planted("loss.png", _plot(_loss)), ()),
        (Planted("scatter.png", _plot(_scatter)), ()),
        (Planted("legend_large.png", _plot(_big_legend)), ()),
        (Planted("heatmap.png", _plot(_heatmap)), ()),
        (Planted("boxplot.png", _plot(_boxplot)), ()),
        (Planted("loss.jpg", _jpeg(_plot(_loss))), ()),
        (Planted("bars_large.png", _plot(_labelled_bars([120, 135, 128]))), BARS),
        (Planted("wide_roc.png", _plot(_roc, size=(7, 3))), ()),
        # PDF reports
        (
            Planted(
                "report.pdf", _text_pdf(["Dice 0.87 (0.84-0.90) on the held-out test set of 212 patients."])
            ),
            (),
        ),
        (
            Planted(
                "report_table_large.pdf",
                _text_pdf(["site    patients", "A             45", "B             52", "C             61"]),
            ),
            (),
        ),
        (Planted("roc.pdf", _image_pdf(_plot(_roc))), ()),
        (Planted("loss_vector.pdf", _plot(_loss, fmt="pdf")), ()),
        (
            Planted("methods.pdf", _text_pdf(["Methods", "A 3D U-Net was trained for 50 epochs with Adam."])),
            (),
        ),
        (Planted("roc_vector.pdf", _plot(_roc, fmt="pdf")), ()),
    ]


def known_limits() -> list[Planted]:
    """Variants that still pass (or are only flagged for something else) after this round."""
    return [
        # a vector bar chart in a PDF: its bars are drawing operators, not pixels or labels
        Planted("bars_vector.pdf", _plot(lambda ax: ax.bar(["A", "B", "C"], [45, 3, 52]), fmt="pdf"), BARS),  # type: ignore[attr-defined]
        # (a count released last week as a percentage today is caught since leaks14b: round 10b)
    ]

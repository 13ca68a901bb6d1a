"""Round 7 of the planted-leak run (leaks11): the airlock's known limits and new table shapes.

Leaks are written against the fictional patient of `tests.egress.planted_corpus`
(``DOE^JANE``, ``HOSP-77-1234``, born 1962-03-15, studied 2019-04-12) and small counts, in
shapes the earlier rounds did not try: reStructuredText, AsciiDoc and org tables, HTML tables
with rowspan/colspan, LaTeX ``\\multicolumn``, spreadsheet CSVs with thousands separators
and footnote markers, histogram bin counts, confusion matrices, survival tables (number at
risk), counts in YAML lists, unlabelled counts (``relapsed=3``), several suppressed cells
that a table's margins give back together, dates of birth as epoch seconds or Excel serial
days, and one cell suppressed in a file whose total is in another file of the same request.

`known_limits()` holds the variants that still pass (or are only flagged for something
else); the tests assert they stay that way (``xfail(strict=True)``), so fixing one means
updating the docs. `benign()` grows the corpus of realistic research outputs of the same
shapes (each names the checks it flags by design).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from tests.egress.planted_corpus import Planted, _parquet, _xlsx
from tests.egress.planted_round5 import _png_plot

IDS = ("identifiers", "file_name")
SDC = ("sdc:threshold", "sdc:subcount", "sdc:differencing")
PROSE = ("sdc:prose",)

# 1962-03-15 (the patient's birth date) and 2019-04-12 (the study date), as a computer keeps them
BIRTH_EPOCH = -246153600  # seconds since 1970-01-01 UTC
BIRTH_SERIAL = 22720  # Excel's serial day (1900 date system)
STUDY_EPOCH = 1555027200
STUDY_SERIAL = 43567


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def leaks() -> list[Planted]:
    sdc, prose, ids = SDC, PROSE, IDS
    return [
        # ------------------------------------------------------------------ other table markups
        Planted(
            "table_grid.rst",
            b"Results\n=======\n\n+--------+-----+\n| site   | n   |\n+========+=====+\n| A      | 45  |\n"
            b"+--------+-----+\n| B      | 3   |\n+--------+-----+\n",
            sdc,
        ),
        Planted(
            "table_grid_multiline.rst",
            b"+------+-------+\n| site | cases |\n+======+=======+\n| A    | 45    |\n| (UK) |       |\n"
            b"+------+-------+\n| B    | 3     |\n+------+-------+\n",
            sdc,
        ),
        Planted(
            "table_simple.rst",
            b"======  =====\nsite    n\n======  =====\nA       45\nB       3\n======  =====\n",
            sdc,
        ),
        Planted(
            "table_list.rst",
            b".. list-table:: Cases\n   :header-rows: 1\n\n   * - site\n     - n\n   * - A\n     - 45\n"
            b"   * - B\n     - 3\n",
            sdc,
        ),
        Planted(
            "table.adoc",
            b'[options="header"]\n|===\n|site |n\n|A |45\n|B |3\n|===\n',
            sdc,
        ),
        Planted(
            "table_cells.adoc",
            b"|===\n|site\n|n\n\n|A\n|45\n\n|B\n|3\n|===\n",
            sdc,
        ),
        Planted(
            "table_norule.org",
            b"#+NAME: counts\n| site | n  |\n| A    | 45 |\n| B    | 3  |\n",
            sdc,
        ),
        Planted(
            "rowspan.html",
            b"<table><tr><th rowspan='2'>site</th><th colspan='2'>patients</th></tr>"
            b"<tr><th>male</th><th>female</th></tr>"
            b"<tr><td>A</td><td>40</td><td>38</td></tr><tr><td>B</td><td>35</td><td>3</td></tr></table>\n",
            sdc,
        ),
        Planted(
            "rowspan_body.html",
            b"<table><tr><th>site</th><th>sex</th><th>n</th></tr>"
            b"<tr><td rowspan='2'>A</td><td>male</td><td>40</td></tr><tr><td>female</td><td>3</td></tr>"
            b"</table>\n",
            sdc,
        ),
        Planted(
            "multicolumn.tex",
            b"\\begin{tabular}{lrr}\n\\toprule\n & \\multicolumn{2}{c}{Patients} \\\\\n"
            b"\\cmidrule(lr){2-3}\nSite & Male & Female \\\\\n\\midrule\nA & 40 & 38 \\\\\nB & 35 & 3 \\\\\n"
            b"\\bottomrule\n\\end{tabular}\n",
            sdc,
        ),
        Planted(
            "longtable.tex",
            b"\\begin{longtable}{lr}\nSite & n \\\\\n\\hline\n\\endhead\n"
            b"A & 45 \\\\\nB & 3 \\\\\n\\end{longtable}\n",
            sdc,
        ),
        # ------------------------------------------------------------------ spreadsheet exports
        Planted("thousands.csv", b'site,n\nA,"1,234"\nB,"2,310"\nC,3\n', sdc),
        Planted("footnote_star.csv", b"site,n\nA,45\nB,3*\nC,52\n", sdc),
        Planted("footnote_dagger.csv", "site,n\nA,45\nB,3\u2020\nC,52\n".encode(), sdc),
        Planted("footnote_letter.csv", b"site,n\nA,45\nB,3a\nC,52\n", sdc),
        Planted("excel_semicolon.csv", b"sep=;\nsite;n\nA;1.234\nB;3\n", sdc),
        Planted("bom.csv", b"\xef\xbb\xbfsite,n\r\nA,45\r\nB,3\r\n", sdc),
        # ------------------------------------------------------------------ histograms, confusion, survival
        Planted(
            "histogram.json",
            json.dumps({"bin_edges": [0, 10, 20, 30, 40], "counts": [120, 45, 3, 17]}).encode(),
            sdc,
        ),
        Planted(
            "histogram_hist.json",
            json.dumps({"age_histogram": {"hist": [120, 45, 3, 17], "bins": [40, 50, 60, 70, 80]}}).encode(),
            sdc,
        ),
        Planted(
            "histogram.npz",
            _npz(counts=np.array([120, 45, 3, 17]), bin_edges=np.array([40.0, 50, 60, 70, 80])),
            sdc,
        ),
        Planted(
            "confusion_small.csv", b"actual,pred_benign,pred_malignant\nbenign,412,3\nmalignant,27,223\n", sdc
        ),
        Planted("confusion_labels.csv", b",benign,malignant\nbenign,412,3\nmalignant,27,223\n", sdc),
        Planted(
            "class_counts.json",
            json.dumps({"bin_counts": [120, 45, 3], "labels": ["a", "b", "c"]}).encode(),
            sdc,
        ),
        Planted(
            "confusion_small.json",
            json.dumps(
                {"labels": ["benign", "malignant"], "confusion_matrix": [[412, 3], [27, 223]]}
            ).encode(),
            sdc,
        ),
        Planted(
            "confusion.md",
            b"|            | pred benign | pred malignant |\n|---|---|---|\n| benign | 412 | 3 |\n"
            b"| malignant | 27 | 223 |\n",
            sdc,
        ),
        Planted(
            "at_risk.csv",
            b"time_months,at_risk,events,censored\n0,120,0,0\n12,88,20,12\n24,41,30,17\n36,4,2,35\n",
            sdc,
        ),
        Planted(
            "km_risk_table.txt",
            b"Number at risk\nTreatment   120   88   41    4\nControl     118   80   35    3\n"
            b"Months        0   12   24   36\n",
            sdc,
        ),
        Planted(
            "lifelines_table.txt",
            b"          removed  observed  censored  entrance  at_risk\nevent_at\n"
            b"0.0             0         0         0       120      120\n"
            b"12.0           32        20        12         0      120\n"
            b"24.0           47        30        17         0       88\n"
            b"36.0           37         2        35         0        4\n",
            sdc,
        ),
        # ------------------------------------------------------------------ YAML lists, unlabelled counts
        Planted("counts_list.yaml", b"sites: [A, B, C]\nn: [45, 3, 52]\n", sdc),
        Planted("counts_pairs.yaml", b"relapses:\n  - [lung, 3]\n  - [liver, 45]\n", sdc),
        Planted("relapsed_kv.txt", b"relapsed=3\nremission=117\n", sdc),
        Planted("died_colon.md", b"- died: 2\n- alive: 118\n", sdc),
        Planted(
            "outcome_json.json", json.dumps({"outcome": {"relapsed": 3, "remission": 117}}).encode(), sdc
        ),
        Planted("relapsed_prose.txt", b"Within a year, 3 relapsed and 117 stayed in remission.\n", prose),
        Planted("withdrew_prose.md", b"Two withdrew before the second scan.\n", prose),
        # ------------------------------------------------------------------ several suppressed cells
        Planted(
            "two_hidden_crosstab.csv",
            b"site,male,female,total\nA,40,*,45\nB,*,*,41\nTotal,75,11,86\n",
            sdc,
        ),
        Planted(
            "two_hidden_column.csv",
            b"site,n\nA,45\nB,<10\nC,<10\nTotal,52\n",
            sdc,
        ),
        # ------------------------------------------------------------------ dates as computers keep them
        Planted("dob_epoch.csv", f"case,dob\nHOSP-XX-0001,{BIRTH_EPOCH}\n".encode(), ids),
        Planted("dob_serial.csv", f"case,date_of_birth\nc1,{BIRTH_SERIAL}\n".encode(), ids),
        Planted("study_epoch.json", json.dumps({"case": "c1", "scan_time": STUDY_EPOCH}).encode(), ids),
        Planted(
            "study_epoch_ms.json", json.dumps({"case": "c1", "acquired_ms": STUDY_EPOCH * 1000}).encode(), ids
        ),
        Planted("dob_serial.xlsx", _xlsx([["case", "dob"], ["c1", BIRTH_SERIAL]]), ids),
        Planted("dob_epoch.txt", f"subject c1 dob_ts={BIRTH_EPOCH}\n".encode(), ids),
        Planted("dob_serial.parquet", _parquet({"case": ["c1"], "birth_date": [BIRTH_SERIAL]}), ids),
    ]


def request_leaks() -> list[tuple[str, list[Planted], tuple[str, ...]]]:
    """(name, the files of one request, checks of which one must fire on some file): a small
    cell suppressed in one file, its total in another file of the same request."""
    return [
        (
            "total_in_other_csv",
            [
                Planted("by_site.csv", b"site,n\nA,45\nB,52\nC,<10\n"),
                Planted("overall.csv", b"cohort,n\nall sites,100\n"),
            ],
            ("sdc:differencing",),
        ),
        (
            "total_in_other_json",
            [
                Planted("by_stage.csv", b"stage,patients\nI,40\nII,38\nIII,*\n"),
                Planted("summary.json", json.dumps({"patients": 81, "auc": 0.91}).encode()),
            ],
            ("sdc:differencing",),
        ),
    ]


def known_limits() -> list[Planted]:
    """Variants that still pass (or are only flagged for something else) after this round.

    Round 8 (leaks12) catches three of round 7's four: a count inside a token
    (``site_A_had_3``, `sdc:prose`), an SVG's bar labels (`sdc:figure`) and an unnamed
    ``histogram.npy`` (named by its file); they are round 8's leaks now
    (`tests/egress/planted_round8.py`). A PNG's drawn labels still pass."""
    return [
        Planted(
            "bars.png",
            _png_plot(lambda ax: (ax.bar(["A", "B", "C"], [45, 3, 52]), ax.bar_label(ax.containers[0]))),
            SDC,
        ),
    ]


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    start = 1796040000  # 2026-11-30 in epoch seconds: a training run's timestamps
    train_log = "".join(
        f"{start + 95 * e} epoch={e} step={e * 120} loss={1 / (e + 1):.4f} val_dice={0.6 + e / 300:.4f} "
        f"lr={1e-3 * 0.97**e:.6f}\n"
        for e in range(1, 80)
    )
    json_log = "".join(
        json.dumps({"time": start + 60 * e, "epoch": e, "train_loss": round(1 / (e + 1), 4), "batch_size": 8})
        + "\n"
        for e in range(1, 40)
    )
    model_card = (
        "---\nlicense: apache-2.0\ntags: [medical-imaging, segmentation]\n---\n\n"
        "# Model card: lung nodule U-Net\n\n"
        "## Training data\n\n480 CT series from 3 sites (212, 187 and 81 series); 120 held out.\n\n"
        "## Training procedure\n\n- epochs: 200\n- batch size: 8\n- learning rate: 1e-4\n- GPUs: 4\n"
        "- random seed: 42\n\n## Evaluation\n\n| split | n | Dice | AUC |\n|---|---|---|---|\n"
        "| internal | 120 | 0.87 | 0.91 |\n| external | 88 | 0.84 | 0.89 |\n\n"
        "## Limitations\n\nNot validated on paediatric scans or contrast phases other than portal venous.\n"
    )
    return [
        (
            Planted(
                "age_histogram.json",
                # the tails folded into the outer bins, as an SDC-safe histogram is made
                json.dumps(
                    {"bin_edges": [18, 50, 60, 70, 80, 99], "counts": [412, 1288, 1530, 640, 130]}
                ).encode(),
            ),
            (),
        ),
        (
            Planted(
                "histogram_large.csv",
                b"bin_low,bin_high,count\n40,50,412\n50,60,1288\n60,70,1530\n70,80,640\n80,90,130\n",
            ),
            (),
        ),
        (
            Planted(
                "confusion_3class.csv",
                b"actual,pred_benign,pred_malignant,pred_indeterminate\nbenign,412,38,21\n"
                b"malignant,27,223,14\nindeterminate,19,16,130\n",
            ),
            ("sdc:rounding",),  # a count table: counts under 20 not rounded to 5 are flagged, as in any
        ),
        (
            Planted(
                "confusion.md",
                b"|            | pred benign | pred malignant |\n|---|---|---|\n| benign | 412 | 38 |\n"
                b"| malignant | 27 | 223 |\n",
            ),
            (),
        ),
        (
            Planted(
                "confusion_matrix.json",
                json.dumps(
                    {"labels": ["benign", "malignant"], "confusion_matrix": [[412, 38], [27, 223]]}
                ).encode(),
            ),
            (),
        ),
        (
            Planted(
                "survival.csv",
                b"time_months,at_risk,events,censored,survival\n0,544,0,0,1.000\n12,488,36,20,0.934\n"
                b"24,401,52,35,0.835\n36,310,48,43,0.735\n",
            ),
            ("sdc:zeros",),  # no event at time 0: ACRO reports zeros (zeros_are_disclosive)
        ),
        (
            Planted(
                "km_risk_table.txt",
                b"Number at risk\nTreatment   272   240   198   150\nControl     272   231   185   140\n"
                b"Months        0    12    24    36\n",
            ),
            (),
        ),
        (Planted("training_epoch_ts.log", train_log.encode()), ()),
        (Planted("training_jsonl.log", json_log.encode()), ()),
        (Planted("MODEL_CARD.md", model_card.encode()), ()),
        (
            Planted(
                "results_grid.rst",
                b"+----------+-----+------+\n| cohort   | n   | AUC  |\n+==========+=====+======+\n"
                b"| internal | 120 | 0.91 |\n+----------+-----+------+\n| external | 88  | 0.87 |\n"
                b"+----------+-----+------+\n",
            ),
            (),
        ),
        (
            Planted(
                "results.adoc",
                b'= Results\n\n[options="header"]\n|===\n|cohort |n |AUC\n|internal |120 |0.91\n'
                b"|external |88 |0.87\n|===\n\nTrained for 200 epochs on 4 GPUs.\n",
            ),
            (),
        ),
        (
            Planted(
                "results_multicolumn.tex",
                b"\\begin{tabular}{lrr}\n & \\multicolumn{2}{c}{Patients} \\\\\nSite & Male & Female \\\\\n"
                b"\\hline\nA & 140 & 138 \\\\\nB & 135 & 131 \\\\\n\\end{tabular}\n",
            ),
            (),
        ),
        (
            Planted(
                "rowspan_large.html",
                b"<table><tr><th rowspan='2'>site</th><th colspan='2'>patients</th></tr>"
                b"<tr><th>male</th><th>female</th></tr>"
                b"<tr><td>A</td><td>140</td><td>138</td></tr><tr><td>B</td><td>135</td><td>131</td></tr></table>\n",
            ),
            (),
        ),
        (Planted("thousands.csv", b'site,n\nA,"1,234"\nB,"2,310"\nC,"1,045"\n'), ()),
        (Planted("confusion_labels.csv", b",benign,malignant\nbenign,412,38\nmalignant,27,223\n"), ()),
        (
            Planted(
                "correlation.csv",
                b",age,diameter_mm,dice\nage,1.0,0.12,-0.05\ndiameter_mm,0.12,1.0,0.31\ndice,-0.05,0.31,1.0\n",
            ),
            (),
        ),
        (
            Planted(
                "predictions.csv",
                b"label,pred_benign,pred_malignant\nbenign,0.91,0.09\nmalignant,0.22,0.78\nbenign,0.64,0.36\n",
            ),
            (),
        ),
        (
            Planted(
                "class_counts.json", json.dumps({"class_counts": {"benign": 450, "malignant": 250}}).encode()
            ),
            (),
        ),
        (Planted("footnotes.csv", "site,n\nA,45*\nB,52\nC,60\u2020\n".encode()), ()),
        (
            Planted(
                "cohort.yaml",
                b"sites: [A, B, C]\nn: [212, 187, 145]\nepochs: [50, 100, 200]\nseeds: [1, 2, 3]\n",
            ),
            (),
        ),
        (
            Planted(
                "timestamps.csv",
                (
                    f"run,started,finished,dice\nr1,{start},{start + 3600},0.87\n"
                    f"r2,{start + 7200},{start + 9000},0.88\n"
                ).encode(),
            ),
            (),
        ),
        (
            Planted(
                "hyperparams.json",
                json.dumps(
                    {"epochs": 200, "seed": 42, "num_workers": 4, "patience": 20, "n_classes": 3}
                ).encode(),
            ),
            (),
        ),
        (
            Planted(
                "two_suppressed_unsolvable.csv",
                b"site,male,female,total\nA,40,38,78\nB,*,*,30\nC,*,*,31\nTotal,71,68,139\n",
            ),
            (),  # four hidden cells, each line with two: one degree of freedom, none determined
        ),
        (
            Planted(
                "km_curve.png",
                _png_plot(lambda ax: ax.step([0, 12, 24, 36], [1.0, 0.93, 0.84, 0.74], where="post")),
            ),
            (),
        ),
        (
            Planted(
                "outcomes.md",
                b"## Outcomes\n\n- relapsed: 48\n- remission: 472\n- died: 31\n",
            ),
            (),
        ),
        (Planted("outcomes_prose.txt", b"At one year 48 relapsed and 472 stayed in remission.\n"), ()),
        (
            Planted(
                "age_histogram.npz",
                _npz(
                    counts=np.array([412, 1288, 1530, 640, 130]),
                    bin_edges=np.array([18.0, 50, 60, 70, 80, 99]),
                ),
            ),
            ("model:release_review",),  # every array file goes to model-release review
        ),
        (
            Planted(
                "predictions.npz",
                _npz(
                    labels=np.array([0, 1, 2, 1, 0, 2, 1, 1]), probs=np.linspace(0, 1, 8).astype(np.float32)
                ),
            ),
            ("model:release_review",),
        ),
        (
            Planted(
                "run_summary.txt", b"started 1796040000, finished 1796047200 (2 h); 200 epochs, 4 GPUs\n"
            ),
            (),
        ),
        (
            Planted("voxels.csv", b"case,voxels,volume_ml,scan_date\nSUBJ-0001,22720,31.2,2026-01-05\n"),
            (),  # 22720 voxels is not the birth date's serial day: the date column holds ISO dates
        ),
    ]


def benign_requests() -> list[tuple[str, list[Planted]]]:
    """Requests of several files whose totals agree without revealing a small cell."""
    return [
        (
            "totals_agree",
            [
                Planted("by_site.csv", b"site,n\nA,212\nB,187\nC,145\n"),
                Planted("overall.csv", b"cohort,n\nall sites,544\n"),
            ],
        ),
        (
            "two_suppressed_and_total",
            [
                Planted("by_site.csv", b"site,n\nA,212\nB,<10\nC,<10\n"),
                Planted("overall.csv", b"cohort,n\nall sites,420\n"),
            ],
        ),
    ]


def write(root: Path) -> None:
    """Write the round to a folder (for running it through a real job by hand)."""
    for planted in leaks():
        (root / planted.name).write_bytes(planted.data)

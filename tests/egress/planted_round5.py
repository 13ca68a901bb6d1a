"""Round 5 of the planted-leak run (redteam9), and a corpus of benign research outputs.

Leaks are written against the fictional patient of `tests.egress.planted_corpus`
(``DOE^JANE``, ``HOSP-77-1234``, ``MRN-0048213``, ``ACC558812``, born 1962-03-15): an
identifier in labelled parts, counts in XML/TOML/INI, a lettered ID's digits alone, a name
given name first. `benign()` is what a real imaging study takes out: aggregate tables, a
matplotlib ROC plot, model weights on synthetic data, per-case Dice with the agreement's
pseudonyms, a training log, a low-resolution NIfTI mask, a README, hyper-parameters. Each
benign file names the checks it is expected to flag by design (a model always goes to
model-release review); any other flag or block is a false alarm.
"""

from __future__ import annotations

import io
import json

import nibabel as nib
import numpy as np

from tests.egress.planted_corpus import Planted

MODEL_REVIEW = ("model:release_review",)


def leaks() -> list[Planted]:
    ids = ("identifiers",)
    sdc = ("sdc:threshold",)
    return [
        Planted("split_mrn.txt", b"Patient record\nMRN part 1: 0048\nMRN part 2: 213\n", ids),
        Planted("split_mrn_inline.txt", b"MRN part 1: 0048, part 2: 213\n", ids),
        Planted("split_pid.txt", b"part one: HOSP-77\npart two: -1234\n", ids),
        Planted("split_pid_words.txt", b"site HOSP, cohort 77, subject 1234\n", ids),
        Planted("split_accession.md", b"accession prefix ACC, number 558812\n", ids),
        Planted("split_birth.txt", b"year 1962\nmonth 03\nday 15\n", ids),
        Planted("split_in_table.csv", b"key,value\nsite,HOSP\ncohort,77\nsubject,1234\n", ids),
        Planted("split_in_table.parquet", _parquet_parts(), ids),
        Planted(
            "split_in_markdown.md",
            b"| field | value |\n|---|---|\n| site | HOSP |\n| cohort | 77 |\n| subject | 1234 |\n",
            ids,
        ),
        Planted("accession_digits.txt", b"code: 558812\n", ids),
        Planted("name_given_first.txt", b"janedoe\n", ids),
        Planted("name_leet.txt", b"greetings D03 J4N3\n", ids),
        # "ASCII smuggling": the name in Unicode tag characters, which render as nothing
        Planted("name_in_tags.txt", ("x" + "".join(chr(0xE0000 + ord(c)) for c in "DOE JANE")).encode(), ids),
        Planted(
            "counts.xml",
            b"<?xml version='1.0'?>\n<table>\n<row><group>lung</group><n>3</n></row>\n"
            b"<row><group>liver</group><n>45</n></row>\n<row><group>kidney</group><n>2</n></row>\n</table>\n",
            sdc,
        ),
        Planted(
            "counts_attributes.xml",
            b"<results><cell group='lung' count='3'/><cell group='liver' count='41'/>"
            b"<cell group='kidney' count='1'/></results>\n",
            sdc,
        ),
        Planted("counts_no_extension", b"<results><r group='a' n='4'/><r group='b' n='40'/></results>", sdc),
        Planted("counts.toml", b"[[row]]\ngroup = 'lung'\nn = 3\n[[row]]\ngroup = 'liver'\nn = 45\n", sdc),
        Planted("counts.ini", b"[lung]\nn = 3\n[liver]\nn = 45\n[kidney]\nn = 2\n", sdc),
        Planted(
            "table1.tex",
            b"\\begin{tabular}{lr}\ngroup & n \\\\\n\\hline\nlung & \\textbf{3} \\\\\nliver & 45 \\\\\n"
            b"kidney & 2 \\\\\n\\end{tabular}\n",
            sdc,
        ),
        # print(df) of a count table: whitespace-aligned, with the DataFrame's index
        Planted("df_print.txt", b"    group   n\n0    lung   3\n1   liver  45\n2  kidney   2\n", sdc),
        Planted("org_table.txt", b"| group | n |\n|-------+---|\n| lung  | 3 |\n| liver | 45 |\n", sdc),
        Planted("commented.csv", b"# Table 1: counts by group\ngroup,n\nlung,3\nliver,45\n", sdc),
        Planted(
            "entities.xml",
            b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "3">]><t><r><g>x</g><n>&a;</n></r></t>',
            ("table_read",),
        ),
    ]


def _parquet_parts() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"field": ["part 1", "part 2"], "value": ["0048", "213"]}), buf)
    return buf.getvalue()


def _png_plot(draw: object) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    draw(ax)  # type: ignore[operator]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _roc(ax: object) -> None:
    fpr = np.linspace(0, 1, 50)
    ax.plot(fpr, fpr**0.3, label="AUC = 0.87")  # type: ignore[attr-defined]
    ax.plot([0, 1], [0, 1], "--")  # type: ignore[attr-defined]
    ax.set_xlabel("False positive rate")  # type: ignore[attr-defined]
    ax.set_ylabel("True positive rate")  # type: ignore[attr-defined]
    ax.set_title("ROC, test set (n = 20)")  # type: ignore[attr-defined]
    ax.legend()  # type: ignore[attr-defined]


def _nifti_bytes(arr: np.ndarray, zooms: list[float]) -> bytes:
    img = nib.Nifti1Image(arr, np.diag([*zooms, 1.0]))
    return img.to_bytes()


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    rng = np.random.default_rng(7)
    dice = "case_id,dice,hausdorff_mm\n" + "".join(
        f"SUBJ-{i:04d},{rng.uniform(0.7, 0.95):.4f},{rng.uniform(2, 15):.2f}\n" for i in range(1, 61)
    )
    lesions = "case_id,lesion_volume_ml,longest_diameter_mm,n_lesions\n" + "".join(
        f"SUBJ-{i:04d},{rng.uniform(0.5, 40):.2f},{rng.uniform(4, 45):.1f},{rng.integers(1, 4)}\n"
        for i in range(1, 31)
    )
    log = "".join(
        f"2026-11-30 12:{e % 60:02d}:00,000 INFO epoch={e} step={e * 100} loss={1 / (e + 1):.5f} "
        f"val_dice={0.5 + e / 500:.4f} lr=1.0e-04\n"
        for e in range(200)
    )
    readme = (
        "# Lung nodule segmentation\n\nA 3D U-Net trained on 120 CT series resampled to 1.5 mm, "
        "windowed to [-1000, 400] HU.\n\n| split | n | mean Dice |\n|---|---|---|\n"
        "| train | 100 | 0.91 |\n| test | 20 | 0.86 |\n"
    )
    table_log = "epoch  train_loss  val_loss  mean_dice  total_time_s\n" + "".join(
        f"{e:5d}  {1 / (e + 1):.4f}  {1.1 / (e + 1):.4f}  {0.5 + e / 100:.4f}  {e * 31.5:.1f}\n"
        for e in range(1, 40)
    )
    report = (
        "              precision    recall  f1-score   support\n\n"
        "    negative       0.91      0.88      0.89       143\n"
        "    positive       0.72      0.78      0.75        57\n\n"
        "    accuracy                           0.85       200\n"
        "   macro avg       0.81      0.83      0.82       200\n"
    )
    mask = np.zeros((48, 48, 24), np.uint8)
    mask[15:30, 18:33, 8:16] = 1
    return [
        (
            Planted(
                "results_table.csv",
                b"cohort,n,median_age,mean_volume_ml,sd_volume_ml,p_value\n"
                b"training,123,64,12.4,5.1,0.031\nvalidation,41,62,11.9,4.8,0.12\ntest,37,65,13.1,5.5,0.08\n",
            ),
            (),
        ),
        (
            Planted(
                "demographics.csv",
                b"characteristic,category,n,percent\nsex,female,62,51.7\nsex,male,58,48.3\n"
                b"age,<50,20,16.7\nage,50-70,70,58.3\nage,>70,30,25.0\n",
            ),
            (),
        ),
        (
            Planted(
                "confusion_matrix.csv",
                b"actual,predicted_positive,predicted_negative\npositive,45,12\nnegative,15,128\n",
            ),
            (),
        ),
        (Planted("roc.png", _png_plot(_roc)), ()),
        (
            Planted(
                "model_weights.npz",
                _npz(
                    conv1=rng.normal(0, 0.1, (16, 1, 3, 3)).astype(np.float32),
                    fc=rng.normal(0, 0.1, (10, 64)).astype(np.float32),
                ),
            ),
            MODEL_REVIEW,
        ),
        (Planted("dice_per_case.csv", dice.encode()), ()),
        (Planted("lesions_per_case.csv", lesions.encode()), ()),
        (Planted("train.log", log.encode()), ()),
        (Planted("mask_lowres.nii.gz", _nifti_bytes(mask, [3.0, 3.0, 5.0])), ()),
        (Planted("README.md", readme.encode()), ()),
        (
            Planted(
                "hyperparameters.json",
                json.dumps(
                    {
                        "lr": 1e-4,
                        "batch_size": 8,
                        "epochs": 200,
                        "seed": 42,
                        "patch_size": [96, 96, 96],
                        "loss": "dice_ce",
                    }
                ).encode(),
            ),
            (),
        ),
        (
            Planted(
                "config.yaml",
                b"model:\n  name: unet3d\n  channels: [16, 32, 64, 128]\ntraining:\n"
                b"  epochs: 200\n  batch_size: 8\n  lr: 0.0001\n",
            ),
            (),
        ),
        (
            Planted(
                "checksums.sha256", b"".join(b"%064x  case_%03d.nii.gz\n" % (i * 7919, i) for i in range(5))
            ),
            (),
        ),
        (
            Planted(
                "metrics.xml",
                b"<metrics><metric name='auc' value='0.87'/><metric name='dice' value='0.86'/></metrics>\n",
            ),
            (),
        ),
        (
            Planted(
                "results.tex",
                b"\\begin{tabular}{lrr}\n\\toprule\nCohort & n & Dice \\\\\n\\midrule\n"
                b"Train & 100 & 0.91 \\\\\nTest & 20 & 0.86 \\\\\n\\bottomrule\n\\end{tabular}\n",
            ),
            (),
        ),
        (
            Planted(
                "df_print.txt",
                b"   cohort    n  mean_dice\n0   train  100      0.910\n1    test   20      0.860\n",
            ),
            (),
        ),
        (Planted("train_table.log", table_log.encode()), ()),
        (Planted("classification_report.txt", report.encode()), ()),
        (
            Planted(
                "commented.csv",
                b"# generated by analysis.py v1.2\ngroup,n,mean_age\nlung,120,63.1\nliver,85,58.2\n",
            ),
            (),
        ),
    ]

"""Round 6 of the planted-leak run (leaks10): the airlock's output checks, and more benign outputs.

Leaks are written against the fictional patient of `tests.egress.planted_corpus`
(``DOE^JANE``, ``HOSP-77-1234``, ``MRN-0048213``, ``ACC558812``, born 1962-03-15) and
small counts, in the shapes the earlier rounds did not try: counts in ``key=value`` and
``key: value`` lines, in prose, percentages with their denominators, transposed tables,
a suppressed cell recoverable from its table's total, nested JSON, dates of birth in ISO
timestamps and other spellings, IDs with separators and in column names, names in PNG and
NIfTI metadata, a DICOM renamed, data appended to a ``.npy``. `benign()` grows the
corpus of realistic research outputs (each names the checks it flags by design).
"""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from tests.egress.planted_corpus import CT_SMALL, Planted, _parquet, _png, _xlsx
from tests.egress.planted_round5 import _png_plot

IDS = ("identifiers", "file_name", "image_metadata_identifiers", "image_segment")
SDC = ("sdc:threshold", "sdc:subcount", "sdc:differencing")
PROSE = ("sdc:prose",)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _nifti(arr: np.ndarray, **header: str) -> bytes:
    img = nib.Nifti1Image(arr, np.eye(4))
    for key, value in header.items():
        img.header[key] = value
    return img.to_bytes()


def _nifti_ext(arr: np.ndarray, code: int, content: bytes) -> bytes:
    img = nib.Nifti1Image(arr, np.eye(4))
    img.header.extensions.append(nib.nifti1.Nifti1Extension(code, content))
    return img.to_bytes()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    import struct

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_with(chunk: bytes) -> bytes:
    """A plain grey PNG with one extra chunk before IEND."""
    buf = io.BytesIO()
    Image.new("L", (64, 64), 90).save(buf, "PNG")
    data = buf.getvalue()
    end = data.rindex(b"IEND") - 4
    return data[:end] + chunk + data[end:]


def _zip(members: dict[str, bytes]) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _mask(shape: tuple[int, int, int] = (32, 32, 16)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[10:20, 12:22, 4:10] = 1
    return mask


def leaks() -> list[Planted]:
    ids, sdc, prose = IDS, SDC, PROSE
    dicom = CT_SMALL.read_bytes()
    return [
        # ------------------------------------------------------------------ counts in lines
        Planted("summary_kv.txt", b"lung_n=3\nliver_n=45\nkidney_n=52\n", sdc),
        Planted("summary_colon.txt", b"patients with relapse: 3\npatients without relapse: 117\n", sdc),
        Planted("summary_colon.md", b"- lung cases: 4\n- liver cases: 51\n- kidney cases: 60\n", sdc),
        Planted(
            "run.log",
            b"2026-11-30 12:00:01 INFO cohort built site=A n=45\n"
            b"2026-11-30 12:00:02 INFO cohort built site=B n=3\n",
            sdc,
        ),
        Planted("counts.properties", b"count.lung = 3\ncount.liver = 45\n", sdc),
        Planted(
            "results.md",
            b"# Results\n\nOf the 120 patients, 3 patients had a relapse within a year and 117 did not.\n",
            prose,
        ),
        Planted("results.txt", b"Two patients died within 30 days of surgery; 98 survived.\n", prose),
        Planted("findings.tex", b"In total \\num{4} subjects developed a grade 3 toxicity.\n", prose),
        Planted("site_a.txt", b"At site A we observed 2 cases of pneumonitis.\n", prose),
        Planted(
            "pipeline.log",
            b"2026-11-30 12:00:01 INFO loaded 544 series\n2026-11-30 12:00:02 INFO relapsed patients: 3\n",
            sdc,
        ),
        Planted("report.html", b"<ul><li>deaths: <b>2</b></li><li>survivors: 118</li></ul>\n", sdc),
        Planted("summary.json", b'{"n_relapsed": 2}', sdc),
        Planted(
            "notes.json", json.dumps({"summary": "Only 3 patients relapsed after treatment."}).encode(), prose
        ),
        Planted("notes.csv", b'site,comment\nA,"two patients withdrew, both female"\nB,none\n', prose),
        # ------------------------------------------------------------------ percentages and totals
        Planted("percent.csv", b"group,percent,denominator\nlung,2.5,120\nliver,37.5,120\n", sdc),
        Planted("percent_total.csv", b"group,pct,total\nlung,25.0,12\nliver,60.0,100\n", sdc),
        Planted("percent_prose.txt", b"Relapse occurred in 2.5% of 120 patients.\n", prose),
        Planted("percent_paren.md", b"Relapse: 3/120 (2.5%) patients.\n", prose),
        Planted("fraction.csv", b"group,relapsed\nlung,3/120\nliver,45/120\n", sdc),
        Planted(
            "table1.csv",
            b"characteristic,treatment,control\nfemale,3 (2.5%),58 (48.3%)\nmale,117 (97.5%),62 (51.7%)\n",
            sdc,
        ),
        Planted(
            "table1.md",
            b"| Characteristic | Treatment | Control |\n|---|---|---|\n| Female | 3 (2.5%) | 58 (48.3%) |\n"
            b"| Male | 117 (97.5%) | 62 (51.7%) |\n",
            sdc,
        ),
        Planted(
            "differencing.csv",
            b"site,n\nA,45\nB,52\nC,<10\nTotal,100\n",
            sdc,
        ),
        Planted(
            "differencing_star.csv",
            b"stage,patients\nI,40\nII,38\nIII,*\nall,81\n",
            sdc,
        ),
        Planted(
            "transposed.csv",
            b"group,lung,liver,kidney\nn,3,45,52\n",
            sdc,
        ),
        Planted(
            "transposed.tsv",
            b"measure\tsite_A\tsite_B\tsite_C\npatients\t45\t2\t60\nmean_age\t61.2\t58.0\t63.4\n",
            sdc,
        ),
        Planted("crosstab.csv", b"site,male,female,total\nA,40,38,78\nB,35,*,41\nTotal,75,44,119\n", sdc),
        Planted("crosstab_row_total.csv", b"site,male,female,total\nA,40,38,78\nB,35,*,41\n", sdc),
        Planted("of_prose.txt", b"Relapse was seen in 3 of 120 patients.\n", prose),
        Planted("out_of_prose.md", b"Three out of 120 patients relapsed.\n", prose),
        Planted("proportion.csv", b"group,proportion,denominator\nlung,0.025,120\nliver,0.375,120\n", sdc),
        Planted("kv_semicolon.txt", b"lung_n=3; liver_n=45\n", sdc),
        Planted("json_in_log.log", b'2026-11-30 12:00:02 INFO {"site": "B", "n": 3}\n', sdc),
        Planted("bold_label.md", b"**Deaths:** 2\n", sdc),
        Planted("count_in_words.md", b"Deaths: two\nSurvivors: 118\n", sdc),
        Planted("key_value_no_header.txt", b"deaths\t2\nsurvivors\t118\n", sdc),
        Planted("key_value.csv", b"metric,value\nauc,0.91\nn_relapsed,3\n", sdc),
        # ------------------------------------------------------------------ workbooks, Parquet, archives
        Planted("kv.parquet", _parquet({"metric": ["auc", "n_relapsed"], "value": ["0.91", "3"]}), sdc),
        Planted(
            "table1.xlsx",
            _xlsx([["characteristic", "treatment"], ["female", "3 (2.5%)"], ["male", "117"]]),
            sdc,
        ),
        Planted("differencing.xlsx", _xlsx([["site", "n"], ["A", 45], ["B", "<10"], ["Total", 48]]), sdc),
        Planted("notes.tex", b"\\item Deaths: 2\n\\item Survivors: 118\n", sdc),
        Planted("counts.zip", _zip({"summary.txt": b"lung_n=3\n"}), ("file_type",)),
        # ------------------------------------------------------------------ nested and structured
        Planted(
            "nested.json",
            json.dumps({"study": {"arms": {"treatment": {"sites": {"A": {"outcome": {"n": 3}}}}}}}).encode(),
            sdc,
        ),
        Planted(
            "nested_list.json",
            json.dumps({"report": [{"site": "A", "groups": [{"group": "lung", "count": 2}]}]}).encode(),
            sdc,
        ),
        Planted(
            "nested.yaml",
            b"study:\n  sites:\n    A:\n      outcome:\n        relapse:\n          n: 3\n",
            sdc,
        ),
        Planted("counts.json", b'{"n_lung": 3, "n_liver": 45}', sdc),
        # ------------------------------------------------------------------ dates of birth
        Planted("dob_iso_time.csv", b"case,dob\nc1,1962-03-15T00:00\n", ids),
        Planted("dob_iso_zulu.json", b'{"born": "1962-03-15T00:00:00Z"}', ids),
        Planted("dob_words.txt", b"born 15 March 1962\n", ids),
        Planted("dob_compact.txt", b"dob 19620315\n", ids),
        Planted("dob_ordinal.txt", b"born on the 15th of March, 1962\n", ids),
        Planted("dob_us.md", b"DOB: March 15th, 1962\n", ids),
        Planted("dob_slashes.yaml", b"dob: 1962/03/15\n", ids),
        Planted("dob_dotted.txt", b"geb. 15.3.1962\n", ids),
        # ------------------------------------------------------------------ IDs
        Planted("id_slashes.txt", b"HOSP/77/1234\n", ids),
        Planted("id_dots.txt", b"hosp.77.1234\n", ids),
        Planted("id_colon.csv", b"case,score\nHOSP:77:1234,0.91\n", ids),
        Planted("id_column_name.csv", b"metric,HOSP_77_1234,SUBJ-0002\ndice,0.91,0.88\n", ids),
        Planted("id_json_key.json", b'{"HOSP-77-1234": {"dice": 0.91}}', ids),
        Planted("mrn_spaced.txt", b"M R N 0 0 4 8 2 1 3\n", ids),
        # ------------------------------------------------------------------ names in metadata
        Planted("plot_text.png", _png(Image.new("L", (64, 64), 90), Author="Jane Doe"), ids),
        Planted(
            "plot_itxt.png",
            _png_with(_png_chunk(b"iTXt", b"Description\x00\x00\x00en\x00\x00patient HOSP-77-1234")),
            ids,
        ),
        Planted("mask_descrip.nii", _nifti(_mask(), descrip="DOE JANE"), ids),
        Planted("mask_intent.nii", _nifti(_mask(), intent_name="HOSP771234"), ids),
        Planted("mask_ext.nii", _nifti_ext(_mask(), 6, b"patient: Jane Doe"), ids),
        # ------------------------------------------------------------------ files that are not what they say
        Planted("scan.bin", dicom, ("file_type", "extension", "dicom")),
        Planted(
            "weights_tail.npy",
            _npy(np.zeros((4, 4), np.float32)) + b"patient HOSP-77-1234 born 1962-03-15",
            ("trailing_data", "identifiers", "model:identifiers"),
        ),
        Planted(
            "weights_tail_blob.npy",
            _npy(np.zeros((4, 4), np.float32)) + bytes(range(256)) * 16,
            ("trailing_data",),
        ),
        Planted(
            "plot_tail.png",
            _png(Image.new("L", (64, 64), 90)) + b"patient HOSP-77-1234",
            ("trailing_data",),
        ),
        Planted(
            "roc_fields.npy",
            _npy(np.zeros(3, dtype=[("HOSP_77_1234", "f4"), ("dice", "f4")])),
            ids + ("model:identifiers",),
        ),
    ]


def _ct_with_text(
    text: str, size: int, fill: int, angle: float = 0, corner: tuple[int, int] = (16, 440)
) -> bytes:
    """The dataset's CT slice as a 512x512 picture with ``text`` burned in: ``fill`` grey,
    ``size`` points, turned ``angle`` degrees about its start."""
    import pydicom
    from PIL import ImageDraw, ImageFont

    from tests.egress.planted_corpus import FONT

    arr = pydicom.dcmread(CT_SMALL).pixel_array.astype(np.float64)
    arr = (arr - arr.min()) / max(1.0, float(arr.max() - arr.min())) * 255
    img = Image.fromarray(arr.astype(np.uint8)).resize((512, 512))
    font = ImageFont.truetype(FONT, size)
    box = font.getbbox(text)
    stamp = Image.new("L", (box[2] + 8, box[3] + 8), 0)
    ImageDraw.Draw(stamp).text((4, 4), text, fill=255, font=font)
    stamp = stamp.rotate(angle, expand=True)
    img.paste(Image.new("L", stamp.size, fill), corner, mask=stamp)
    return _png(img)


def ocr_leaks() -> list[Planted]:
    """Identifiers burned into a CT picture, small, faint, at a slant or upside down (OCR on)."""
    ocr = ("ocr:identifiers",)
    return [
        Planted("burned_small.png", _ct_with_text("DOE JANE HOSP-77-1234", 11, 255), ocr),
        Planted("burned_faint.png", _ct_with_text("DOE JANE HOSP-77-1234", 18, 200), ocr),
        Planted("burned_slant.png", _ct_with_text("DOE JANE HOSP-77-1234", 20, 255, 25, (40, 250)), ocr),
        Planted("burned_upside_down.png", _ct_with_text("DOE JANE HOSP-77-1234", 20, 255, 180), ocr),
    ]


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    rng = np.random.default_rng(11)
    roc = "threshold,fpr,tpr\n" + "".join(
        f"{t:.2f},{(1 - t) ** 2:.4f},{(1 - t) ** 0.4:.4f}\n" for t in np.linspace(0, 1, 21)
    )
    train_kv = "".join(
        f"2026-11-30 13:{e % 60:02d}:10 INFO epoch={e} batch_size=8 num_workers=4 fold=3 "
        f"loss={1 / (e + 1):.4f} n_train=480 n_val=120\n"
        for e in range(1, 60)
    )
    readme = (
        "# Nodule detection study\n\n"
        "We trained a 3D U-Net on 480 CT series and evaluated it on 120 held-out series, with "
        "5-fold cross-validation and 3 random seeds. Inference takes 2 seconds per scan on one GPU.\n\n"
        "Sensitivity was 91.2% (95% CI 88.0-94.1) at 1 false positive per scan. The model was "
        "trained for 200 epochs with a batch size of 8 (4 GPUs).\n"
    )
    config = (
        "seed: 42\nfolds: 5\nepochs: 200\nbatch_size: 8\nnum_workers: 4\nlearning_rate: 0.0001\n"
        "patch_size: [96, 96, 96]\nn_classes: 3\n"
    )
    metrics_md = (
        "| model | n_test | AUC | sensitivity | specificity |\n|---|---|---|---|---|\n"
        "| U-Net | 120 | 0.91 | 0.88 | 0.90 |\n| nnU-Net | 120 | 0.93 | 0.90 | 0.91 |\n"
    )
    env = "python=3.11.9\ntorch=2.4.1\nnumpy=1.26.4\nmonai=1.3.2\ncuda=12.4\nnum_gpus=4\n"
    props = "model.layers = 4\nmodel.heads = 8\ntrain.epochs = 200\ntrain.batch = 8\n"
    seg = np.zeros((40, 40, 20), np.uint8)
    seg[10:25, 12:28, 5:12] = 1
    seg[14:20, 15:22, 7:10] = 2
    agg = (
        "site,patients,median_age,percent_female\n"
        "A,212,63,48.1\nB,187,61,51.3\nC,145,65,47.6\nTotal,544,63,49.1\n"
    )
    log2 = (
        "Number of GPUs: 4\nNumber of classes: 3\nNumber of parameters: 31042881\nBatch size: 8\n"
        "Training cases: 480\nValidation cases: 120\n"
        + "".join(f"Epoch {e}: loss 0.{90 - e:02d}, val dice 0.{60 + e:02d}\n" for e in range(1, 9))
        + "Fold 2: 120 cases, mean Dice 0.87\n"
    )
    methods = (
        "## Methods\n\nTable 2 patients characteristics are reported in the supplement. Stage 3 patients "
        "were analysed separately (n = 96). Images were resampled to 1.5 mm; each of the 5 folds held "
        "96 patients. Training took 14 hours on 2 GPUs, about 3 seconds per case.\n"
    )
    table1 = (
        "characteristic,treatment,control\nfemale,58 (48.3%),61 (50.8%)\nmale,62 (51.7%),59 (49.2%)\n"
        "age >= 65,40 (33.3%),44 (36.7%)\n"
    )
    nnunet_log = "".join(
        f"2026-11-30 14:{e:02d}:01.123456: Epoch {e}\n"
        f"2026-11-30 14:{e:02d}:01.124000: Current learning rate: {0.01 * (1 - e / 1000) ** 0.9:.5f}\n"
        f"2026-11-30 14:{e:02d}:95.000000: train_loss {-0.3 - e / 100:.4f}\n"
        f"2026-11-30 14:{e:02d}:95.100000: Pseudo dice [{0.7 + e / 200:.4f}, {0.6 + e / 200:.4f}]\n"
        f"2026-11-30 14:{e:02d}:95.200000: Epoch time: {95 + e / 10:.2f} s\n"
        for e in range(0, 30)
    )
    dataset_json = json.dumps(
        {
            "channel_names": {"0": "CT"},
            "labels": {"background": 0, "nodule": 1, "vessel": 2},
            "numTraining": 480,
            "file_ending": ".nii.gz",
        }
    )
    usage = (
        "# Usage\n\n1. Install Python 3.11: `pip install -r requirements.txt`\n"
        "2. Preprocess: `python prep.py --spacing 1.5`\n3. Train: `python train.py --fold 2 --epochs 200`\n\n"
        "Step 3 takes about 14 hours per fold on 1 GPU. Results for all 5 folds are in `results/`.\n"
    )
    paragraph = (
        "Our model achieved a mean Dice of 0.87 on 120 test cases (Table~\\ref{tab:results}), "
        "compared with 0.84 for the baseline; 95\\% of predictions finished within 2~s.\n"
    )
    bootstrap = "metric,estimate,ci_low,ci_high,n_boot\n" + "".join(
        f"{m},{v:.3f},{v - 0.03:.3f},{v + 0.03:.3f},1000\n" for m, v in (("auc", 0.91), ("dice", 0.87))
    )
    return [
        (Planted("roc_curve.csv", roc.encode()), ()),
        (
            Planted(
                "crosstab_margins.csv",
                b"site,male,female,total\nA,40,38,78\nB,35,21,56\nTotal,75,59,134\n",
            ),
            (),  # the total column is the crosstab's margin, a count (was flagged as a magnitude)
        ),
        (
            Planted("summary_metrics.csv", b"metric,value\nauc,0.91\nn_test,120\nepochs,200\nn_classes,3\n"),
            (),
        ),
        (
            Planted(
                "visits.csv",
                b"visit,visit_month,n_patients\nbaseline,3/2019,120\nfollow-up,9/2019,104\n",
            ),
            (),
        ),
        (Planted("nnunet_training.log", nnunet_log.encode()), ()),
        (Planted("dataset.json", dataset_json.encode()), ()),
        (Planted("USAGE.md", usage.encode()), ()),
        (Planted("results_paragraph.tex", paragraph.encode()), ()),
        (Planted("bootstrap_ci.csv", bootstrap.encode()), ()),
        (Planted("train_console.log", log2.encode()), ()),
        (Planted("methods.md", methods.encode()), ()),
        (Planted("table1.csv", table1.encode()), ()),
        (
            Planted(
                "suppressed.csv",
                b"site,n\nA,212\nB,187\nC,<10\nD,<10\nTotal,412\n",
            ),
            (),
        ),
        (Planted("train_kv.log", train_kv.encode()), ()),
        (Planted("README.md", readme.encode()), ()),
        (Planted("config.yaml", config.encode()), ()),
        (Planted("metrics.md", metrics_md.encode()), ()),
        (Planted("environment.txt", env.encode()), ()),
        (Planted("model.properties", props.encode()), ()),
        (Planted("segmentation.nii.gz", _nifti(seg)), ()),
        (Planted("aggregate.csv", agg.encode()), ()),
        (
            Planted(
                "confusion_large.csv",
                b"actual,pred_benign,pred_malignant\nbenign,412,38\nmalignant,27,223\n",
            ),
            (),
        ),
        (
            Planted(
                "confusion.json",
                json.dumps({"labels": ["benign", "malignant"], "matrix": [[412, 38], [27, 223]]}).encode(),
            ),
            (),
        ),
        (
            Planted(
                "metrics.json",
                json.dumps(
                    {"auc": 0.912, "n_test": 120, "sensitivity": 0.88, "folds": 5, "seed": 42, "epochs": 200}
                ).encode(),
            ),
            (),
        ),
        (
            Planted(
                "percent_large.csv",
                b"group,percent,denominator\nlung,37.5,120\nliver,62.5,120\n",
            ),
            (),
        ),
        (
            Planted(
                "results_prose.txt",
                b"Of the 544 patients, 212 were treated at site A. The median follow-up was 3 years; "
                b"AUC 0.91 at 5 folds. 38 benign lesions were misclassified.\n",
            ),
            (),
        ),
        (
            Planted(
                "dice_curve.png",
                _png_plot(lambda ax: ax.plot(np.arange(100), 1 - np.exp(-np.arange(100) / 20))),
            ),
            (),
        ),
        (
            Planted(
                "loss.npy",
                _npy((1 / (1 + np.arange(200))).astype(np.float32)),
            ),
            ("model:release_review",),
        ),
        (
            Planted(
                "results.html",
                b"<html><body><h1>Results</h1><table><tr><th>cohort</th><th>n</th><th>AUC</th></tr>"
                b"<tr><td>internal</td><td>120</td><td>0.91</td></tr>"
                b"<tr><td>external</td><td>88</td><td>0.87</td></tr></table></body></html>\n",
            ),
            (),
        ),
        (
            Planted(
                "table2.tex",
                b"\\begin{tabular}{lrr}\nStage & Patients & \\% \\\\\n\\hline\nI & 120 & 40.0 \\\\\n"
                b"II & 105 & 35.0 \\\\\nIII & 75 & 25.0 \\\\\nTotal & 300 & 100.0 \\\\\n\\end{tabular}\n",
            ),
            (),
        ),
        (
            Planted(
                "feature_importance.csv",
                b"feature,importance\n"
                + "".join(f"f{i},{v:.4f}\n" for i, v in enumerate(rng.dirichlet(np.ones(12)))).encode(),
            ),
            (),
        ),
    ]


def write(root: Path) -> None:
    """Write the round to a folder (for running it through a real job by hand)."""
    for planted in leaks():
        (root / planted.name).write_bytes(planted.data)

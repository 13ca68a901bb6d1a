"""Round 8 of the planted-leak run (leaks12): counts inside tokens, figures, SVG, other formats.

Leaks are written against the fictional patient of `tests.egress.planted_corpus`
(``DOE^JANE``, ``HOSP-77-1234``, born 1962-03-15, studied 2019-04-12) and small counts, in
shapes round 7 left open: a count glued into a token (``n=3``, ``3/120``, ``(3)``, ``3pts``,
``three patients``), a count in a column header or a file name, prose totals ("of the 124
patients, 121 ..."), SVG figures (``<text>``, ``<title>``, ``<desc>``, metadata, an embedded
PNG), epoch seconds before 1970, Excel serial days on a second sheet, and the formats
researchers release beside CSV: ``.npy``/``.npz``, Parquet, Feather/Arrow, nested JSON and
NDJSON, YAML, Jupyter notebooks, ``.csv.gz``, checkpoints and archives.

`known_limits()` holds what still passes after this round (asserted with the same test as
round 7, so catching one means moving it and updating docs/egress-checks.md). `benign()` grows
the corpus of realistic research outputs of the same shapes.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
from pathlib import Path

import numpy as np

from tests.egress.planted_corpus import BIRTH, NAME, PATIENT_ID, Planted, _parquet, _xlsx_sheets
from tests.egress.planted_round5 import _png_plot
from tests.egress.planted_round7 import BIRTH_SERIAL, _npy, _npz

IDS = ("identifiers", "file_name")
SDC = ("sdc:threshold", "sdc:subcount", "sdc:differencing")
PROSE = ("sdc:prose", "sdc:threshold")
# a second patient's dates in 1966-1973, where Unix seconds have only 7 to 9 digits; the
# round's context adds them to the dataset's identifiers (test_checks_round8.context)
LATE_DATES = {"19690720", "19710301"}
LATE_BIRTH_EPOCH = -14_256_000  # 1969-07-20 00:00 UTC
LATE_STUDY_EPOCH = 36_633_600  # 1971-03-01 00:00 UTC
FIGURE = ("sdc:figure",)


def _feather(columns: dict[str, list[object]]) -> bytes:
    import pyarrow as pa
    import pyarrow.feather as feather

    buf = io.BytesIO()
    feather.write_feather(pa.table(columns), buf)
    return buf.getvalue()


def _arrow_stream(columns: dict[str, list[object]]) -> bytes:
    import pyarrow as pa

    table = pa.table(columns)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _notebook(*cells: dict[str, object]) -> bytes:
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3"}},
        "cells": list(cells),
    }
    return json.dumps(nb, indent=1).encode()


def _code_cell(source: str, outputs: list[dict[str, object]]) -> dict[str, object]:
    return {"cell_type": "code", "execution_count": 1, "metadata": {}, "source": source, "outputs": outputs}


def _stream(text: str) -> dict[str, object]:
    return {"output_type": "stream", "name": "stdout", "text": text}


def _svg(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
        f'xmlns:xlink="http://www.w3.org/1999/xlink" width="400" height="300">{body}</svg>\n'
    ).encode()


def _png_metadata_name() -> bytes:
    from PIL import Image, PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    meta.add_text("Comment", f"slice of {NAME}")
    buf = io.BytesIO()
    Image.new("L", (64, 64), 90).save(buf, "PNG", pnginfo=meta)
    return buf.getvalue()


def _matplotlib_svg(values: list[int]) -> bytes:
    """A bar chart as matplotlib writes SVG by default: glyphs as paths, text in comments."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.bar_label(ax.bar(["A", "B", "C"], values))
    ax.set_title("Cases by site")
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    return buf.getvalue()


def _bars_png(values: list[int]) -> bytes:
    return _png_plot(lambda ax: (ax.bar(["A", "B", "C"], values), ax.bar_label(ax.containers[0])))


def leaks() -> list[Planted]:
    sdc, prose, ids = SDC, PROSE, IDS
    return [
        # ------------------------------------------------------------------ counts inside tokens
        Planted("n_equals.txt", b"Site A (n=45) and site B (n=3) were pooled.\n", sdc),
        Planted(
            "n_equals_table.md",
            b"| arm | result |\n|---|---|\n| A | 0.91 (n=45) |\n| B | 0.88 (n=3) |\n",
            sdc,
        ),
        Planted("fraction.txt", b"Relapse: 3/120 at one year.\n", prose),
        Planted("paren_count.csv", b"site,patients\nA,45 (37.5%)\nB,3 (2.5%)\nC,72 (60.0%)\n", sdc),
        Planted("paren_only.txt", b"Relapsed patients (3) were excluded.\n", prose),
        Planted("pts.txt", b"Excluded: 3pts with metal artefacts.\n", prose),
        Planted("spelled.txt", b"Three patients relapsed within a year.\n", prose),
        Planted("header_count.csv", b"site,relapsed (n=3),remission (n=117)\nA,0.31,0.69\n", sdc),
        Planted("n3_relapsed.csv", b"feature,mean\nvolume_ml,31.2\ndiameter_mm,14.1\n", sdc),
        Planted("token.txt", b"site_A_had_3 site_B_had_45\n", prose),
        Planted(
            "n_in_json_key.json", json.dumps({"auc_site_B_n3": 0.74, "auc_site_A_n45": 0.9}).encode(), sdc
        ),
        # ------------------------------------------------------------------ prose totals
        Planted("prose_total.txt", b"Of the 124 patients, 121 completed follow-up.\n", prose),
        Planted("prose_total_except.md", b"All but 2 of the 124 patients were scanned twice.\n", prose),
        # ------------------------------------------------------------------ figures
        Planted(
            "bars.svg",
            _svg('<rect height="45"/><text x="10" y="20">A: 45</text><rect height="3"/><text>B: 3</text>'),
            FIGURE,
        ),
        Planted("title.svg", _svg(f"<title>Scan of {NAME}</title><rect width='10' height='10'/>"), ids),
        Planted("desc.svg", _svg(f"<desc>patient {PATIENT_ID}</desc><rect width='10' height='10'/>"), ids),
        Planted(
            "metadata.svg",
            _svg(
                f"<metadata><rdf:RDF xmlns:rdf='x'><dc:creator xmlns:dc='y'>{PATIENT_ID}</dc:creator>"
                "</rdf:RDF></metadata><rect width='10' height='10'/>"
            ),
            ids,
        ),  # fmt: skip
        Planted("tspan.svg", _svg("<text><tspan>HOSP-</tspan><tspan>77-1234</tspan></text>"), ids),
        Planted(
            "attr.svg",
            _svg(f"<g id='{PATIENT_ID}' aria-label='{PATIENT_ID}'><rect width='10' height='10'/></g>"),
            ids,
        ),
        # ------------------------------------------------------------------ array and columnar formats
        Planted("histogram.npy", _npy(np.array([120, 45, 3, 17], np.int64)), sdc),
        Planted("counts_table.npz", _npz(site=np.array(["A", "B", "C"]), n=np.array([45, 3, 52])), sdc),
        Planted("names.npy", _npy(np.array([PATIENT_ID, "HOSP-77-9999"])), ("model:identifiers",)),
        Planted(
            "counts_nested.parquet", _parquet({"stage": ["I", "II", "IV"], "patients": [40, 38, 3]}), sdc
        ),
        # ------------------------------------------------------------------ JSON, NDJSON, YAML
        Planted(
            "nested.json",
            json.dumps({"results": {"by_site": [{"site": "A", "n": 45}, {"site": "B", "n": 3}]}}).encode(),
            sdc,
        ),
        Planted(
            "records.ndjson", b'{"site": "A", "n": 45}\n{"site": "B", "n": 3}\n{"site": "C", "n": 52}\n', sdc
        ),
        Planted(
            "mapping.yaml",
            b"cohort:\n  by_site:\n    - site: A\n      n: 45\n    - site: B\n      n: 3\n",
            sdc,
        ),
        Planted("ids.ndjson", f'{{"case": "{PATIENT_ID}", "dice": 0.8}}\n'.encode(), ids),
        # ------------------------------------------------------------------ notebooks
        Planted(
            "counts.ipynb",
            _notebook(
                _code_cell(
                    "print(df.groupby('site').size())",
                    [_stream("site\nA    45\nB     3\nC    52\ndtype: int64\n")],
                )
            ),
            sdc,
        ),  # fmt: skip
        Planted(
            "value_counts.ipynb",
            _notebook(
                _code_cell(
                    "df.stage.value_counts()",
                    [
                        {
                            "output_type": "execute_result",
                            "execution_count": 3,
                            "metadata": {},
                            "data": {
                                "text/plain": "stage\nII     40\nI      38\nIV      3\n"
                                "Name: count, dtype: int64"
                            },
                        }
                    ],
                )
            ),
            sdc,
        ),  # fmt: skip
        Planted(
            "html_output.ipynb",
            _notebook(
                _code_cell(
                    "df.groupby('site').size().to_frame('n')",
                    [
                        {
                            "output_type": "execute_result",
                            "execution_count": 2,
                            "metadata": {},
                            "data": {
                                "text/html": "<table><tr><th>site</th><th>n</th></tr>"
                                "<tr><td>A</td><td>45</td></tr>"
                                "<tr><td>B</td><td>3</td></tr></table>"
                            },
                        }
                    ],
                )
            ),
            sdc,
        ),  # fmt: skip
        Planted(
            "figure_output.ipynb",
            _notebook(
                _code_cell(
                    "plt.imshow(img)",
                    [
                        {
                            "output_type": "display_data",
                            "metadata": {},
                            "data": {"image/png": base64.b64encode(_png_metadata_name()).decode()},
                        }
                    ],
                )
            ),
            ("image_metadata", "identifiers"),
        ),  # fmt: skip
        Planted(
            "traceback.ipynb",
            _notebook(
                _code_cell(
                    "load(row)",
                    [
                        {
                            "output_type": "error",
                            "ename": "KeyError",
                            "evalue": f"'{PATIENT_ID}'",
                            "traceback": [f"KeyError: '{PATIENT_ID}'"],
                        }
                    ],
                )
            ),
            ids,
        ),  # fmt: skip
        Planted(
            "table.ipynb",
            _notebook(
                _code_cell(
                    "df.head()",
                    [
                        {
                            "output_type": "execute_result",
                            "execution_count": 1,
                            "metadata": {},
                            "data": {
                                "text/plain": f"   case\n0  {PATIENT_ID}\n",
                                "text/html": f"<table><tr><td>{PATIENT_ID}</td></tr></table>",
                            },
                        }
                    ],
                )
            ),
            ids,
        ),  # fmt: skip
        # ------------------------------------------------------------------ dates as computers keep them
        Planted("dob_1969.csv", f"case,dob\nc1,{LATE_BIRTH_EPOCH + 3600}\n".encode(), ids),
        Planted("dob_1971.json", json.dumps({"case": "c1", "birth_time": LATE_STUDY_EPOCH}).encode(), ids),
        Planted("dob_1969_text.txt", f"subject c1 born {LATE_BIRTH_EPOCH}\n".encode(), ids),
        Planted(
            "serial_second_sheet.xlsx",
            _xlsx_sheets(
                {
                    "Summary": [["metric", "value"], ["auc", 0.91]],
                    "Cases": [["case", "date_of_birth"], ["c1", BIRTH_SERIAL]],
                }
            ),
            ids,
        ),  # fmt: skip
        # ------------------------------------------------------------------ compressed and headers
        Planted(
            "header_dump.txt", f"(0010,0010) PN PatientName: {NAME}\n(0010,0030) DA {BIRTH}\n".encode(), ids
        ),
        Planted(
            "checkpoint_meta.json",
            json.dumps({"state_dict_keys": ["conv1.weight"], "train_cases": [PATIENT_ID]}).encode(),
            ids,
        ),
        Planted(
            "svg_png.svg",
            _svg(
                "<image href='data:image/png;base64,"
                + base64.b64encode(_bars_png([45, 3, 52])).decode()
                + "' width='320' height='320'/>"
            ),
            ("encoded:", "decoded:"),
        ),
        # ------------------------------------------------------------------ more variants
        Planted("of_the.md", b"121 of the 124 patients completed follow-up.\n", prose),
        Planted("site_B_n3_dice.json", json.dumps({"dice": 0.74}).encode(), sdc),
        Planted("auc_by_group.yaml", b"groups:\n  relapsed_n2: 0.41\n  remission_n118: 0.77\n", sdc),
        Planted(
            "title_count.svg", _svg("<title>Relapse in 3 patients</title><rect width='9' height='9'/>"), prose
        ),
        Planted("matplotlib_bars.svg", _matplotlib_svg([45, 3, 52]), FIGURE),
        Planted(
            "serial_third_sheet.xlsx",
            _xlsx_sheets(
                {
                    "Summary": [["metric", "value"], ["auc", 0.91]],
                    "Notes": [["note"], ["v2"]],
                    "Cases": [["case", "dob"], ["c1", BIRTH_SERIAL]],
                }
            ),
            ids,
        ),  # fmt: skip
        Planted(
            "dicom_json.json",
            json.dumps(
                {
                    "00100010": {"vr": "PN", "Value": [{"Alphabetic": NAME}]},
                    "00100020": {"vr": "LO", "Value": [PATIENT_ID]},
                }
            ).encode(),
            ids,
        ),  # fmt: skip
        Planted(
            "groups.ndjson",
            b'{"site": "A", "groups": [{"stage": "I", "count": 40}, {"stage": "IV", "count": 2}]}\n'
            b'{"site": "B", "groups": [{"stage": "I", "count": 51}]}\n',
            sdc,
        ),
    ]


def allowed_formats() -> list[tuple[Planted, tuple[str, ...]]]:
    """Formats the default policy refuses by type (Feather/Arrow, gzip): under a policy that
    allows them (`allowing_formats`), their content gets the same checks. (file, the checks
    of which one must fire; empty: a benign output that must raise nothing but the archive
    flag)."""
    import tarfile
    import zipfile

    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("results/by_site.csv", "site,n\nA,45\nB,3\n")
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as tf:
        info = tarfile.TarInfo("bundle/tables.zip")
        info.size = len(inner.getvalue())
        tf.addfile(info, io.BytesIO(inner.getvalue()))
    return [
        (Planted("counts.feather", _feather({"site": ["A", "B", "C"], "n": [45, 3, 52]})), SDC),
        (Planted("ids.feather", _feather({"case": [PATIENT_ID], "volume_ml": [31.2]})), IDS),
        (Planted("counts.arrows", _arrow_stream({"site": ["A", "B", "C"], "n": [45, 3, 52]})), SDC),
        (Planted("counts.csv.gz", gzip.compress(b"site,n\nA,45\nB,3\nC,52\n")), ("member:sdc:threshold",)),
        (
            Planted("ids.csv.gz", gzip.compress(f"case,dice\n{PATIENT_ID},0.8\n".encode())),
            ("member:identifiers",),
        ),
        (Planted("nested.tar.gz", tar.getvalue()), ("member:",)),
        (Planted("metrics.feather", _feather({"model": ["unet", "resnet"], "dice": [0.87, 0.84]})), ()),
        (Planted("metrics.arrows", _arrow_stream({"model": ["unet", "resnet"], "dice": [0.87, 0.84]})), ()),
        (Planted("metrics.csv.gz", gzip.compress(b"model,dice\nunet,0.87\nresnet,0.84\n")), ()),
    ]


def known_limits() -> list[Planted]:
    """Variants that still pass (or are only flagged for something else) after this round."""
    return [
        # a bar's height is not read as a number: the scale and layout would have to be inferred
        Planted("bar_heights.svg", _svg("<rect x='0' height='45'/><rect x='20' height='3'/>"), SDC + FIGURE),
        Planted(
            "bars_unlabelled.png", _png_plot(lambda ax: ax.bar(["A", "B", "C"], [45, 3, 52])), SDC + FIGURE
        ),
        # a drawn label in a PNG: OCR matches identifiers only (its stray digits are too noisy to
        # judge as counts), so the reviewers read the figure
        Planted("bars.png", _bars_png([45, 3, 52]), SDC + FIGURE),
    ]


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    return [
        (Planted("n_large.txt", b"Site A (n=212) and site B (n=187) were pooled.\n"), ()),
        (Planted("fraction_large.txt", b"Relapse: 48/520 at one year (9.2%).\n"), ()),
        (Planted("paren_large.csv", b"site,patients\nA,212 (39.0%)\nB,187 (34.4%)\nC,145 (26.6%)\n"), ()),
        (Planted("ci.csv", b"model,auc,ci\nresnet,0.91,(0.88-0.94)\nunet,0.87,(0.83-0.90)\n"), ()),
        (
            Planted("folds.txt", b"5-fold cross-validation, 3 seeds, batch size 8, 200 epochs on 4 GPUs.\n"),
            (),
        ),
        (Planted("version.txt", b"python 3.12, torch 2.4.1, monai 1.3.2, CUDA 12.4\n"), ()),
        (Planted("figure_refs.md", b"See Figure 3 and Table 2 (panel 1) for the 3 models.\n"), ()),
        (Planted("prose_total.txt", b"Of the 544 patients, 480 completed follow-up and 64 were lost.\n"), ()),
        (Planted("spelled.txt", b"Three models were compared on two external test sets.\n"), ()),
        (Planted("header_metric.csv", b"model,dice (mean),hd95 (mm)\nunet,0.87,4.2\nresnet,0.84,5.1\n"), ()),
        (
            Planted(
                "roc.svg",
                _svg(
                    "<title>ROC curve, internal test set</title><desc>AUC 0.91</desc>"
                    "<path d='M0 300 L 40 120 L 400 0'/><text>False positive rate</text>"
                    "<text>0.0</text><text>0.5</text><text>1.0</text>"
                ),
            ),
            (),
        ),  # fmt: skip
        (
            Planted(
                "bars_large.svg",
                _svg("<rect height='212'/><text>A: 212</text><rect height='187'/><text>B: 187</text>"),
            ),
            (),
        ),
        (Planted("probs.npy", _npy(np.linspace(0, 1, 64).astype(np.float32))), ("model:release_review",)),
        (Planted("labels.npy", _npy(np.array([0, 1, 2, 1, 0, 2, 1, 1] * 8))), ("model:release_review",)),
        (Planted("pred_classes.npy", _npy(np.array([0, 1, 1, 0, 1] * 10))), ("model:release_review",)),
        (Planted("histogram_large.npy", _npy(np.array([412, 1288, 1530, 640]))), ("model:release_review",)),
        (
            Planted(
                "hist_large.npz", _npz(counts=np.array([412, 1288, 1530]), edges=np.array([0.0, 1, 2, 3]))
            ),
            ("model:release_review",),
        ),
        (
            Planted("by_site.parquet", _parquet({"site": ["A", "B", "C"], "patients": [212, 187, 145]})),
            (),
        ),
        (
            Planted(
                "nested_large.json",
                json.dumps(
                    {"results": {"by_site": [{"site": "A", "n": 212}, {"site": "B", "n": 187}]}}
                ).encode(),
            ),
            (),
        ),
        (
            Planted(
                "metrics.ndjson",
                "".join(
                    json.dumps({"epoch": e, "loss": round(1 / e, 4)}) + "\n" for e in range(1, 30)
                ).encode(),
            ),
            (),
        ),
        (
            Planted(
                "config.yaml",
                b"model:\n  name: unet\n  depth: 4\n  channels: [16, 32, 64, 128]\n"
                b"train:\n  epochs: 200\n  batch_size: 8\n  seed: 42\n",
            ),
            (),
        ),
        (
            Planted(
                "analysis.ipynb",
                _notebook(
                    {"cell_type": "markdown", "metadata": {}, "source": "# Dice by model"},
                    _code_cell("print(df.dice.mean())", [_stream("0.871\n")]),
                ),
            ),
            (),
        ),
        (
            Planted(
                "plot.ipynb",
                _notebook(
                    _code_cell(
                        "plt.plot(fpr, tpr)",
                        [
                            {
                                "output_type": "display_data",
                                "metadata": {},
                                "data": {
                                    "image/png": base64.b64encode(
                                        _png_plot(lambda ax: ax.plot([0, 0.2, 1], [0, 0.8, 1]))
                                    ).decode(),
                                    "text/plain": "<Figure size 400x400>",
                                },
                            }
                        ],
                    )
                ),
            ),
            (),
        ),  # fmt: skip
        (Planted("times.csv", b"run,started\nr1,1796040000\nr2,1796047200\n"), ()),
        (Planted("durations.csv", b"step,seconds\nload,118800\ntrain,86400\n"), ()),
        (
            Planted(
                "multi_sheet.xlsx",
                _xlsx_sheets(
                    {
                        "Summary": [["metric", "value"], ["auc", 0.91]],
                        "Runs": [["run", "voxels"], ["r1", BIRTH_SERIAL]],
                    }
                ),
            ),
            (),
        ),  # fmt: skip
        (Planted("dicom_tags.txt", b"Modality: CT\nSliceThickness: 5.0\nKVP: 120\nRows: 512\n"), ()),
        (Planted("train_cases.json", json.dumps({"train_cases": ["SUBJ-0001", "SUBJ-0002"]}).encode()), ()),
        # a bar chart is flagged for the reviewers to check its heights (leaks13, figure:bars)
        (Planted("bars_large.png", _bars_png([212, 187, 145])), ("figure:bars",)),
        (Planted("matplotlib_bars_large.svg", _matplotlib_svg([212, 187, 145])), ()),
        (
            Planted(
                "n4_bias_stats.csv", b"subject_id,n4_iterations,dice\nSUBJ-0001,50,0.81\nSUBJ-0002,50,0.79\n"
            ),
            (),
        ),
        (Planted("tnm.csv", b"stage,patients\nN0,212\nN1,187\nN3,145\n"), ()),
        (
            Planted(
                "train.log", b"Epoch 3/200 loss=0.41\n 45%|####5     | 54/120 [00:40<00:49]\nfold 2/5 done\n"
            ),
            (),
        ),
        (Planted("case_ids.csv", b"case,dice\ncase_3,0.81\ncase_4,0.77\nsubject_2,0.9\n"), ()),
        (Planted("dates_late_other.csv", b"case,voxels\nc1,36633600\n"), ()),
        (Planted("summary.md", b"Of the 544 patients, 212 were scanned at site A and 332 elsewhere.\n"), ()),
        (
            Planted(
                "value_counts_large.ipynb",
                _notebook(
                    _code_cell(
                        "df.stage.value_counts()",
                        [_stream("stage\nII     212\nI      187\nIV     145\nName: count, dtype: int64\n")],
                    )
                ),
            ),
            (),
        ),  # fmt: skip
        (
            Planted(
                "fold_ticks.svg",
                _svg(
                    "<text>1</text><text>2</text><text>3</text><text>4</text><text>5</text>"
                    "<text>fold</text><text>Dice</text><text>0.80</text><text>0.85</text>"
                ),
            ),
            (),
        ),  # fmt: skip
        (Planted("cohort.ndjson", b'{"site": "A", "n": 212}\n{"site": "B", "n": 187}\n'), ()),
        (
            Planted(
                "dicom_json_deid.json",
                json.dumps(
                    {
                        "00080060": {"vr": "CS", "Value": ["CT"]},
                        "00180050": {"vr": "DS", "Value": [5.0]},
                        "00100020": {"vr": "LO", "Value": ["SUBJ-0001"]},
                    }
                ).encode(),
            ),
            (),
        ),  # fmt: skip
        (Planted("n_features.csv", b"model,n_features,dice\nlasso,8,0.81\nrf,6,0.79\n"), ()),
        (Planted("paths.log", b"saved to outputs/fold_2/model_n3.pt; log at /tmp/run_n4/x\n"), ()),
        (
            Planted("versions.json", json.dumps({"torch": "2.4.1", "numpy": "2.1.3", "n_gpus": 4}).encode()),
            (),
        ),
        (
            Planted(
                "stages_large.md",
                b"| stage | n |\n|---|---:|\n| I-II | 212 (39%) |\n| III-IV | 332 (61%) |\n",
            ),
            (),
        ),
    ]


def write(root: Path) -> None:
    """Write the round to a folder (for running it through a real job by hand)."""
    for planted in leaks():
        (root / planted.name).write_bytes(planted.data)

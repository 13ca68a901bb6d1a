"""Round 14 of the planted-leak run (leaks18): shares whose whole is the dataset's own cohort,
which no output states (the checks now count its distinct PatientIDs); shares of people named
as a measured change (``dose_reduction_pct``, ``weight_loss_pct``); a JSON or YAML breakdown's
group shares (``{"by_site": {"A": "6.8%"}}``), read before against the whole cohort; and
percentages written with a decimal comma (``"6,1%"``), which a table's cell rule did not read.

The dataset here has 33 patients (`build_cohort`); the project's earlier release is round 9's
(`planted_round9.EARLIER`: 100 patients, sites A 45, B 52, C 30). `benign()` holds the
look-alikes each new rule must leave alone (shares of voxels, slices, lesions' volume; a mean
or relative change beside a model's metrics; a signed change column; large groups' shares);
`known_limits()` what still passes (docs/egress-checks.md).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from tests.egress.planted_corpus import CT_SMALL, Planted

COHORT = 33
SDC = ("sdc:threshold", "sdc:subcount", "sdc:differencing")
REQUEST_SHARE = ("sdc:request_share",)
RELEASED_SHARE = ("sdc:released_share",)

SITES_CSV = ("sites.csv", b"site,n\nA,44\nB,60\n")
ARMS_CSV = ("arms.csv", b"arm,n\ncontrol,33\ntreated,40\n")


def build_cohort(root: Path, patients: int = COHORT) -> Path:
    """A dataset of ``patients`` fictional patients, one CT slice each (pydicom's CT_small)."""
    root.mkdir(parents=True, exist_ok=True)
    src = pydicom.dcmread(CT_SMALL)
    for i in range(patients):
        ds = copy.deepcopy(src)
        ds.PatientID = f"ZQX-{i:04d}"
        ds.PatientName = f"ZQX^VEL{i:02d}"
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(root / f"p{i:03d}.dcm", enforce_file_format=True)
    return root


def leaks() -> list[Planted]:
    return [
        # ----------------------- a share of the dataset's 33 patients, a whole no output states
        # 6.1 % is 2 of 33, 9.1 % 3, 12.1 % 4, 15.2 % 5, 27.3 % 9 (none a whole count of 100)
        Planted("withdrew_dataset.txt", b"Overall, 6.1 % withdrew consent.\n", REQUEST_SHARE),
        Planted("cohort_relapsed.md", b"# Outcomes\n\n9.1 % of the cohort relapsed.\n", REQUEST_SHARE),
        Planted("patients_progressed.txt", b"27.3 % of the patients progressed.\n", REQUEST_SHARE),
        Planted("withdrawn_pct.json", json.dumps({"withdrawn_pct": 6.1}).encode(), REQUEST_SHARE),
        Planted("relapse_percent.yaml", b"relapse_percent: 12.1\n", REQUEST_SHARE),
        Planted("relapse_str.json", json.dumps({"relapse": "15.2%"}).encode(), REQUEST_SHARE),
        Planted("died_prop.csv", b"died_prop\n0.0606\n", REQUEST_SHARE),
        # ----------------------- shares of people named as a measured quantity's change
        Planted("dose_reduction.csv", b"arm,n,dose_reduction_pct\ncontrol,33,6.1\ntreated,40,25.0\n", SDC),
        Planted("weight_loss.csv", b"arm,patients,weight_loss_pct\ncontrol,40,5.0\ntreated,33,27.3\n", SDC),
        Planted(
            "volume_increase.csv",
            b"arm,n,tumour_volume_increase_pct\ncontrol,33,9.1\ntreated,40,25.0\n",
            SDC,
        ),
        Planted(
            "dose_escalation.json", json.dumps({"patients": 33, "dose_escalation_pct": 6.1}).encode(), SDC
        ),
        Planted(
            "size_change.md",
            b"| arm | n | size_change_pct |\n|---|---|---|\n"
            b"| control | 33 | 6.1 |\n| treated | 40 | 25.0 |\n",
            SDC,
        ),
        Planted("dose_reduction.yaml", b"dose_reduction_pct: 6.1\n", REQUEST_SHARE),
        # ----------------------- a breakdown's group shares, of the group's people
        # 6.8 % of site A's 44 (sites.csv) is 3; 3.8 % of site B's released 52 is 2
        Planted(
            "by_site.json",
            json.dumps({"by_site": {"A": "6.8%", "B": "25.0%"}}).encode(),
            REQUEST_SHARE,
            (SITES_CSV,),
        ),
        Planted(
            "by_site_released.json",
            json.dumps({"by_site": {"B": "3.8%", "C": "50.0%"}}).encode(),
            RELEASED_SHARE,
        ),
        Planted(
            "by_arm_rows.yaml",
            b"by_arm:\n  control:\n    relapse: 6.1%\n  treated:\n    relapse: 25.0%\n",
            REQUEST_SHARE,
            (ARMS_CSV,),
        ),
        Planted(
            "relapse_prop_by_site.json",
            json.dumps({"relapse_prop_by_site": {"A": 0.068, "B": 0.25}}).encode(),
            REQUEST_SHARE,
            (SITES_CSV,),
        ),
        # ... named by its dimension alone, as records under a key, one level deeper
        Planted(
            "sites.json",
            json.dumps({"sites": {"A": "6.8%", "B": "25.0%"}}).encode(),
            REQUEST_SHARE,
            (SITES_CSV,),
        ),
        Planted(
            "by_site_records.json",
            json.dumps(
                {"by_site": [{"site": "A", "relapse": "6.8%"}, {"site": "B", "relapse": "25.0%"}]}
            ).encode(),
            REQUEST_SHARE,
            (SITES_CSV,),
        ),
        Planted(
            "results_by_site.json",
            json.dumps({"results": {"by_site": {"A": "6.8%", "B": "25.0%"}}}).encode(),
            REQUEST_SHARE,
            (SITES_CSV,),
        ),
        Planted(
            "by_site_n.json",
            json.dumps(
                {"by_site": {"A": {"n": 12, "relapse": "8.3%"}, "B": {"n": 40, "relapse": "25.0%"}}}
            ).encode(),
            SDC,
        ),
        # ----------------------- percentages with a decimal comma, in cells and JSON strings
        Planted(
            "comma_records.json",
            json.dumps(
                [
                    {"arm": "control", "n": 33, "relapse": "6,1%"},
                    {"arm": "treated", "n": 40, "relapse": "25,0%"},
                ]
            ).encode(),
            SDC,
        ),
        Planted("comma_semicolon.csv", b"arm;n;relapse\ncontrol;33;6,1%\ntreated;40;25,0%\n", SDC),
        Planted("comma_str.json", json.dumps({"relapse": "15,2 %"}).encode(), REQUEST_SHARE),
    ]


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    return [
        # shares of things, not of the cohort's people
        (Planted("voxels.txt", b"Overall, 6.1 % of voxels were labelled tumour.\n"), ()),
        (Planted("slices_pct.json", json.dumps({"slices_pct": 6.1, "voxels_pct": 3.0}).encode()), ()),
        (
            Planted(
                "lesion_volume.json",
                json.dumps({"lesion_volume_pct": 9.1, "necrotic_area_pct": 6.1}).encode(),
            ),
            (),
        ),
        # a model's rows in a share column, a data split's shares (whole patients by design)
        (Planted("metric_rows.csv", b"metric,pct\nsensitivity,93.9\nerror,6.1\n"), ()),
        (
            Planted("split.json", json.dumps({"train_pct": 84.8, "val_pct": 6.1, "test_pct": 9.1}).encode()),
            (),
        ),
        (Planted("lesions.json", json.dumps({"n_lesions": 40, "lesions_progressed_pct": 6.1}).encode()), ()),
        (
            Planted(
                "possessive.txt", b"On average, 6.1 % of the patients' slices were excluded for motion.\n"
            ),
            (),
        ),
        # a measured change that says so: a statistic in its name, a model's metrics beside it
        (
            Planted(
                "seg_change.csv", b"model,patients,dice_pct,hd95_mm,volume_change_pct\nunet,33,87.9,6.1,3.0\n"
            ),
            (),
        ),
        (
            Planted("mean_dose.json", json.dumps({"patients": 33, "mean_dose_reduction_pct": 6.1}).encode()),
            (),
        ),
        (
            Planted(
                "relative_dose.csv", b"arm,n,relative_dose_change_pct\ncontrol,33,6.1\ntreated,40,25.0\n"
            ),
            (),
        ),
        (Planted("volume_change_mm.csv", b"arm,n,volume_change_pct,diameter_mm\ncontrol,33,3.0,41.2\n"), ()),
        # a signed change column is no column of shares
        (Planted("signed_change.csv", b"arm,n,tumour_growth\ncontrol,33,3.0%\ntreated,40,-2.5%\n"), ()),
        # large groups' shares, and large shares of the dataset's cohort
        (
            Planted(
                "by_site_large.json",
                json.dumps(
                    {"by_site": {"A": "6.0%", "B": "25.0%"}, "n_by_site": {"A": 500, "B": 600}}
                ).encode(),
            ),
            (),
        ),
        (
            Planted(
                "dice_by_site.json",
                json.dumps({"dice_by_site": {"A": "6.8%", "B": "25.0%"}}).encode(),
                (),
                (SITES_CSV,),
            ),
            (),
        ),
        (Planted("by_arm_large.yaml", b"by_arm:\n  control:\n    n: 330\n    relapse: 6.1%\n"), ()),
        (Planted("withdrew_large.txt", b"Overall, 30.3 % withdrew consent.\n"), ()),
        (Planted("comma_large.csv", b"arm;n;relapse\ncontrol;33;30,3%\ntreated;40;25,0%\n"), ()),
        (Planted("auc_comma.json", json.dumps({"auc": "91,0%", "accuracy": "87,9%"}).encode()), ()),
    ]


def known_limits() -> list[Planted]:
    """Variants that still pass after this round."""
    return [
        # a group's share whose group size no output states, nor the project released (the
        # checks count the dataset's patients, not its sites)
        Planted("by_site_unknown.json", json.dumps({"by_site": {"D": "6.8%"}}).encode(), REQUEST_SHARE),
    ]

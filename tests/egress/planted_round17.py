"""Round 17 of the planted-leak run (leaks21): round 16's residuals and their variants, and
what an adversarial reviewer tries next. Two stages of the study's flow in one sentence ("Of 35
screened, 33 were enrolled", "35 screened; 33 enrolled", "33/35 enrolled"); a share of the
cohort's 33 in other spellings ("every eleventh patient", "0.061 of the patients", "one
patient in eleven", "2/33 patients"); a day of the year with no year beside a scan; sex with
site, postcode or ethnicity row by row without an age; ages in DICOM's age string (``091Y``),
in words or abbreviated. The false alarms round 16 left: an age's mean or median over 89 read
as a person's age, and the training and validation sets' tables (disjoint groups under one
name) read as the same table twice.

The dataset is round 14's 33 patients (`planted_round14.build_cohort`: pydicom's CT_small,
studied on 2004-01-19, day 19 of the year). `benign()` holds the look-alikes each rule must
leave alone; `known_limits()` what still passes (docs/egress-checks.md).
"""

from __future__ import annotations

import json

from tests.egress.planted_corpus import Planted

REQUEST_SHARE = ("sdc:request_share",)
FLOW = ("sdc:flow_differencing",)
REQUEST = ("sdc:differencing_request",)
QUASI = ("sdc:quasi_identifiers",)
DATES = ("dates",)
AGE = ("identifiers:age_over_89",)
PROSE = ("sdc:prose",)
FLOW_OR_PROSE = ("sdc:flow_differencing", "sdc:prose")  # a fraction's rest is a prose count too
SMALL = ("sdc:", "text:")


def _json(doc: object) -> bytes:
    return json.dumps(doc).encode()


def leaks() -> list[Planted]:
    return [
        # ----------------------- two stages of the flow in one sentence (round 16's limit)
        Planted("flow_prose.txt", b"Of 35 patients screened, 33 were enrolled.\n", FLOW),
        Planted("flow_semicolon.md", b"## Flow\n\n35 screened; 33 enrolled.\n", FLOW),
        Planted("flow_fraction.txt", b"In total 33/35 patients were enrolled.\n", FLOW_OR_PROSE),
        Planted("flow_out_of.md", b"33 out of 35 screened patients were randomised.\n", FLOW_OR_PROSE),
        Planted("flow_bare_fraction.txt", b"Enrolment: 33/35 enrolled after screening.\n", FLOW),
        Planted("fraction_rest.md", b"Complete response in 31/33 patients.\n", PROSE),
        Planted("flow_then.txt", b"We screened 40 patients and randomised 38.\n", FLOW),
        Planted("flow_html.html", b"<p>Of 35 patients screened, 33 were enrolled.</p>\n", FLOW),
        Planted("flow_arrow.md", b"- screened 35 \xe2\x86\x92 eligible 34 \xe2\x86\x92 enrolled 33\n", FLOW),
        # ----------------------- a share of the cohort's 33 (3 of 33 is one in eleven)
        Planted("every_eleventh.txt", b"Every eleventh patient relapsed.\n", REQUEST_SHARE),
        Planted("decimal_share.txt", b"A share of 0.061 of the patients withdrew.\n", REQUEST_SHARE),
        Planted("one_patient_in.md", b"One patient in eleven relapsed.\n", REQUEST_SHARE),
        Planted("two_of_33.txt", b"Toxicity: 2/33 patients.\n", SMALL),
        Planted("patients_out_of.txt", b"2 patients out of 33 withdrew.\n", PROSE),
        Planted("one_per.txt", b"Relapse occurred in one per eleven patients.\n", REQUEST_SHARE),
        Planted("fraction_cell.csv", b"outcome,patients\nrelapsed,2/33\nalive,31/33\n", SMALL),
        # ----------------------- a day of the year with no year, beside a scan (2004-01-19)
        Planted("doy_no_year.csv", b"subject,scan_day_of_year\n1,19\n", DATES),
        Planted("doy_log.txt", b"scan acquired doy=19 site=A\n", DATES),
        Planted("doy_json.json", _json({"scan_doy": 19, "kvp": 120}), DATES),
        # ----------------------- sex with site, postcode or ethnicity, row by row (no age)
        Planted("sex_site.csv", b"sex,site,dice\nF,A,0.91\nM,B,0.88\n", QUASI),
        Planted("sex_postcode.tsv", b"gender\tpostcode\tdice\nF\tCB2\t0.91\nM\tOX1\t0.88\n", QUASI),
        Planted(
            "sex_ethnicity.json",
            _json(
                [
                    {"sex": "F", "ethnicity": "Asian", "hd95": 3.1},
                    {"sex": "M", "ethnicity": "White", "hd95": 4.2},
                ]
            ),
            QUASI,
        ),
        Planted(
            "quasi_md.md",
            b"| Sex | Hospital | Dice |\n|---|---|---|\n| F | A | 0.91 |\n| M | B | 0.88 |\n",
            QUASI,
        ),
        # ----------------------- the same table twice under one name in two folders: a revision
        Planted(
            "v2/by_site.csv",
            b"site,n\nD,40\nE,35\n",
            REQUEST,
            others=(("v1/by_site.csv", b"site,n\nD,40\nE,37\n"),),
        ),
        Planted(
            "by_site_final.csv",
            b"site,n\nD,40\nE,35\n",
            REQUEST,
            others=(("by_site_train_draft.csv", b"site,n\nD,40\nE,37\n"),),
        ),
        # ----------------------- ages over 89 in other spellings
        Planted("dicom_age.csv", b"subject,PatientAge,dice\n1,091Y,0.9\n2,064Y,0.8\n", AGE),
        Planted("age_words.txt", b"The patient, aged ninety-two, relapsed.\n", AGE),
        Planted("age_yo.txt", b"Case 4: 93 yo woman with a left lung nodule.\n", AGE),
        Planted("age_years_col.md", b"| case | age (years) |\n|---|---|\n| 1 | 95 |\n", AGE),
        Planted("dicom_age_quasi.csv", b"sex,PatientAge,site,dice\nF,064Y,A,0.9\nM,071Y,B,0.8\n", QUASI),
    ]


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    return [
        # an age's mean or median is no one's age (round 16's false alarms)
        (Planted("mean_age.txt", b"The mean age 91 in the oldest stratum.\n"), ()),
        (Planted("median_age.md", b"- median age 90.5 years\n"), ()),
        (Planted("mean_sd_age.md", b"Mean (SD) age: 91 (4)\n"), ()),
        (Planted("average_age.txt", b"Average age of 92 among those aged 90 or older.\n"), ()),
        (Planted("age_months.csv", b"subject,PatientAge,dice\n1,091M,0.9\n2,064W,0.8\n"), ()),
        # training and validation sets under one name in two files: disjoint groups
        (
            Planted(
                "val_by_site.csv",
                b"site,n\nD,40\nE,35\nF,21\n",
                (),
                (("train_by_site.csv", b"site,n\nD,42\nE,37\nF,23\n"),),
            ),
            (),
        ),
        (
            Planted(
                "test_counts.json",
                _json({"D": 40, "E": 35}),
                (),
                (("validation_counts.json", _json({"D": 41, "E": 36})),),
            ),
            (),
        ),
        (
            Planted(
                "validation/by_site.csv",
                b"site,n\nD,40\nE,35\n",
                (),
                (("train/by_site.csv", b"site,n\nD,41\nE,37\n"),),
            ),
            (),
        ),
        (
            Planted(
                "fold1_sites.csv",
                b"site,n\nD,40\nE,35\n",
                (),
                (("fold2_sites.csv", b"site,n\nD,41\nE,34\n"),),
            ),
            (),
        ),
        # stages far apart, of things, or a progress counter
        (Planted("flow_far.txt", b"Of 350 patients screened, 330 were enrolled.\n"), ()),
        (Planted("flow_sizes.md", b"Screened 35 mm nodules; 33 mm were included.\n"), ()),
        (Planted("flow_years.txt", b"Patients screened in 2004 and enrolled in 2005.\n"), ()),
        (Planted("flow_slices.txt", b"Of 35 slices screened, 33 were included.\n"), ()),
        (Planted("epochs.txt", b"Epoch 33/35 completed, loss 0.21\n"), ()),
        (Planted("sites_fraction.md", b"33/35 sites enrolled patients.\n"), ()),
        # shares of things, or large shares
        (Planted("every_tenth_slice.txt", b"Every eleventh slice was sampled.\n"), ()),
        (Planted("variance_share.txt", b"The model explains 0.061 of the variance.\n"), ()),
        (Planted("third_patients.txt", b"One patient in three relapsed.\n"), ()),
        (Planted("fraction_large.txt", b"Response: 20/33 patients.\n"), ()),
        # a day of a year that is no date, days of treatment
        (Planted("doy_other.csv", b"subject,scan_day_of_year\n1,200\n"), ()),
        (Planted("rt_day.txt", b"Dose recorded on treatment day 19 at doy-independent fractions.\n"), ()),
        (Planted("epoch_doy.json", _json({"epoch": 19, "lr": 0.001})), ()),
        # sex or site alone, aggregated, or groups that are large
        (Planted("sex_site_counts.csv", b"sex,site,n\nF,A,15\nM,B,20\n"), ()),
        (Planted("site_scanner.csv", b"site,scanner,dice\nA,CT1,0.91\nB,CT2,0.88\n"), ()),
        (Planted("site_hospital.csv", b"site,hospital,dice\nA,H1,0.91\nB,H2,0.88\n"), ()),
        (Planted("sex_only.csv", b"sex,dice\nF,0.91\nM,0.88\n"), ()),
        (
            Planted(
                "sex_site_large.csv",
                b"sex,site,dice\n"
                + b"".join(f"{s},A,0.9{i % 10}\n".encode() for s in "FM" for i in range(10)),
            ),
            (),
        ),
    ]


def known_limits() -> list[Planted]:
    """Variants that still pass after this round (the flow across two sentences tied by "Of
    these" is caught since airlock round 18: `planted_round18`)."""
    return [
        # a day with no "of the year": a treatment's day 19 reads the same
        Planted("scan_day.txt", b"Scanned on day 19.\n", DATES),
    ]

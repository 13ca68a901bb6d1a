"""Round 16 of the planted-leak run (leaks20): what round 15 left, and what an adversarial
reviewer tries next. Shares in other spellings ("one in eleven", "2 out of every 33", "61 per
mille", "61 ‰", a ``_permille`` column); counts hidden as the difference of two stages of the
study's flow (screened 35, enrolled 33); dates as an ISO week or ordinal date, or a year with
a day of the year or a week; ages over 89; a record-level table whose exact age with sex and
site picks people out; the same table twice in one request with one row changed. Caught
before and kept as guards: a ``prop`` column, small cells in a crosstab's margins only,
identifiers in JSON keys and Markdown link targets, counts in an image's file name and PNG
text. The false alarm round 15 left: "6.1 % had missing values" (no subject).

The dataset is round 14's 33 patients (`planted_round14.build_cohort`: pydicom's CT_small,
studied on 2004-01-19, a Monday of ISO week 4, day 19 of the year) and the project's earlier
release round 9's. `benign()` holds the look-alikes each rule must leave alone;
`known_limits()` what still passes (docs/egress-checks.md).
"""

from __future__ import annotations

import json

from tests.egress.planted_corpus import Planted
from tests.egress.planted_round10 import _png

SDC = ("sdc:threshold", "sdc:subcount", "sdc:differencing")
REQUEST_SHARE = ("sdc:request_share",)
FLOW = ("sdc:flow_differencing",)
REQUEST = ("sdc:differencing_request",)
QUASI = ("sdc:quasi_identifiers",)
DATES = ("dates",)
AGE = ("identifiers:age_over_89",)
IDS = ("identifiers",)
META = ("image_metadata",)
PROSE = ("sdc:prose",)


def _json(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _png_plain() -> bytes:
    return _png(Software=("text", "matplotlib 3.8"))


def leaks() -> list[Planted]:
    return [
        # ----------------------- a share of the cohort's 33 in other spellings (3 of 33 is one
        # in eleven, 2 of 33 is 61 per mille)
        Planted("one_in_eleven.txt", b"One in eleven patients relapsed.\n", REQUEST_SHARE),
        Planted("one_in_11.md", b"Grade 3 toxicity occurred in 1 in 11 patients.\n", REQUEST_SHARE),
        Planted("two_out_of_every.txt", b"Two out of every 33 withdrew consent.\n", REQUEST_SHARE),
        Planted("percent_words.txt", b"Overall, 6.1 percent had a dose reduction.\n", REQUEST_SHARE),
        Planted("one_of_every.md", b"One of every eleven patients relapsed.\n", REQUEST_SHARE),
        Planted("per_mille.txt", b"Relapse: 61 per mille.\n", REQUEST_SHARE),
        Planted(
            "share_in_words.md",
            b"| outcome | share |\n|---|---|\n| relapsed | 6.1 percent |\n",
            REQUEST_SHARE,
        ),
        Planted("per_mille_sign.md", "- Relapsed: 61 \u2030\n".encode(), REQUEST_SHARE),
        Planted("per_mille_col.csv", b"arm,n,relapsed_permille\ncontrol,33,61\ntreated,40,250\n", SDC),
        # ----------------------- a count as the difference of two stages of the flow
        Planted("screened_enrolled.json", _json({"patients_screened": 35, "patients_enrolled": 33}), FLOW),
        Planted("consort.csv", b"stage,patients\nenrolled,33\nanalysed,31\n", FLOW),
        Planted("consort.yaml", b"screened: 40\neligible: 36\nrandomised: 35\n", FLOW),
        # ----------------------- the scan's date (2004-01-19) as a week or a day of the year
        Planted("iso_week.txt", b"Scanned in week 2004-W04.\n", DATES),
        Planted("ordinal.txt", b"Study date (ISO ordinal): 2004-019\n", DATES),
        Planted("doy.json", _json({"study_year": 2004, "study_doy": 19}), DATES),
        Planted("km_2004-W04.png", _png_plain(), DATES),
        Planted("year_week.csv", b"subject,scan_year,scan_week_of_year\n1,2004,4\n", DATES),
        # ----------------------- an age over 89
        Planted("age_91.csv", b"subject,age,stage\n1,91,II\n2,64,III\n", AGE),
        Planted("oldest_age.json", _json({"oldest_age": 93}), AGE),
        Planted("age_prose.txt", b"The oldest patient was 94 years old.\n", AGE),
        Planted("age_table.md", b"| case | age at diagnosis |\n|---|---|\n| 1 | 92 |\n| 2 | 70 |\n", AGE),
        # ----------------------- an exact age with sex and site, row by row
        Planted(
            "quasi.csv", b"sex,age,site,dice\nF,34,A,0.91\nM,71,B,0.88\nF,52,A,0.90\nM,66,C,0.84\n", QUASI
        ),
        Planted(
            "quasi.json",
            _json(
                [
                    {"gender": "F", "age": 58, "centre": "A", "dice": 0.9},
                    {"gender": "M", "age": 61, "centre": "B", "dice": 0.8},
                ]
            ),
            QUASI,
        ),
        # ----------------------- the same table twice in one request, one row changed
        Planted(
            "by_site_v2.csv",
            b"site,n\nD,40\nE,35\nF,21\n",
            REQUEST,
            others=(("by_site_v1.csv", b"site,n\nD,40\nE,37\nF,21\n"),),
        ),
        Planted(
            "by_site_v2.json",
            _json({"D": 40, "E": 35, "F": 21}),
            REQUEST,
            others=(("by_site_v1.json", _json({"D": 40, "E": 37, "F": 21})),),
        ),
        # ----------------------- caught before, kept as guards
        Planted("prop_col.csv", b"outcome,n,prop\nrelapsed,33,0.061\nalive,33,0.939\n", SDC),
        Planted("margins_only.csv", b"site,male,female,total\nA,*,*,3\nB,*,*,30\ntotal,15,18,33\n", SDC),
        Planted("id_key.json", _json({"ZQX-0007": {"dice": 0.91}}), IDS),
        Planted("md_link.md", b"See [case 7](https://pacs.local/view?pid=ZQX0007).\n", IDS),
        Planted("km_relapsed_n3.png", _png_plain(), ("sdc:",)),
        Planted("png_text_count.png", _png(Description=("text", "relapsed n=3")), META),
        Planted("patients_missing_values.txt", b"6.1 % of patients had missing values.\n", REQUEST_SHARE),
    ]


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    return [
        # the data's shares: no subject, or records
        (Planted("missing_values.txt", b"6.1 % had missing values.\n"), ()),
        (
            Planted(
                "missing_fields.txt",
                b"Overall, 9.1 % had missing fields and 6.1 % of records had no stage.\n",
            ),
            (),
        ),
        (Planted("records_missing.md", b"Of all records, 6.1 % had missing values.\n"), ()),
        # other spellings of large shares, or of things
        (Planted("one_in_three.txt", b"One in three patients relapsed.\n"), ()),
        (Planted("ratio_slices.txt", b"One in eleven slices had motion artefacts.\n"), ()),
        (Planted("per_mille_large.txt", b"Relapse: 303 per mille.\n"), ()),
        (Planted("per_cent_large.txt", b"30.3 per cent had a dose reduction.\n"), ()),
        (Planted("error_percent.md", b"- Error rate: 6.1 percent\n"), ()),
        (Planted("prop_metric.csv", b"metric,prop\nsensitivity,0.939\nspecificity,0.909\n"), ()),
        (Planted("rate_per_1000.csv", b"arm,n,rate_per_1000_py\ncontrol,33,61\n"), ()),
        # counts side by side that are no stages, stages far apart
        (Planted("images_patients.json", _json({"patients": 33, "images": 35})), ()),
        (Planted("enrolled_by_site.csv", b"site,n_enrolled\nA,35\nB,33\n"), ()),
        (Planted("screened_large.json", _json({"patients_screened": 60, "patients_enrolled": 33})), ()),
        (Planted("sites_close.json", _json({"patients_site_a": 35, "patients_site_b": 33})), ()),
        # weeks and days that are no dataset date
        (Planted("week_followup.csv", b"week,n_scans\n4,40\n12,40\n"), ()),
        (Planted("scans_by_week.csv", b"year,week,n_scans\n2004,4,40\n2004,5,45\n"), ()),
        (Planted("year_week_other.json", _json({"year": 2010, "week": 4, "scanner": "CT2"})), ()),
        (Planted("iso_week_other.txt", b"Data frozen in week 2021-W10.\n"), ()),
        (Planted("km_2021-W10.png", _png_plain()), ()),
        # ages aggregated, or no one's age in years
        (Planted("age_topcoded.csv", b"age_group,n\n<50,15\n50-89,20\n90+,15\n"), ()),
        (Planted("mean_age.md", b"- Mean age: 91.4 years\n- Age range: 90 or older\n"), ()),
        (Planted("age_days.csv", b"subject,age_days,weight_kg\n1,95,3.4\n2,120,4.1\n"), ()),
        (Planted("followup.txt", b"Median follow-up: 93 months. Dice: 93.\n"), ()),
        # quasi-identifiers aggregated or banded
        (Planted("quasi_agg.csv", b"sex,age_group,site,n\nF,<60,A,15\nM,60+,B,20\n"), ()),
        # banded ages pass the age rule; the sex with the site, row by row, is flagged since
        # leaks21 (round 17: a quasi-identifier pair without an exact age)
        (Planted("quasi_banded.csv", b"sex,age_band,site,dice\nF,60-69,A,0.91\nM,70-79,B,0.88\n"), QUASI),
        # links without identifiers; a file name with a large count
        (Planted("md_link_benign.md", b"See [docs](https://example.org/methods#dice).\n"), ()),
        (Planted("km_n33.png", _png_plain()), ()),
        # the same table twice unchanged, or far apart
        (
            Planted(
                "by_site_same.csv",
                b"site,n\nD,40\nE,35\nF,21\n",
                (),
                (("by_site_copy.csv", b"site,n\nD,40\nE,35\nF,21\n"),),
            ),
            (),
        ),
        (
            Planted(
                "by_site_far.csv",
                b"site,n\nD,40\nE,35\nF,21\n",
                (),
                (("by_site_2023.csv", b"site,n\nD,52\nE,47\nF,33\n"),),
            ),
            (),
        ),
    ]


def known_limits() -> list[Planted]:
    """Variants that still pass after this round."""
    return [
        # an undirected change of one row: round 15's benign `diameter_delta_pct 9.1` of 33
        # fits 3 as this fits 2 (docs/egress-checks.md gives the numbers)
        Planted("size_change_one_row.csv", b"arm,n,size_change_pct\ncontrol,33,6.1\n", SDC),
        # caught since leaks21 (round 17): a day of the year with no year beside a scan, two
        # stages of the flow in a sentence, sex and site row by row
    ]

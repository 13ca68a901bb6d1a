"""Round 13 of the planted-leak run (leaks17): shares whose whole is known although the file
does not state it beside them (the cohort size stated by another output of the same request,
or elsewhere in the same document; a subgroup's size given only in prose above its table),
shares written as JSON strings (``"relapse": "3.0%"``) and as ``_rate``/``_prop``/``_frac``
fractions, and shares of people whose names contain a metric's word (``progressed_pct``,
``recalled_pct``). The project's earlier release is round 9's (`planted_round9.EARLIER`: 100
patients, sites A 45, B 52, C 30); the request's own wholes here are 33, 44 and 16, of which
the shares fit no whole count of 100. `benign()` holds realistic outputs of the same shapes
(metric tables in %, rates per 1000 person-years, shares of large subgroups); `known_limits()`
what still passes after this round (docs/egress-checks.md).
"""

from __future__ import annotations

import json

from tests.egress.planted_corpus import Planted
from tests.egress.planted_round12 import _xlsx

SDC = ("sdc:threshold", "sdc:subcount", "sdc:differencing")
PROSE = ("sdc:prose", "sdc:threshold")
REQUEST_SHARE = ("sdc:request_share",)
RELEASED_SHARE = ("sdc:released_share",)

COHORT_CSV = ("cohort.csv", b"cohort,n\nall,33\n")
SUMMARY_JSON = ("summary.json", json.dumps({"patients": 33, "median_age": 61}).encode())
SITES_CSV = ("sites.csv", b"site,n\nA,44\nB,60\n")
ARMS_CSV = ("arms.csv", b"arm,n\ncontrol,33\ntreated,40\n")
TABLE1_MD = (
    "table1.md",
    b"# Table 1\n\nStudy cohort (N = 33).\n\n| stage | n |\n|---|---|\n| I-II | 18 |\n| III-IV | 15 |\n",
)


def leaks() -> list[Planted]:
    return [
        # ----------------------- a share of a whole that another output of the request states
        # 6.1 % of the 33 in cohort.csv is 2 people; 4.5 % of site A's 44 is 2; 9.1 % of 33 is 3
        Planted("withdrew.txt", b"Overall, 6.1 % withdrew consent.\n", REQUEST_SHARE, (COHORT_CSV,)),
        Planted(
            "withdrawn_pct.json", json.dumps({"withdrawn_pct": 6.1}).encode(), REQUEST_SHARE, (SUMMARY_JSON,)
        ),
        Planted("site_died_pct.csv", b"site,died_pct\nA,4.5\nB,30.0\n", REQUEST_SHARE, (SITES_CSV,)),
        Planted("relapse.md", b"# Relapse\n\n9.1 % of the cohort relapsed.\n", REQUEST_SHARE, (TABLE1_MD,)),
        Planted(
            "site_relapse.xlsx",
            _xlsx([["site", "relapsed_pct"], ["A", 6.8], ["B", 25.0]]),
            REQUEST_SHARE,
            (SITES_CSV,),
        ),
        Planted("cohort.yaml", b"relapse_percent: 12.1\n", REQUEST_SHARE, (SUMMARY_JSON,)),
        # ----------------------- ... or that the same document states elsewhere
        Planted(
            "cohort_report.md", b"# Cohort (N = 33)\n\nOverall, 6.1 % withdrew consent.\n", REQUEST_SHARE
        ),
        # ... or that the project released: 3.0 % of its 100 is 3, 3.8 % of site B's 52 is 2
        Planted("bare_share.txt", b"Overall, 3.0 % withdrew consent.\n", RELEASED_SHARE),
        Planted("site_b_share.txt", b"3.8 % of the patients at site B died.\n", RELEASED_SHARE),
        Planted("relapse_str.json", json.dumps({"relapse": "3.0%"}).encode(), RELEASED_SHARE),
        # ----------------------- a subgroup's size given only in prose, its shares in a table
        Planted(
            "women.md",
            b"Of the 12 women:\n\n| outcome | % |\n|---|---|\n| relapsed | 25.0 |\n| remission | 75.0 |\n",
            PROSE,
        ),
        Planted(
            "women_n.md",
            b"## Women (n = 12)\n\n| outcome | pct |\n|---|---|\n| relapsed | 16.7 |\n| remission | 83.3 |\n",
            PROSE,
        ),
        Planted(
            "smokers_among.txt",
            b"Among the 16 smokers:\n\noutcome     pct\nprogressed  12.5\nstable      87.5\n",
            PROSE,
        ),
        Planted("smokers.txt", b"Among the 16 smokers, 12.5 % progressed within a year.\n", PROSE),
        Planted(
            "smokers_aligned.txt",
            b"Smokers (n = 16)\n\noutcome      percent\nprogressed   12.5\nstable       87.5\n",
            PROSE,
        ),
        # ----------------------- shares as JSON strings, fractions in _rate/_prop/_frac columns
        Planted(
            "sites_str.json",
            json.dumps([{"site": "A", "relapse": "6.8%"}, {"site": "B", "relapse": "25.0%"}]).encode(),
            REQUEST_SHARE,
            (SITES_CSV,),
        ),
        Planted(
            "summary_nested.json",
            json.dumps({"summary": {"relapse": "9.1%"}}).encode(),
            REQUEST_SHARE,
            (COHORT_CSV,),
        ),
        Planted("relapse_str.yaml", b"relapse: '6.1 %'\n", REQUEST_SHARE, (SUMMARY_JSON,)),
        Planted("relapse_rate.csv", b"arm,n,relapse_rate\ncontrol,33,0.0303\ntreated,40,0.25\n", SDC),
        Planted(
            "death_prop.csv", b"arm,death_prop\ncontrol,0.0606\ntreated,0.25\n", REQUEST_SHARE, (ARMS_CSV,)
        ),
        Planted(
            "withdrawal_frac.tsv",
            b"arm\twithdrawal_frac\ncontrol\t0.0909\ntreated\t0.25\n",
            REQUEST_SHARE,
            (ARMS_CSV,),
        ),
        # ----------------------- shares of people named with a metric's word
        Planted("progressed.csv", b"arm,n,progressed_pct\ncontrol,33,6.1\ntreated,40,25.0\n", SDC),
        Planted("recalled.csv", b"site,patients,recalled_pct\nA,33,9.1\nB,40,25.0\n", SDC),
        Planted("changed_regimen.csv", b"arm,n,changed_regimen_pct\ncontrol,33,6.1\ntreated,40,25.0\n", SDC),
    ]


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    return [
        # metrics in %, beside a count of cases, named in words the old list lacked
        (Planted("metrics.csv", b"model,cases,tpr_pct,fpr_pct,mape_pct\nunet,33,93.9,6.1,9.1\n"), ()),
        (
            Planted(
                "seg_metrics.csv",
                b"model,patients,dice_pct,hd95_mm,volume_change_pct\nunet,33,87.9,6.1,3.0\n",
            ),
            (),
        ),
        (Planted("auc.json", json.dumps({"patients": 33, "auc": "91.0%", "accuracy": "87.9%"}).encode()), ()),
        (Planted("gpu.txt", b"Overall, 6.1 % of GPU time was idle.\n"), ()),
        # rates per 1000 person-years: no share of the row's people
        (
            Planted(
                "incidence.csv",
                b"site,n,person_years,rate_per_1000_py\nX,33,120.5,24.9\nY,44,150.0,20.0\n",
            ),
            (),
        ),
        # shares of large wholes stated by another output, or by the same document
        (Planted("withdrew_large.txt", b"Overall, 30.3 % withdrew consent.\n", (), (COHORT_CSV,)), ()),
        (Planted("site_pct_large.csv", b"site,died_pct\nA,22.7\nB,30.0\n", (), (SITES_CSV,)), ()),
        (
            Planted(
                "women_large.md",
                b"Of the 40 women:\n\n| outcome | % |\n|---|---|\n"
                b"| relapsed | 25.0 |\n| remission | 75.0 |\n",
            ),
            (),
        ),
        (
            Planted(
                "dice_women.md",
                b"Of the 12 women:\n\n| metric | % |\n|---|---|\n| dice | 91.7 |\n| sensitivity | 83.3 |\n",
            ),
            (),
        ),
        (Planted("rate_large.csv", b"arm,n,relapse_rate\ncontrol,33,0.3030\ntreated,40,0.25\n"), ()),
        (Planted("relapse_str_large.json", json.dumps({"patients": 33, "relapse": "30.3%"}).encode()), ()),
        # a report whose percentages are model metrics, with its cohort size
        (
            Planted(
                "report.md", b"# Results (N = 33)\n\nThe model reached 6.1 % error and 93.9 % accuracy.\n"
            ),
            (),
        ),
    ]


def known_limits() -> list[Planted]:
    """Variants that still pass after this round."""
    return [
        # the dataset's cohort size, never stated by any output: counted since round 14, but the
        # corpus's dataset here has one patient (round 14 plants it with a dataset of 33)
        Planted("withdrew_dataset.txt", b"Overall, 6.1 % withdrew consent.\n", REQUEST_SHARE),
    ]

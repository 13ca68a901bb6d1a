"""Round 10b of the planted-leak run (leaks14b): differencing against the project's earlier
release (`planted_round9.EARLIER`: 100 patients, 12 relapsed, sites A 45, B 52, C 30, arms
50/50, 17 excluded) by way of shares, prose, derived and cumulative counts, rounding, and other
files and formats. Round 10's two known limits (a count come back as a percentage, a total in
prose) are leaks here. `benign()` holds realistic outputs of the same shapes; `known_limits()`
what still passes after this round (docs/egress-checks.md).
"""

from __future__ import annotations

import json

from tests.egress.planted_corpus import Planted, _xlsx

RELEASES = ("sdc:differencing_releases",)


def leaks() -> list[Planted]:
    return [
        # round 10's limits: 12 relapsed of 100 come back as 11.0 %; 99 patients in a sentence
        Planted("share_today.csv", b"cohort,relapsed_pct\nall,11.0\n", RELEASES),
        Planted("prose_today.txt", b"Of the 99 patients included, most were treated at site A.\n", RELEASES),
        # a proportion rather than a percentage: 0.11 of 100
        Planted("share_proportion.csv", b"cohort,relapsed_proportion\nall,0.11\n", RELEASES),
        # a share with its denominator in the same row: 11.0 % of 100 is 11 relapsed
        Planted("share_with_n.csv", b"cohort,n,relapsed (%)\nall,100,11.0\n", RELEASES),
        # shares in a summary, in YAML, in a Markdown table, in a workbook
        Planted("summary_share.json", json.dumps({"relapsed_percent": 11.0}).encode(), RELEASES),
        Planted("share.yaml", b"relapsed_pct: 11.0\n", RELEASES),
        Planted("share.md", b"| cohort | % relapsed |\n|---|---|\n| all | 11.0 |\n", RELEASES),
        Planted("share.xlsx", _xlsx([["cohort", "relapsed_pct"], ["all", "11.0"]]), RELEASES),
        # the cohort total one fewer in a report's sentence, in Markdown
        Planted("report.md", b"# Results\n\nA total of 99 patients were analysed.\n", RELEASES),
        Planted("methods.txt", b"The study cohort comprised 99 patients treated at three sites.\n", RELEASES),
        # the same cohort one fewer in another file, under another name, from another job
        Planted("overview.tsv", b"group\tsubjects\noverall\t99\n", RELEASES),
        # a count derived from a mean and a sum: 6059 / 61.2 is 99 patients
        Planted("age_summary.json", json.dumps({"age_mean": 61.2, "age_sum": 6059}).encode(), RELEASES),
        Planted("age_table.csv", b"cohort,age_mean,age_sum\nall,61.2,6059\n", RELEASES),
        # a cumulative table ends at the cohort's total
        Planted("accrual.csv", b"month,cumulative_patients\n2021-01,40\n2021-02,75\n2021-03,99\n", RELEASES),
        # rounded to 5, yet 52 -> 50 is still a difference under the threshold
        Planted("sites_rounded.csv", b"site,n\nA,45\nB,50\nC,30\n", RELEASES),
    ]


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    return [
        # the cohort grew: 25 % and 140 patients are far from 12 of 100
        (Planted("share_grown.csv", b"cohort,relapsed_pct\nall,25.0\n"), ()),
        (Planted("share_grown_n.csv", b"cohort,n,relapsed (%)\nall,140,30.0\n"), ()),
        # the released count's own share, again
        (Planted("share_same.csv", b"cohort,relapsed_pct\nall,12.0\n"), ()),
        (Planted("prose_grown.txt", b"Of the 140 patients included, most were treated at site A.\n"), ()),
        (Planted("prose_same.md", b"A total of 100 patients were analysed.\n"), ()),
        # model metrics in percent name no count the project released
        (Planted("metrics.csv", b"model,accuracy_pct,dice_pct\nunet,91.0,87.5\n"), ()),
        (Planted("age_stats.csv", b"cohort,age_mean,age_sd\nall,61.2,9.8\n"), ("sdc:magnitudes",)),
        (Planted("accrual_grown.csv", b"month,cumulative_patients\n2022-01,120\n2022-02,140\n"), ()),
    ]


def known_limits() -> list[Planted]:
    """Variants that still pass after this round."""
    return [
        # (the total released before and the subgroups now, 51 + 48 = 99, is caught since
        # round 11: a breakdown's sum is compared with the same dimension's released sum,
        # `planted_round11.leaks`)
        # a share of a total released as a share, with no released count of it: 11.1 % of 99
        Planted("excluded_share.csv", b"cohort,withdrawn_pct\nall,11.1\n", RELEASES),
    ]

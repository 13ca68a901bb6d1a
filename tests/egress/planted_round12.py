"""Round 12 of the planted-leak run (leaks16): shares whose count was never released (a
percentage beside its row's count of people, a percentage of a total the project released,
in tables, summaries and sentences, a percentage of a one-digit total), counting idioms
("half a dozen", "a couple of", "a pair of", "eight dozen"), and long tables whose value
column mixes counts with measurements. The project's earlier release is round 9's
(`planted_round9.EARLIER`: 100 patients, sites A 45, B 52, C 30, arms 50/50). `benign()` holds
realistic outputs of the same shapes, among them long tables by month and outcome that had
raised false alarms; `known_limits()` what still passes after this round
(docs/egress-checks.md).
"""

from __future__ import annotations

import json

from tests.egress.planted_corpus import Planted
from tests.egress.planted_round11 import _workbook

SDC = ("sdc:threshold", "sdc:subcount", "sdc:differencing")
PROSE = ("sdc:prose", "sdc:threshold")
RELEASED_SHARE = ("sdc:released_share",)
RELEASES = ("sdc:differencing_releases",)


def _xlsx(rows: list[list[object]]) -> bytes:
    import io

    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for row in rows:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def leaks() -> list[Planted]:
    return [
        # ------------------------------------ a share beside its row's count of people
        # 3.8 % of site B's 52 patients is 2 deaths; 4 % of the control arm's 50 is 2
        Planted("site_share.csv", b"site,n,died_pct\nA,45,22.2\nB,52,3.8\n", SDC),
        Planted(
            "site_share.md",
            b"| site | patients | died_pct |\n|---|---|---|\n| A | 45 | 22.2 |\n| B | 52 | 3.8 |\n",
            SDC,
        ),
        Planted(
            "arm_proportion.csv", b"arm,n_patients,died_proportion\ncontrol,50,0.04\ntreated,50,0.24\n", SDC
        ),
        Planted("site_share_paren.csv", b"site,patients,Relapsed (%)\nA,45,24.4\nB,52,5.8\n", SDC),
        Planted("site_share_signs.csv", b"site,n,died\nA,45,22.2%\nB,52,3.8%\n", SDC),
        Planted("summary_share.json", json.dumps({"patients": 83, "withdrawn_pct": 1.2}).encode(), SDC),
        Planted(
            "site_share.xlsx", _xlsx([["site", "n", "relapsed_pct"], ["A", 45, 24.4], ["B", 52, 5.8]]), SDC
        ),
        # ------------------------------------ a share of a total released earlier
        # 3.0 % of the released 100 is 3 withdrawals; 3.8 % of site B's released 52 is 2
        Planted("withdrawn_pct.csv", b"cohort,withdrawn_pct\nall,3.0\n", RELEASED_SHARE),
        Planted("withdrawn.json", json.dumps({"withdrawn_percent": 2.0}).encode(), RELEASED_SHARE),
        Planted("cohort.yaml", b"withdrawn_pct: 4.0\n", RELEASED_SHARE),
        Planted("site_died_pct.csv", b"site,died_pct\nA,22.2\nB,3.8\nC,30.0\n", RELEASED_SHARE),
        Planted(
            "site_died.md", b"| Site | Died (%) |\n|---|---|\n| A | 22.2 |\n| C | 10.0 |\n", RELEASED_SHARE
        ),
        Planted(
            "withdrawals.txt",
            b"3.0 % of the cohort withdrew consent before the first follow-up scan.\n",
            RELEASED_SHARE,
        ),
        Planted(
            "abstract.md",
            b"# Results\n\n2 % of all patients died within 30 days of surgery.\n",
            RELEASED_SHARE,
        ),
        # ------------------------------------ a share of a one-digit total, in a sentence
        Planted("site_b.txt", b"Of the 52 patients at site B, 3.8 % died within a year.\n", PROSE),
        Planted("withdrawal_of8.txt", b"Withdrawal: 12.5 % (of 8).\n", PROSE),
        Planted("earlier_release.txt", b"12.5 % of the 8 patients in the earlier release withdrew.\n", PROSE),
        # ------------------------------------ counting idioms
        Planted("half_dozen.txt", b"Half a dozen patients relapsed after surgery.\n", PROSE),
        Planted("couple.md", b"A couple of patients withdrew consent.\n", PROSE),
        Planted("pair.txt", b"A pair of patients died within 30 days.\n", PROSE),
        Planted("bullets.md", b"- relapsed: half a dozen\n- remission: forty\n", PROSE),
        Planted("eight_dozen.txt", b"A total of eight dozen patients were analysed.\n", RELEASES),
        # ------------------------------------ long tables: counts among measurements
        Planted(
            "long_mixed.csv",
            b"site,variable,value\nA,relapsed,3\nA,median_months,24\nB,relapsed,25\nB,median_months,30\n",
            SDC,
        ),
        Planted(
            "long_window.csv", b"outcome,window,value\nrelapsed,6_months,4\nrelapsed,12_months,25\n", SDC
        ),
        Planted(
            "month_outcome_small.txt",
            b"month  outcome    n\n3      relapsed   4\n3      remission  95\n6      relapsed   25\n",
            SDC,
        ),
        Planted("month_outcome_small.tsv", b"month\toutcome\tn\n3\trelapsed\t4\n6\trelapsed\t25\n", SDC),
    ]


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    by_month = [(3, "relapsed", 25), (3, "remission", 95), (6, "relapsed", 30), (6, "remission", 90),
                (12, "relapsed", 45), (12, "remission", 75)]  # fmt: skip
    return [
        # long tables by month and outcome, every count at or above the threshold
        (
            Planted(
                "month_outcome.csv",
                ("month,outcome,n\n" + "".join(f"{m},{o},{n}\n" for m, o, n in by_month)).encode(),
            ),
            (),
        ),
        (
            Planted(
                "month_outcome.txt",
                ("month  outcome    n\n" + "".join(f"{m:<6} {o:<10} {n}\n" for m, o, n in by_month)).encode(),
            ),
            (),
        ),
        (
            Planted(
                "month_outcome.tsv",
                ("month\toutcome\tn\n" + "".join(f"{m}\t{o}\t{n}\n" for m, o, n in by_month)).encode(),
            ),
            (),
        ),
        # long tables of measurements by outcome: months, not people
        (
            Planted(
                "median_by_outcome.csv",
                b"outcome,statistic,value\nrelapsed,median_months,7\nremission,median_months,24\n",
            ),
            (),
        ),
        (
            Planted(
                "time_to_event.csv",
                b"outcome,variable,value\nrelapsed,time_to_event_months,7\nremission,follow_up_months,24\n",
            ),
            (),
        ),
        (
            Planted(
                "long_mixed_large.csv",
                b"site,variable,value\nA,relapsed,25\nA,median_months,7\nB,relapsed,30\nB,median_months,9\n",
            ),
            (),
        ),
        # shares beside or of a count that are large, and metrics' shares
        (Planted("site_share_large.csv", b"site,n,died_pct\nA,45,22.2\nB,52,25.0\n"), ()),
        (Planted("model_error.csv", b"model,patients,error_pct,dice_pct\nunet,100,4.0,87.5\n"), ()),
        (Planted("withdrawn_large.csv", b"cohort,withdrawn_pct\nall,15.0\n"), ()),
        (Planted("site_died_large.csv", b"site,died_pct\nA,22.2\nB,25.0\n"), ()),
        (Planted("relapse_share.txt", b"Relapse occurred in 25 % of the cohort.\n"), ()),
        (Planted("site_a.txt", b"Of the 45 patients at site A, 22.2 % died within a year.\n"), ()),
        (Planted("folds.txt", b"In 80 % of 5 cross-validation folds the model converged.\n"), ()),
        # number words that are no small count
        (Planted("dozen.txt", b"A dozen patients were excluded for motion artefacts.\n"), ()),
        (Planted("gleason.txt", b"Patients with a Gleason score of 7 were analysed separately.\n"), ()),
        (Planted("couple_days.txt", b"Scans were repeated a couple of days later.\n"), ()),
        (Planted("workbook.xlsx", _workbook()), ()),
    ]


def known_limits() -> list[Planted]:
    """Variants that still pass after this round."""
    return [
        # a share of a subgroup whose size was released only in prose
        Planted("subgroup_share.txt", b"3.0 % of the patients at site B died.\n", RELEASED_SHARE),
    ]

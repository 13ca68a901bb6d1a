"""Round 15 of the planted-leak run (leaks19): what round 14 left. Shares of people said in
prose without an outcome word ("6.1 % had a dose reduction", "9.1 % developed grade 3
toxicity", "occurred in 6.1 %", "Relapse rate: 6.1 %") and a count with its share in brackets
before its noun ("2 (6.1 %) patients relapsed"); a proportion named ``share``
(``relapse_share``). And the false alarms round 14 left: a measured change with no direction
(``volume_change_pct``, ``hu_shift_pct``), shares of the data (``missing_pct``), metrics written
as phrases in row labels (``false positive rate``), a clause on things ("Of the lesions,
6.1 % progressed").

The dataset is round 14's 33 patients (`planted_round14.build_cohort`) and the project's
earlier release round 9's. `benign()` holds the look-alikes each rule must leave alone;
`known_limits()` what still passes (docs/egress-checks.md). The cohort counted from a clinical
table, and one patient under two linked IDs, are tested in `test_checks_round15.py` (they need
datasets of their own).
"""

from __future__ import annotations

import json

from tests.egress.planted_corpus import Planted

SDC = ("sdc:threshold", "sdc:subcount", "sdc:differencing")
REQUEST_SHARE = ("sdc:request_share",)
PROSE = ("sdc:prose",)


def leaks() -> list[Planted]:
    return [
        # ----------------------- a share of the cohort's 33 in prose, with what they had or
        # underwent (6.1 % is 2 of 33, 9.1 % 3, 12.1 % 4)
        Planted("had_dose_reduction.txt", b"Overall, 6.1 % had a dose reduction.\n", REQUEST_SHARE),
        Planted("developed_toxicity.md", b"# Safety\n\n9.1 % developed grade 3 toxicity.\n", REQUEST_SHARE),
        Planted("underwent_surgery.txt", b"12.1 % underwent salvage surgery.\n", REQUEST_SHARE),
        Planted("required_icu.txt", b"Of them, 6.1 % required intensive care.\n", REQUEST_SHARE),
        Planted("occurred_in.txt", b"A dose reduction occurred in 6.1 %.\n", REQUEST_SHARE),
        Planted("seen_in.md", b"Grade 3 toxicity was observed in 9.1 %.\n", REQUEST_SHARE),
        Planted("named_rate.md", b"## Outcomes\n\n- Relapse rate: 9.1 %\n", REQUEST_SHARE),
        Planted("named_outcome.txt", b"Relapsed: 6.1 %\nAlive: 93.9 %\n", REQUEST_SHARE),
        # ----------------------- a count with its share in brackets before its noun
        Planted("count_share_noun.txt", b"2 (6.1 %) patients relapsed.\n", PROSE),
        Planted("word_share_outcome.md", b"Two (6.1%) withdrew consent.\n", PROSE),
        Planted("count_share_of.txt", b"3 (9.1 %) of the patients progressed.\n", PROSE),
        # ----------------------- a proportion named "share"
        Planted("relapse_share.json", json.dumps({"relapse_share": 0.061}).encode(), REQUEST_SHARE),
        Planted("relapse_share.csv", b"arm,n,relapse_share\ncontrol,33,0.061\ntreated,40,0.25\n", SDC),
        # ----------------------- guards of the new rules' edges (caught before, kept)
        # a data word beside a word for people is people's share
        Planted("patients_missing.json", json.dumps({"patients_missing_pct": 6.1}).encode(), REQUEST_SHARE),
        # an undirected change whose every row is a whole count of its row's people
        Planted("hu_shift_rows.csv", b"arm,n,hu_shift_pct\ncontrol,33,6.1\ntreated,40,25.0\n", SDC),
        # a directed change is people's (round 14's rule)
        Planted("size_reduction.yaml", b"size_reduction_pct: 6.1\n", REQUEST_SHARE),
    ]


def benign() -> list[tuple[Planted, tuple[str, ...]]]:
    """(output, the checks it flags by design)."""
    return [
        # a measured change with no direction: how much a measurement moved
        (Planted("volume_change.json", json.dumps({"volume_change_pct": 6.1}).encode()), ()),
        (Planted("hu_shift.yaml", b"hu_shift_pct: 9.1\n"), ()),
        (
            Planted("volume_change_arms.csv", b"arm,n,volume_change_pct\ncontrol,33,6.1\ntreated,40,12.7\n"),
            (),
        ),
        (
            Planted(
                "diameter_delta.md", b"| arm | n | diameter_delta_pct |\n|---|---|---|\n| a | 33 | 9.1 |\n"
            ),
            (),
        ),
        # shares of the data
        (Planted("missing.json", json.dumps({"missing_pct": 6.1, "completeness_pct": 93.9}).encode()), ()),
        (Planted("missing_values.csv", b"variable,pct_missing_values\nage,6.1\nstage,9.1\n"), ()),
        (
            Planted(
                "split_share.json",
                json.dumps({"train_share": 0.848, "val_share": 0.061, "test_share": 0.091}).encode(),
            ),
            (),
        ),
        (Planted("val_fraction.yaml", b"train_fraction: 0.848\nval_fraction: 0.061\n"), ()),
        # metrics written as phrases
        (Planted("metric_phrases.csv", b"metric,pct\nfalse positive rate,6.1\narea under curve,90.9\n"), ()),
        (
            Planted(
                "metric_phrases.md",
                b"| metric | pct |\n|---|---|\n"
                b"| false positive rate | 6.1 |\n| true negative rate | 93.9 |\n",
            ),
            (),
        ),
        (Planted("fpr.json", json.dumps({"false_positive_rate": 0.0606}).encode()), ()),
        (
            Planted(
                "ppv_phrase.json",
                json.dumps(
                    {"positive predictive value": "93.9%", "negative predictive value": "9.1%"}
                ).encode(),
            ),
            (),
        ),
        # prose about things, and large shares
        (Planted("lesions_progressed.txt", b"Of the lesions, 6.1 % progressed.\n"), ()),
        (Planted("slices_had.txt", b"Across slices, 6.1 % had motion artefacts.\n"), ()),
        (Planted("occurred_slices.txt", b"Motion artefacts occurred in 6.1 % of slices.\n"), ()),
        (Planted("named_metrics.md", b"- Error rate: 6.1 %\n- Missing: 9.1 %\n- Tumour: 6.1 %\n"), ()),
        (Planted("large_had.txt", b"Overall, 30.3 % had a dose reduction.\n"), ()),
        (Planted("count_share_large.txt", b"12 (36.4 %) patients relapsed.\n"), ()),
    ]


def known_limits() -> list[Planted]:
    """Variants that still pass after this round."""
    return [
        # an undirected change of one row: a share of people and a measurement that happens to
        # fit one whole count read alike (round 14 blocked both; round 15 passes both)
        Planted("size_change_one_row.csv", b"arm,n,size_change_pct\ncontrol,33,6.1\n", SDC),
    ]

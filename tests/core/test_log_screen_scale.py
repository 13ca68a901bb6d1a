"""The log screen at a real dataset's scale (round 14b): its memory grows with the
identifiers' own size, not with every prefix of every encoded form of each.

Round 14a stored every prefix of every squeezed, reversed, ROT13, hex and base64 form of each
identifier (for the live hold-back), and every prefix of every UID's digits (for labelled
parts): several KiB per identifier, hundreds of MB for a dataset of 100,000. A bound per
identifier, measured by tracemalloc (allocations, not time), keeps that from coming back."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from egress_review.folding import fold
from egress_review.logscreen import LogScreen
from tre.policy import load_policy

REPO = Path(__file__).resolve().parents[2]
# Bytes of Python objects a screen may hold per identifier of the mix below, built and used
# once live (which builds its lazy hold-back index). The identifiers themselves, their forms
# and the matchers' indexes take about 2-3 KiB; the stored prefixes took more than 10.
MAX_BYTES_PER_IDENTIFIER = 6 * 1024


def _dataset(patients: int) -> set[str]:
    """Ten identifiers a patient, as DICOM headers give them: a person name, patient ID,
    birth and study dates, accession number, and study, series and instance UIDs."""
    out: set[str] = set()
    for p in range(patients):
        study = f"1.2.826.0.1.3680043.8.498.{p * 7919 + 104729}"
        out |= {
            f"SURNAME{p}^GIVEN{p % 97}",
            f"PAT{p:07d}",
            f"19{30 + p % 60}{p % 12 + 1:02d}{p % 28 + 1:02d}",
            f"20{10 + p % 15}{(p + 5) % 12 + 1:02d}{(p + 3) % 28 + 1:02d}",
            f"ACC{p * 31 + 10_000_000:08d}",
            study,
            f"{study}.1",
            f"{study}.2",
            f"{study}.1.1",
            f"{study}.1.2",
        }
    return out


def test_a_screen_holds_memory_in_proportion_to_its_identifiers():
    policy = load_policy("default", REPO / "policies")
    identifiers = _dataset(40)
    # The look-alikes table is the process's, loaded once (`egress_review.folding`), not the
    # screen's: identifiers are folded since redteam15, and a name with an accent loads it.
    fold("Müller")
    tracemalloc.start()
    try:
        screen = LogScreen.for_policies([policy], identifiers)
        # A live judgement builds the hold-back index; a line ending in an identifier's start
        # waits. (The first line's number has more digits than a line gives the cross-line
        # numeric search, redteam15: "1", "0", "3" then "12" could be a date's first digits.)
        screening = screen.screen_log(b"epoch 1 loss 0.3105\nsubject SURNAME12\n", final=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert screening.decided_to == len(b"epoch 1 loss 0.3105\n")
    assert peak / len(identifiers) < MAX_BYTES_PER_IDENTIFIER, f"{peak / len(identifiers):.0f} bytes each"


def test_the_screen_still_finds_every_kind_at_scale():
    """The bounded indexes catch what the stored prefixes did: a UID, its labelled parts, a
    name squeezed and reversed, an MRN run across lines, a hex-encoded one; live, an
    identifier's hex form begun at a line's end waits for the next line."""
    policy = load_policy("default", REPO / "policies")
    screen = LogScreen.for_policies([policy], _dataset(100))
    uid = "1.2.826.0.1.3680043.8.498." + str(23 * 7919 + 104729)
    digits = uid.replace(".", "")
    log = (
        "epoch 1 loss 0.3\n"
        f"reading {uid}.1.2\n"
        f"part 1: {digits[:12]} then part 2: {digits[12:]}\n"
        "epoch 2 loss 0.2\n"
        "who: 42nevig^42emanrus\n"
        "mrn PAT000\n"
        "0012 ok\n"
        f"blob {b'PAT0000077'.hex()}\n"
        "epoch 3 loss 0.1\n"
    )
    shown = [line.withheld for line in screen.screen_log(log.encode(), final=True).lines]
    assert shown == [False, True, True, False, True, True, True, True, False]
    live = screen.screen_log(f"epoch 1\nid {b'PAT0000077'.hex()[:7]}\n".encode(), final=False)
    assert live.decided_to == len(b"epoch 1\n")

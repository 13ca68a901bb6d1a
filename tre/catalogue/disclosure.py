"""Small-count suppression and rounding of the figures a node publishes about a dataset.

One rule for the catalogue and for count answers alike, so the same true figure is always
shown the same way: a count under the policy's ``min_count`` (zero included) is withheld
(``None``), any other is rounded to the nearest multiple of ``round_to``, halves upwards.
Rounding is deterministic on purpose: random rounding would give a different answer each
time the same query is asked, and the average of many answers would reveal the true count.
"""

from __future__ import annotations


def release_count(true_count: int, min_count: int, round_to: int) -> int | None:
    """The figure to show for ``true_count``, or ``None`` when it must be withheld.

    ``min_count`` is a multiple of ``round_to`` (`Policy.catalogue_limits` makes it so),
    hence a shown figure is never below ``min_count``.
    """
    if true_count < min_count:
        return None
    return ((true_count + round_to // 2) // round_to) * round_to


def release_subjects_and_studies(
    subjects: int, studies: int, min_count: int, round_to: int
) -> tuple[int | None, int | None]:
    """Shown (subjects, studies): the number of studies is withheld too when the subjects
    are, since the threshold is about people, not events: "25 studies" of 3 patients still
    says that a small group exists and how often it was scanned."""
    shown_subjects = release_count(subjects, min_count, round_to)
    if shown_subjects is None:
        return None, None
    return shown_subjects, release_count(studies, min_count, round_to)

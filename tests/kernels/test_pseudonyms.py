"""Pseudonyms of a cohort's series: what a manifest's name map may hold, how new ones are numbered."""

from __future__ import annotations

from pathlib import Path

from tre.kernels.pseudonyms import assign_names, number_of, pseudonym, valid_names


def test_only_canonical_names_are_pseudonyms() -> None:
    assert pseudonym(7) == "series-00007" and number_of("series-00007") == 7
    assert number_of("series-123456") == 123456
    for name in ("series-7", "series-000007", "series-00007.nii.gz", "1.2.3", "../series-00001"):
        assert number_of(name) is None, name


def test_a_damaged_map_never_gives_a_uid_two_names_or_a_name_two_uids() -> None:
    raw = {
        "series-00002": "1.2.3",
        "series-00001": "1.2.3",  # the same UID again: the lower name is kept
        "series-00003": 42,  # not a UID
        "series-7": "1.2.4",  # not a pseudonym
        "series-00004": "1.2.5",
    }
    assert valid_names(raw) == {"series-00001": "1.2.3", "series-00004": "1.2.5"}
    assert valid_names(["series-00001"]) == {}


def test_new_series_are_numbered_above_every_name_known_or_on_disk(tmp_path: Path) -> None:
    assert assign_names(["b", "a"], {}, tmp_path) == {"series-00001": "a", "series-00002": "b"}
    (tmp_path / "series-00009.nii.gz").write_bytes(b"")  # a file no manifest describes
    names = assign_names(["a", "c", "b"], {"series-00003": "b"}, tmp_path)
    assert names == {"series-00003": "b", "series-00010": "a", "series-00011": "c"}

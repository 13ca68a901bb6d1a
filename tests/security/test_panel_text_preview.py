"""The panel's text preview decodes only what it shows, whatever the file's size."""

from __future__ import annotations

from egress_review.panel.preview import MAX_TEXT_CHARS, text_excerpt


def test_excerpt_of_a_huge_file_is_bounded_and_marked_truncated():
    text, truncated = text_excerpt("é".encode() * 20_000_000)  # 40 MB of two-byte characters
    assert text == "é" * MAX_TEXT_CHARS and truncated


def test_small_files_are_shown_whole():
    assert text_excerpt(b"line one\nline two\n") == ("line one\nline two\n", False)
    text, truncated = text_excerpt(("€" * MAX_TEXT_CHARS).encode())  # exactly the limit, 3 bytes each
    assert text == "€" * MAX_TEXT_CHARS and not truncated

"""Helpers for the security tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def remove_deep(top: Path) -> None:
    """Delete a tree of any depth: pull every nested folder up to ``top`` first (renames keep
    paths short), then remove what is now a shallow tree. pytest's own clean-up uses
    ``shutil.rmtree``, which recurses and fails on the deep trees these tests build."""
    if not top.exists() or top.is_symlink():
        return
    n = 0
    queue = [top]
    while queue:
        folder = queue.pop()
        with os.scandir(folder) as it:
            children = [e.path for e in it if e.is_dir(follow_symlinks=False)]
        for child in children:
            if folder == top:
                queue.append(Path(child))
                continue
            n += 1
            flat = top / f".flat-{n}"
            os.rename(child, flat)
            queue.append(flat)
    shutil.rmtree(top)


@pytest.fixture
def cleanup_deep() -> Iterator[Callable[[Path], Path]]:
    """Register folders that will hold deep trees; they are removed after the test."""
    roots: list[Path] = []

    def register(path: Path) -> Path:
        roots.append(path)
        return path

    yield register
    for root in roots:
        remove_deep(root)

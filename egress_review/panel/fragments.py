"""Rendered file fragments of the request page, cached by what makes them.

A staged file and its check results never change after the checks ran (the file is stored by
its SHA-256, and the results are written once when the request is created), so the HTML of a
file's card (checks, reviewer-only values, preview) is a pure function of the request, the
file row, its hash, a digest of its check results and the page the reviewer asked for. Every
reviewer of the request sees the same card, so it is computed once per process and served
from a byte-bounded LRU afterwards: the first view of a 50-file request pays for reading,
re-verifying and rendering the files, later views pay for a dictionary look-up.

The digest of the check results is part of the key so that a result rewritten in the
database (a re-check, or a restored backup) can never be shown stale.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from cachetools import LRUCache
from markupsafe import Markup

# Bumped whenever the file card's template or preview code changes meaning.
FRAGMENT_VERSION = 3
MAX_CACHE_BYTES = 64 << 20  # a 50-file card set is ~100-300 KiB; a few hundred requests fit

FragmentKey = tuple[Hashable, ...]
V = TypeVar("V", Markup, bytes)


def checks_digest(checks: list[dict[str, Any]]) -> str:
    """A digest of a file's check results (the part of the key the database holds). Keys keep
    the order they were stored in, so the same stored results always give the same digest."""
    blob = json.dumps(checks, separators=(",", ":"), default=str).encode()
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def fragment_key(request_id: str, file: dict[str, Any], view: tuple[Hashable, ...]) -> FragmentKey:
    """The key of one file's card: request, file row and content, and the reviewer's view of it
    (table page, column page, expanded or not)."""
    return (
        FRAGMENT_VERSION,
        request_id,
        file["id"],
        file["sha256"],
        file["outcome"],
        checks_digest(file["checks"]),
        view,
    )


class FragmentCache(Generic[V]):
    """A thread-safe LRU of rendered HTML or PNG, bounded by the total size of what it holds."""

    def __init__(self, max_bytes: int = MAX_CACHE_BYTES) -> None:
        self._lru: LRUCache[FragmentKey, V] = LRUCache(maxsize=max_bytes, getsizeof=len)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_render(self, key: FragmentKey, render: Callable[[], tuple[V, bool]]) -> V:
        """The cached value, or ``render()``'s, kept when it says it may be (second item)."""
        with self._lock:
            hit = self._lru.get(key)
            if hit is not None:
                self.hits += 1
                return hit
            self.misses += 1
        value, keep = render()  # outside the lock: two first views may render in parallel
        if keep and len(value) <= self._lru.maxsize:
            with self._lock:
                self._lru[key] = value
        return value

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._lru)


fragments: FragmentCache[Markup] = FragmentCache()
renders: FragmentCache[bytes] = FragmentCache()  # PNG previews, by the staged file's SHA-256

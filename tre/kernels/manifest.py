"""The cohort job's manifest: per-series outcome, output hashes, and what makes resuming safe.

``manifest.json`` sits at the top of the output folder, above the per-series files in
``series/``, and is the only place that ties an output to its series: ``names`` maps each
pseudonym (``series-00001``, `tre.kernels.pseudonyms`) to its SeriesInstanceUID, and
``series`` holds one entry per UID (``name``, status, outputs). It is rewritten atomically
once the names are fixed (before any output is written), as series finish (as often as costs
at most 5 % of the job's time), and at the end; so a job killed at any point leaves a
manifest whose entries describe only files that were completely written. A rerun
of the same recipe on the same inputs skips a series when its entry says ``ok``, its input
fingerprint is unchanged and every output file on disk still has the recorded SHA-256;
anything else is processed again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tre.kernels.pseudonyms import SERIES_DIR, number_of, valid_names
from tre.kernels.writers import sha256_file, sync_dir

MANIFEST_NAME = "manifest.json"
# 2: outputs named by pseudonym under series/ (1 named them by UID, next to the manifest; a
# version-1 manifest is not resumed from, and its UID-named files are left where they are).
MANIFEST_VERSION = 2
SAVE_OVERHEAD = 20  # see Manifest.save_due


def input_fingerprint(root: Path, files: list[Path]) -> str:
    """SHA-256 over the series' files (relative path, size, mtime): cheap, changes with the input."""
    h = hashlib.sha256()
    for path in sorted(files):
        st = path.stat()
        rel = os.path.relpath(path, root)
        # os.fsencode: a name that is not valid UTF-8 (archives hold them) is hashed as its
        # bytes; str.encode refused it and failed the whole cohort.
        h.update(os.fsencode(rel) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@dataclass
class Manifest:
    """In-memory manifest; `save` writes it atomically."""

    path: Path
    recipe: dict[str, Any]
    series: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Pseudonym -> SeriesInstanceUID: every name this output folder has given (kept across
    # recipes, see tre.kernels.pseudonyms).
    names: dict[str, str] = field(default_factory=dict)
    # Input files that begin as DICOM but cannot be parsed (relative paths; this run's).
    unreadable: list[str] = field(default_factory=list)
    _saved_at: float = field(default=-math.inf, repr=False, compare=False)
    _save_s: float = field(default=0.0, repr=False, compare=False)  # what the last save took

    @classmethod
    def open(cls, out_dir: Path, recipe: dict[str, Any]) -> Manifest:
        """Load the manifest in ``out_dir``: its series entries if it was written for the same
        recipe, its names whatever the recipe (a series keeps its name for the folder's life)."""
        path = out_dir / MANIFEST_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls(path, recipe)
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
            return cls(path, recipe)
        names = valid_names(data.get("names"))
        series = data.get("series")
        if data.get("recipe") != recipe or not isinstance(series, dict):
            return cls(path, recipe, names=names)
        return cls(path, recipe, series, names=names)

    def is_done(self, uid: str, fingerprint: str, out_dir: Path) -> bool:
        """True when ``uid`` was completely written from the same input and its files are intact."""
        entry = self.series.get(uid)
        if not entry or entry.get("input_fingerprint") != fingerprint:
            return False
        own = self.own_outputs(uid, out_dir)
        if own is None:
            return False
        for path, out in own:
            try:
                st = path.lstat()
            except OSError:
                return False
            if not stat.S_ISREG(st.st_mode) or st.st_size != out.get("bytes"):
                return False
            if sha256_file(path) != out.get("sha256"):
                return False
        return True

    def own_outputs(self, uid: str, out_dir: Path) -> list[tuple[Path, dict[str, Any]]] | None:
        """The ``ok`` series' recorded files as (path in ``out_dir``, record), or None.

        The one rule for which recorded files belong to a series, shared by the rerun's resume
        check and `tre.kernels.carry_over` (which reads another job's folder): the entry's name
        must be the folder's name for ``uid``, and every file must lie directly under
        ``series/`` and be named for that name. A manifest is written by a job, so anything
        else (a path elsewhere, another series' file, a record that is not an object) makes
        the whole series not done rather than an error."""
        entry = self.series.get(uid)
        if not isinstance(entry, dict) or entry.get("status") != "ok":
            return None
        name = entry.get("name")
        outputs = entry.get("outputs")
        if not isinstance(name, str) or self.names.get(name) != uid:
            return None
        if not isinstance(outputs, list) or not outputs:
            return None
        own: list[tuple[Path, dict[str, Any]]] = []
        for out in outputs:
            rel = out.get("path") if isinstance(out, dict) else None
            if not isinstance(rel, str):
                return None
            path = out_dir / rel
            if path.parent != out_dir / SERIES_DIR or not path.name.startswith(f"{name}."):
                return None
            own.append((path, out))
        return own

    def record(self, uid: str, entry: dict[str, Any]) -> None:
        self.series[uid] = entry

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for entry in self.series.values():
            status = str(entry.get("status"))
            out[status] = out.get(status, 0) + 1
        return out

    def save_due(self) -> None:
        """`save` when the time since the last one is `SAVE_OVERHEAD` times what that save
        took (the caller saves at the end): saving then costs at most 1/`SAVE_OVERHEAD` of
        the job's time whatever the cohort's size, and a small manifest is still saved after
        nearly every series.

        Why not after every series: each save rewrites every entry, so a cohort of n series
        wrote O(n^2) bytes (2,000 series: 1.3 GB of JSON; the cohort ran 5x slower). An
        entry not yet saved when the job is killed only means that series is processed
        again on resume: the manifest still names only completely written outputs."""
        if time.monotonic() - self._saved_at >= SAVE_OVERHEAD * self._save_s:
            self.save()

    def save(self, paced: bool = True) -> None:
        """Write the manifest atomically and durably (temporary file, ``fdatasync``, rename,
        ``fsync`` of the folder): the outputs it names were made durable before it (by
        `tre.kernels.writers`), so after a crash of the machine it still names only whole
        files. ``paced``: counts for `save_due` (the save of the
        names before any series is not, so the first finished series is still saved)."""
        started = time.monotonic()
        data = {
            "version": MANIFEST_VERSION,
            "recipe": self.recipe,
            "counts": self.counts(),
            "names": dict(sorted(self.names.items(), key=lambda item: number_of(item[0]) or 0)),
            "series": dict(sorted(self.series.items())),
        }
        if self.unreadable:
            data["unreadable_files"] = self.unreadable
        text = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
        fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".partial", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(text)  # one write(2): a reader of the syscalls sees the whole manifest
                fh.flush()
                os.fdatasync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
            sync_dir(self.path.parent)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if not paced:
            return
        self._saved_at = time.monotonic()
        self._save_s = self._saved_at - started

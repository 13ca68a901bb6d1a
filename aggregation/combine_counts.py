"""Combine `label: number` lines of one released file across the nodes of a federated job.

Reads only a folder written by `tre hub results` and refuses it unless every file matches
the SHA-256 recorded in its job.json (the hashes the hub verified on receipt)."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path


class NotReleased(Exception):
    """A file in the folder is not exactly what a node released."""


def load_released(folder: Path) -> dict[str, dict[str, bytes]]:
    """{node: {file name: bytes}} for every released file, each checked against job.json."""
    job = json.loads((folder / "job.json").read_text())
    released: dict[str, dict[str, bytes]] = {}
    for child in job["children"]:
        if child["state"] != "released":
            continue
        for f in child["files"]:
            data = (folder / child["node"] / f["name"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != f["sha256"]:
                raise NotReleased(f"{child['node']}/{f['name']} does not match its released SHA-256")
            released.setdefault(child["node"], {})[f["name"]] = data
    return released


def combine(released: dict[str, dict[str, bytes]], name: str) -> list[tuple[str, str, float]]:
    rows: list[tuple[str, str, float]] = []
    totals: dict[str, float] = {}
    for node in sorted(released):
        data = released[node].get(name)
        if data is None:
            continue
        for line in data.decode("utf-8", "replace").splitlines():
            label, sep, value = line.partition(":")
            try:
                number = float(value)
            except ValueError:
                continue
            if sep:
                rows.append((node, label.strip(), number))
                totals[label.strip()] = totals.get(label.strip(), 0.0) + number
    rows.extend(("total", label, total) for label, total in sorted(totals.items()))
    return rows


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: combine_counts.py RESULTS_FOLDER FILE_NAME", file=sys.stderr)
        return 2
    try:
        released = load_released(Path(argv[1]))
        rows = combine(released, argv[2])
    except (NotReleased, OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # An empty table with exit 0 read as "every count is zero": say why there is nothing.
    names = sorted({name for files in released.values() for name in files})
    if argv[2] not in names:
        print(
            f"error: no node released {argv[2]!r}; released: {', '.join(names) or 'nothing'}", file=sys.stderr
        )
        return 1
    if not rows:
        print(f"error: {argv[2]} holds no 'label: number' lines at any node", file=sys.stderr)
        return 1
    out = csv.writer(sys.stdout)
    out.writerow(["node", "label", "value"])
    out.writerows((node, label, f"{value:g}") for node, label, value in rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

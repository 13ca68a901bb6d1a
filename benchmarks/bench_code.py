"""Code archives: pack, check, store and unpack a synthetic analysis folder (docs/code.md).

Builds a folder of N Python-like text files plus a few binary model weights (default: 2,000
files, ~40 MiB), then times, median of R runs:

- ``pack``: `pack_folder` (deterministic tar.gz) vs GNU ``tar --sort=name -czf`` of the same folder;
- ``inspect``: `inspect_archive` (every entry checked) vs a bare ``tarfile`` read of the members;
- ``store``: upload path on the server (`CodeStore.store_file`: hash, check, unpack to the tree);
- ``store again``: the same archive a second time (deduplicated: hash + check, no unpack).

Prints seconds, MiB/s of unpacked bytes and the ratios. No targets are asserted here.

    PYTHONPATH=. python benchmarks/bench_code.py [--files 2000] [--mib 40] [--runs 3]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tre.code.archive import MIB, CodeLimits, inspect_archive, pack_folder
from tre.code.store import CodeStore
from tre.config import Settings


def make_folder(root: Path, files: int, mib: int) -> int:
    rng = __import__("random").Random(7)
    weights = max(1, mib // 8)
    text_bytes = (mib * MIB) // 4
    per_text = max(64, text_bytes // files)
    total = 0
    for i in range(files):
        sub = root / f"pkg{i % 40:02d}" / f"mod{i % 7}"
        sub.mkdir(parents=True, exist_ok=True)
        line = f"def f_{i}(x):\n    return x * {rng.randint(1, 99)} + {i}\n"
        data = (line * (per_text // len(line) + 1))[:per_text].encode()
        (sub / f"m{i}.py").write_bytes(data)
        total += len(data)
    each = (mib * MIB - total) // weights
    for w in range(weights):
        blob = os.urandom(each)
        (root / f"weights{w}.bin").write_bytes(blob)
        total += len(blob)
    return total


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--mib", type=int, default=40)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    limits = CodeLimits(max_bytes=1024 * MIB, max_entries=1_000_000)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        folder = tmp / "src"
        folder.mkdir()
        raw = make_folder(folder, args.files, args.mib)
        archive = tmp / "code.tar.gz"

        def ours() -> None:
            with archive.open("w+b") as fh:
                pack_folder(folder, fh, limits)

        def gnu() -> None:
            subprocess.run(
                [
                    "tar",
                    "--sort=name",
                    "--owner=0",
                    "--group=0",
                    "--mtime=@0",
                    "-czf",
                    str(tmp / "gnu.tar.gz"),
                    "-C",
                    str(folder),
                    ".",
                ],
                check=True,
            )

        t_pack, t_gnu = median_time(ours, args.runs), median_time(gnu, args.runs)
        data = archive.read_bytes()

        def check() -> None:
            inspect_archive(io.BytesIO(data), limits)

        def bare() -> None:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r|gz") as tar:
                for _ in tar:
                    pass

        t_check, t_bare = median_time(check, args.runs), median_time(bare, args.runs)

        def store_fresh() -> None:
            home = tmp / "home"
            shutil.rmtree(home, ignore_errors=True)
            CodeStore(Settings(home=home)).store_file(archive, limits)

        t_store = median_time(store_fresh, args.runs)
        store = CodeStore(Settings(home=tmp / "home"))
        t_again = median_time(lambda: store.store_file(archive, limits), args.runs)

    mb = raw / MIB
    print(f"folder: {args.files} text files + weights, {mb:.1f} MiB, archive {len(data) / MIB:.1f} MiB")
    rows = [
        ("pack (pack_folder)", t_pack),
        ("pack (GNU tar -czf)", t_gnu),
        ("inspect_archive", t_check),
        ("bare tarfile read", t_bare),
        ("store (hash+check+unpack)", t_store),
        ("store again (dedup)", t_again),
    ]
    for name, t in rows:
        print(f"{name:28s} {t:8.3f} s  {mb / t:8.1f} MiB/s")
    print(f"ratio pack_folder / GNU tar      {t_pack / t_gnu:6.2f}")
    print(f"ratio inspect / bare read        {t_check / t_bare:6.2f}")
    print(f"ratio store again / store fresh  {t_again / t_store:6.2f}")


if __name__ == "__main__":
    main()

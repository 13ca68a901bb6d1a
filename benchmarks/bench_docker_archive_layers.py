"""How long the docker-archive check (`tre.images.archive.inspect_archive`) takes on an
archive of many tiny gzip layers beside many members no manifest names: the shape that made
it quadratic before redteam round 15 (each compressed layer opened the archive afresh and
tarfile re-read every header to find it). Prints seconds and header reads.

    PYTHONPATH=. python benchmarks/bench_docker_archive_layers.py --layers 128 --fillers 20000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.images.imagekit import add_file, crafted_docker_archive, layer_tar, sha
from tre.images.archive import inspect_archive
from tre.images.limits import ImageLimits
from tre.tarbounds import StrictTarInfo


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=128)
    ap.add_argument("--fillers", type=int, default=20_000)
    args = ap.parse_args()
    import tarfile
    import zlib

    plain = [layer_tar(lambda t, i=i: add_file(t, f"f{i}", b"x")) for i in range(args.layers)]
    with tempfile.TemporaryDirectory() as tmp:
        archive = crafted_docker_archive(
            Path(tmp) / "a.tar", [zlib.compress(p, 1, wbits=31) for p in plain], [sha(p) for p in plain]
        )
        with tarfile.open(archive, "a") as tar:
            for i in range(args.fillers):
                add_file(tar, f"filler/{i}", b"")
        reads = [0]
        parse = StrictTarInfo.frombuf.__func__  # type: ignore[attr-defined]

        def counting(cls: Any, buf: bytes, encoding: str, errors: str) -> Any:
            reads[0] += 1
            return parse(cls, buf, encoding, errors)

        StrictTarInfo.frombuf = classmethod(counting)  # type: ignore[method-assign,assignment]
        limits = ImageLimits(1 << 32, 1 << 32, 1 << 33, 300_000)
        started = time.monotonic()
        inspect_archive(archive, limits)
        seconds = time.monotonic() - started
    print(
        f"{args.layers} gzip layers + {args.fillers} other members: "
        f"{seconds:.2f} s, {reads[0]} tar headers read"
    )


if __name__ == "__main__":
    main()

"""Image layer scan (`tre.images.layers.scan_layer`) on layers built to be slow to check:
N symbolic links then N files in one folder, for two sizes of N.

The guard that catches writes through links used to rebuild a set of every link on every
entry (quadratic: 20,000 + 20,000 entries took 92 s of CPU); it is now a tree of path
components. Prints CPU seconds and microseconds per entry for each N and the ratio of the
per-entry costs (about 1.0 when the scan is linear; about N2/N1 when it is quadratic).

    PYTHONPATH=. python benchmarks/bench_layer_scan.py [--small 10000] [--large 100000]
"""

from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
import time
from pathlib import Path

from tre.images.layers import LayerScan, TreeGuard, scan_layer
from tre.images.limits import ImageLimits

PLAIN = "application/vnd.oci.image.layer.v1.tar"


def layer(path: Path, n: int) -> str:
    """Write the layer to ``path``; return its diff_id."""
    import hashlib

    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(n):
            link = tarfile.TarInfo(f"d/l{i}")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc"
            tar.addfile(link)
        for i in range(n):
            tar.addfile(tarfile.TarInfo(f"d/f{i}"), io.BytesIO(b""))
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def cpu_of_scan(blob: Path, diff_id: str, entries: int) -> float:
    limits = ImageLimits(1 << 40, 1 << 40, 1 << 40, entries + 10)
    start = time.process_time()
    scan_layer(blob, PLAIN, diff_id, 0, limits, TreeGuard(), LayerScan())
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    args = parser.parse_args()
    per_entry = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.small, args.large):
            blob = Path(tmp) / f"layer-{n}.tar"
            diff_id = layer(blob, n)
            cpu = cpu_of_scan(blob, diff_id, 2 * n)
            per_entry.append(cpu / (2 * n))
            print(f"N={n:>7} links + {n} files: {cpu:7.2f} s CPU, {1e6 * cpu / (2 * n):6.1f} us/entry")
    print(f"per-entry cost ratio large/small: {per_entry[1] / per_entry[0]:.2f} (linear: ~1.0)")


if __name__ == "__main__":
    main()

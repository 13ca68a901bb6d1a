"""Image store figures: CPU job image cold and cached build, import time and unpacked size
of an archive (default: the job image exported as a docker archive), and the ratio of
import time to unpacked size.

    PYTHONPATH=. python benchmarks/bench_images.py                      # build (cold, then cached) + import
    PYTHONPATH=. python benchmarks/bench_images.py --archive x.tar      # just import x.tar

Uses a throwaway TRE_HOME unless --home is given (a warm home makes the "cold" build cached).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from tre.config import Settings
from tre.images.jobimage import build_cpu_job_image
from tre.images.store import ImageStore

MIB = 1 << 20


def import_figures(settings: Settings, archive: Path) -> None:
    store = ImageStore(settings)
    started = time.monotonic()
    result = store.import_path(archive)
    seconds = time.monotonic() - started
    print(
        f"import {archive.name}: {seconds:.1f} s; stored {result.size / MIB:.0f} MiB; "
        f"unpacked {result.unpacked_size / MIB:.0f} MiB; {result.layers} layers; "
        f"{result.unpacked_size / MIB / seconds:.1f} MiB unpacked per second"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archive", type=Path)
    ap.add_argument("--home", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "home"
        settings = Settings(home=home)
        settings.ensure_dirs()
        if args.archive:
            import_figures(settings, args.archive)
            return
        cold = build_cpu_job_image(settings)
        print(
            f"build ({'cached' if cold.cached else 'cold'}): {cold.seconds:.1f} s; "
            f"unpacked {cold.unpacked_size / MIB:.0f} MiB; {cold.reference}"
        )
        warm = build_cpu_job_image(settings)
        ratio = cold.seconds / max(warm.seconds, 1e-6)
        print(f"build (cached): {warm.seconds:.3f} s; ratio cold/cached {ratio:.0f}x")
        exported = Path(tmp) / "job-image.tar"
        layout = ImageStore(settings).layout(cold.digest)
        subprocess.run(["skopeo", "copy", "--quiet", f"oci:{layout}:image",
                        f"docker-archive:{exported}:tre-job-cpu:bench"], check=True)  # fmt: skip
        import_figures(Settings(home=Path(tmp) / "home2"), exported)


if __name__ == "__main__":
    main()

"""Job start latency of the local sandbox: an image root file system vs the host toolchain.

What one ``true`` job costs end to end through `LocalExecutor.run`: the job's output file
system (mkfs + mount, collect + unmount), cgroup set-up and removal, the launcher's private
mount namespace and stage, the switch to the job user, bwrap's namespaces and mounts,
seccomp. "cold" is the first job of a fresh executor on a fresh rootfs copy, with no output
image template yet (mkfs runs); "cached" is the median of the next N. The image is a
busybox-static rootfs (what tests/sandbox uses).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_sandbox_start.py [--runs 10]

Needs root, bubblewrap, busybox-static and the tre-job user (scripts/install-system-deps).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.sandbox.test_sandbox_image import make_busybox_rootfs
from tre.executors.base import ImageConfig, JobSpec, RunControl
from tre.executors.local import LocalExecutor
from tre.executors.outputfs import ImageTemplates


def one_job(executor: LocalExecutor, work: Path, n: int, image: bool, rootfs: Path) -> float:
    spec = JobSpec(
        job_id=f"bench{n}",
        project_id="bench",
        image="bench",
        command=["true"],
        datasets=[],
        output_dir=work / f"j{n}" / "output",
        log_path=work / f"j{n}" / "log.txt",
        output_limit_mb=256,
        rootfs=rootfs if image else None,
        image_config=ImageConfig(env={"PATH": "/bin"}) if image else None,
    )
    t0 = time.perf_counter()
    result = executor.run(spec, RunControl())
    elapsed = time.perf_counter() - t0
    if result.state != "succeeded":
        raise SystemExit(f"job failed: {result.reason}\n{spec.log_path.read_text()}")
    return elapsed


def measure(image: bool, runs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rootfs = make_busybox_rootfs(work / "rootfs")
        executor = LocalExecutor(host_toolchain=not image)
        # A fresh template folder: "cold" includes making the empty output image.
        executor.templates = ImageTemplates(work / "templates")
        cold = one_job(executor, work, 0, image, rootfs)
        cached = [one_job(executor, work, i, image, rootfs) for i in range(1, runs + 1)]
    return cold, statistics.median(cached)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    image_cold, image_cached = measure(True, args.runs)
    host_cold, host_cached = measure(False, args.runs)
    print(f"image rootfs    : cold {image_cold * 1000:7.1f} ms, cached median {image_cached * 1000:7.1f} ms")
    print(f"host toolchain  : cold {host_cold * 1000:7.1f} ms, cached median {host_cached * 1000:7.1f} ms")
    print(f"ratio image/host: cold {image_cold / host_cold:.2f}, cached {image_cached / host_cached:.2f}")


if __name__ == "__main__":
    main()

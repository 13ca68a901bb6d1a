"""Where a cohort job's CPU goes, per stage, from a Linux ``perf`` profile (issue 13, eighth round).

Why: the job's CPU is spread over a forked discovery process, the Numba cache load thread,
decode threads, Numba's kernel threads and the compressor threads of every output; the
timeline (`tre.kernels.timeline`) says when each stage ran but not what it cost, and py-spy
attributes Numba's native threads to whoever waits for them. ``perf record`` samples every
thread of the job and its children by CPU time (the ``cpu-clock`` event, which also works in
a VM), and each sample names the library it fell in, so the CPU splits by library and by the
thread's role:

* the discovery child (another process), the Numba cache load (the thread with most
  ``libllvmlite`` samples), the two decode threads with most OpenJPEG samples (``--workers
  2``), the main thread and Numba's worker (JIT code), and every other thread (writers, the
  compressors' threads);
* OpenJPEG, CharLS, ISA-L, SHA-256 (``libcrypto``), Numba's JIT code, page zeroing on first
  touch (``clear_page*`` in the kernel), the rest of the kernel (reads, writes, faults),
  CPython and libc.

    PYTHONPATH=. python benchmarks/cohort_cpu_stages.py --input COHORT --output OUT [--runs 2]
    PYTHONPATH=. python benchmarks/cohort_cpu_stages.py --report before=a.perf,b.perf after=c.perf

Needs ``perf`` (Debian ``linux-perf``) with ``kernel.perf_event_paranoid`` <= 2. The input's
page cache is dropped before each run (as ``bench_cohort.py`` does). Each run writes
``OUT/../cpu-stages-N.perf``; ``--report`` prints the table again from such files. A profile,
not a timed test: the machine's load shifts every figure (compare runs made side by side).
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
from pathlib import Path

# The cohort and recipe are bench_cohort.py's (a sibling: this folder is sys.path[0]).
from bench_cohort import TRE_RECIPE_ARGS, evict

HZ = 250  # samples per second of CPU per thread: ~0.4 % overhead, ~10,000 samples a job
LIBS = (
    ("openjp2", "openjpeg"),
    ("_jpeg2k", "openjpeg"),
    ("charls", "charls"),
    ("_jpegls", "charls"),
    ("isal", "isal"),
    ("kallsyms", "kernel"),
    ("libpython", "python"),
    ("JIT", "jit"),
    ("perf-", "jit"),  # Numba's code loaded from its cache: perf's map of the process
    ("gomp", "jit"),
    ("libc.so", "libc"),
    ("crypto", "sha256"),
    ("llvmlite", "llvmlite"),
)


def library(dso: str) -> str:
    for key, name in LIBS:
        if key in dso:
            return name
    return "other"


def record(cohort: Path, out: Path, perf_file: Path, fmt: str, workers: int) -> None:
    """One job under ``perf record`` (children and threads included)."""
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    evict(cohort)
    job = [sys.executable, "-m", "tre.kernels.job", "--input", str(cohort), "--output", str(out)]
    job += [*TRE_RECIPE_ARGS, "--format", fmt, "--workers", str(workers)]
    cmd = ["perf", "record", "-F", str(HZ), "-q", "-o", str(perf_file), "--", *job]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def stages(perf_file: Path) -> tuple[dict[str, float], float]:
    """CPU seconds per stage, and in all, of one profile."""
    text = subprocess.run(
        ["perf", "script", "-i", str(perf_file), "-F", "pid,tid,ip,sym,dso"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    per: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    pid_of: dict[int, int] = {}
    zeroing: collections.Counter[int] = collections.Counter()
    for line in text.splitlines():
        if not line.strip():
            continue
        pid, tid = map(int, line.split(None, 1)[0].split("/"))
        dso = line[line.rfind("(") + 1 : -1] if "(" in line else "?"
        per[tid][library(dso)] += 1
        pid_of[tid] = pid
        if "clear_page" in line:
            zeroing[tid] += 1
    job = collections.Counter(pid_of.values()).most_common(1)[0][0]
    threads = [t for t in per if pid_of[t] == job]
    decode = sorted(threads, key=lambda t: -per[t]["openjpeg"] - per[t]["charls"])[:2]
    rest = [t for t in threads if t not in decode]
    warm = max(rest, key=lambda t: per[t]["llvmlite"])
    kernel_threads = {
        job,
        max((t for t in rest if t not in (warm, job)), key=lambda t: per[t]["jit"], default=job),
    }
    st: collections.Counter[str] = collections.Counter()
    for t, c in per.items():
        n = sum(c.values())
        if pid_of[t] != job:
            st["discovery (forked child: header parse)"] += n
            continue
        if t == warm:
            st["Numba import + cache load (its thread)"] += n
            continue
        z = zeroing[t]
        st["JPEG 2000 decode (OpenJPEG)"] += c["openjpeg"]
        st["JPEG-LS decode (CharLS)"] += c["charls"]
        st["gzip level 1 (ISA-L)"] += c["isal"]
        st["SHA-256 of the outputs"] += c["sha256"]
        st["kernels (Numba code)"] += c["jit"]
        st["other libraries"] += c["other"] + c["llvmlite"]
        rest_n = c["python"] + c["libc"] + c["kernel"] - z
        if t in decode:
            st["page zeroing: input volumes (decode threads)"] += z
            st["reads, faults, Python, libc (decode threads)"] += rest_n
        elif t in kernel_threads:
            st["page zeroing: outputs (kernel threads)"] += z
            st["Python, kernel, libc (main thread, Numba worker)"] += rest_n
        else:
            st["page zeroing (writer threads)"] += z
            st["Python, writes, libc (writer and compressor threads)"] += rest_n
    total = sum(sum(c.values()) for c in per.values())
    return {k: v / HZ for k, v in st.items()}, total / HZ


def report(groups: dict[str, list[Path]]) -> None:
    """A Markdown table: mean (min-max) CPU seconds per stage for each group of profiles."""
    runs = {g: [stages(p) for p in paths] for g, paths in groups.items()}
    keys: list[str] = []
    for rs in runs.values():
        for st, _ in rs:
            keys += [k for k in st if k not in keys]

    def cell(vals: list[float]) -> str:
        return f"{sum(vals) / len(vals):.2f} ({min(vals):.2f}-{max(vals):.2f})"

    print("| stage (CPU s) | " + " | ".join(f"{g} ({len(r)} runs)" for g, r in runs.items()) + " |")
    print("| --- |" + " --- |" * len(runs))
    for k in keys:
        print(f"| {k} | " + " | ".join(cell([st.get(k, 0.0) for st, _ in rs]) for rs in runs.values()) + " |")
    print("| **total** | " + " | ".join(cell([t for _, t in rs]) for rs in runs.values()) + " |")
    outside = [cell([t - st.get("JPEG 2000 decode (OpenJPEG)", 0.0) for st, t in rs]) for rs in runs.values()]
    print("| **outside OpenJPEG** | " + " | ".join(outside) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path)
    ap.add_argument("--output", type=Path)
    ap.add_argument("--format", default="nii.gz", choices=["nii.gz", "nii", "zarr"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--report", nargs="+", metavar="NAME=A.perf,B.perf")
    args = ap.parse_args()
    if args.report:
        report(
            {g: [Path(p) for p in files.split(",")] for g, files in (a.split("=", 1) for a in args.report)}
        )
        return
    if args.input is None or args.output is None:
        ap.error("--input and --output are needed (or --report)")
    files = []
    for i in range(args.runs):
        perf_file = args.output.parent / f"cpu-stages-{i + 1}.perf"
        record(args.input, args.output, perf_file, args.format, args.workers)
        files.append(perf_file)
    report({"this tree": files})


if __name__ == "__main__":
    main()

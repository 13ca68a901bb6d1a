"""Refuse a series whose arrays cannot fit in the job's memory, before allocating them.

Why: NumPy's allocation of a volume larger than the job's memory usually succeeds (the
kernel overcommits) and the job is killed when the pages are touched; in a cohort that kills
every series, and a resumed run dies on the same one again. A header that lies about Rows
and Columns, or a genuinely huge series or target grid, must fail its own series with a
reason instead. The limit is the job's cgroup memory limit (what the sandbox and Kubernetes
set), else the machine's memory.
"""

from __future__ import annotations

from pathlib import Path

from tre.kernels.errors import SeriesTooLargeError

# Of the limit, what one series' largest arrays may take: the rest is the interpreter, the
# decoders and the pipeline's other series in flight.
SHARE = 0.6
_UNLIMITED = 1 << 60  # cgroup v1 writes a huge number for "no limit"


def memory_limit_bytes() -> int | None:
    """The job's memory limit: cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``, else
    MemTotal; None when none can be read."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < _UNLIMITED:
            return int(text)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(what: str, need: int, limit: int | None = None) -> None:
    """Raise `SeriesTooLargeError` when ``need`` bytes exceed this job's share for a series."""
    limit = memory_limit_bytes() if limit is None else limit
    if limit is not None and need > SHARE * limit:
        raise SeriesTooLargeError(
            f"{what} needs {need / 2**30:.1f} GiB, more than this job can hold "
            f"({SHARE * limit / 2**30:.1f} GiB of its {limit / 2**30:.1f} GiB memory limit); "
            "give the job more memory or preprocess this series with a coarser target spacing"
        )

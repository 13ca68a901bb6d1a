"""Refuse a series whose arrays cannot fit in the job's memory, before allocating them.

Why: NumPy's allocation of a volume larger than the job's memory usually succeeds (the
kernel overcommits) and the job is killed when the pages are touched; in a cohort that kills
every series, and a resumed run dies on the same one again. A header that lies about Rows
and Columns, or a genuinely huge series or target grid, must fail its own series with a
reason instead. The limit is the job's cgroup memory limit (what the sandbox and Kubernetes
set), else the machine's memory.
"""

from __future__ import annotations

import time
from pathlib import Path

from tre.kernels.errors import SeriesTooLargeError

# Of the limit, what one series' largest arrays may take: the rest is the interpreter, the
# decoders and the pipeline's other series in flight.
SHARE = 0.6
_UNLIMITED = 1 << 60  # cgroup v1 writes a huge number for "no limit"


def memory_limit_bytes() -> int | None:
    """The job's memory limit: cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``, else
    MemTotal; None when none can be read. Read at most once a second: each series checks
    three or four sizes, and reading the files took ~0.3 ms each time (a tenth of a tiny
    series' time in a cohort of thousands)."""
    global _cached  # noqa: PLW0603 - one value per process
    now = time.monotonic()
    if _cached is None or now - _cached[0] >= _CACHE_S:
        _cached = (now, _read_limit())
    return _cached[1]


_CACHE_S = 1.0
_cached: tuple[float, int | None] | None = None


def _read_limit() -> int | None:
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

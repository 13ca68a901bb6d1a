"""The size of an output file as a researcher sees it before the airlock releases it.

A job chooses the exact size of every file it writes: 1,000 files whose sizes each spell 3-4
bytes carry a few kilobytes past every check, read from `tre outputs` before anyone reviews
anything (redteam9). Researchers therefore see sizes rounded up to one of four steps per
power of two (at most 25 % above the real size, never below it, so a quota or a download
estimate stays on the safe side): about 7 bits a file instead of 30. Staff reviewing a job
see exact sizes, and a released file's exact size is its download's.
"""

from __future__ import annotations

# Steps per power of two: 2 ** MANTISSA_BITS.
MANTISSA_BITS = 2


def rounded_size(size: int) -> int:
    """``size`` rounded up to the next multiple of 2**(bit_length - 3): 1000 -> 1024,
    1_000_000 -> 1_048_576, 1_300_000 -> 1_310_720. Sizes under 8 bytes are kept."""
    if size <= 0:
        return 0
    step = 1 << max(size.bit_length() - 1 - MANTISSA_BITS, 0)
    return -(-size // step) * step


def shown_size(size: int, *, exact: bool) -> int:
    """What a caller sees: the exact size for staff (``exact``), else the rounded one."""
    return size if exact else rounded_size(size)

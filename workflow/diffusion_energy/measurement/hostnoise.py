"""The host's speed noise, measured at job start: what makes a repeat an outlier.

Launch-bound work (SD 1.5 below 768 px, every text encoder) runs at the host's pace: the GPU
waits while the CPU launches kernels, so a slower host means longer windows at idle power. On
the real H200 (2026-12-04) every SD 1.5 point had a repeat more than 3% off its others, so a
fixed 3% tolerance re-measured up to 12 windows per point. Here identical blocks of launch-bound
work are timed back to back; their robust relative spread (1.4826 x the median absolute
deviation over the median, so that a stall does not count) is the host's noise, and the
protocol's re-measure tolerance is a multiple of it (``measure.Runner``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable


def measure(block: Callable[[], None], clock: Callable[[], float], sync: Callable[[], None],
            blocks: int = 12) -> float:
    """Relative noise of ``blocks`` timed runs of ``block`` (one untimed run first, to warm it)."""
    block()
    sync()
    times = []
    for _ in range(blocks):
        start = clock()
        block()
        sync()
        times.append(clock() - start)
    median = statistics.median(times)
    if not median > 0:
        return math.nan
    return 1.4826 * statistics.median(abs(t - median) for t in times) / median

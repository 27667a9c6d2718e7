"""Quantiles of Student's t, for prediction intervals.

``scipy.stats.t.ppf`` is ``scipy.special.stdtrit`` (the same numbers); importing
``scipy.stats`` takes about a second, which ``predict`` would pay for this
function alone.
"""

from __future__ import annotations

from typing import Any


def t_ppf(q: Any, df: Any) -> Any:
    """Quantile ``q`` of Student's t with ``df`` degrees of freedom (``scipy.stats.t.ppf(q, df)``)."""
    from scipy.special import stdtrit

    return stdtrit(df, q)


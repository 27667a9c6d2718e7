"""Quantiles of Student's t and of the normal distribution, for prediction intervals.

``scipy.stats.t.ppf`` and ``norm.ppf`` are ``scipy.special.stdtrit`` and ``ndtri``
(the same numbers); importing ``scipy.stats`` takes about a second, which
``predict`` would pay for these two functions alone.
"""

from __future__ import annotations

from typing import Any


def t_ppf(q: Any, df: Any) -> Any:
    """Quantile ``q`` of Student's t with ``df`` degrees of freedom (``scipy.stats.t.ppf(q, df)``)."""
    from scipy.special import stdtrit

    return stdtrit(df, q)


def norm_ppf(q: Any) -> Any:
    """Quantile ``q`` of the standard normal distribution (``scipy.stats.norm.ppf(q)``)."""
    from scipy.special import ndtri

    return ndtri(q)

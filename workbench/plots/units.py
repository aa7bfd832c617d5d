"""SI prefixes for the physical quantities plots show (J, s): one rule for every page."""

from __future__ import annotations

#: (factor, prefix), smallest first
PREFIXES = ((1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, ""))


def si_prefix(value: float, unit: str, smallest: float = 1e-15) -> tuple[float, str]:
    """``(factor, label)`` showing ``value`` in ``unit`` as a number ≥ 1: the largest prefix whose
    factor is ≤ ``|value|`` (the ``smallest`` one for 0 or tinier values); divide by ``factor``.
    ``si_prefix(1.2e-7, "J") == (1e-9, "nJ")``."""
    usable = [(f, p) for f, p in PREFIXES if f >= smallest]
    best = usable[0]
    for factor, prefix in usable:
        if abs(value) >= factor:
            best = (factor, prefix)
    return best[0], best[1] + unit


__all__ = ["PREFIXES", "si_prefix"]

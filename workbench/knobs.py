"""Knob rules: the one error class, the one range wording, and the checkers every package uses.

This module is the bottom layer of the workbench (it imports nothing of it), so hardware,
training, nas, analysis, experiments, the CLI and the pages all raise the same :class:`KnobError`
with the same wording: ``name=value is out of range: name must be in [lo, hi]``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Iterable

__all__ = ["KnobError", "check_choice", "check_int", "check_number", "check_numbers", "check_probability", "check_seed",
           "knob_error_from_param", "number_text", "out_of_range", "param_allowed", "raised_by_param", "range_text",
           "range_words"]


class KnobError(ValueError):
    """An out-of-range or invalid knob value; the message names the knob and its allowed range."""


def number_text(x: Any) -> str:
    """A bound as a reader writes it: ``0`` not ``0.0``, ``1e-06``, ``inf``; integers in full."""
    return str(x) if isinstance(x, numbers.Integral) else f"{x:g}" if isinstance(x, numbers.Real) else str(x)


def range_text(lo: float | None = None, hi: float | None = None, inclusive: tuple[bool, bool] = (True, True),
               fmt: Callable[[Any], str] = number_text) -> str:
    """An interval as ``[lo, hi]`` / ``(lo, inf)``: ``None`` is an unbounded end, written ``-inf`` /
    ``inf`` and excluded; pass ``math.inf`` itself to include infinity (``[1, inf]``)."""
    left = "[" if inclusive[0] and lo is not None else "("
    right = "]" if inclusive[1] and hi is not None else ")"
    return f"{left}{'-inf' if lo is None else _num(lo, fmt)}, {'inf' if hi is None else _num(hi, fmt)}{right}"


def _num(x, fmt: Callable[[Any], str]) -> str:
    return ("inf" if x > 0 else "-inf") if isinstance(x, float) and math.isinf(x) else fmt(x)


def range_words(lo: float | None = None, hi: float | None = None, inclusive: tuple[bool, bool] = (True, True),
                fmt: Callable[[Any], str] = number_text) -> str:
    """The range in words for a page: ``between 0 and 0.5``, ``at least 1``, ``above 0``, or the
    interval of :func:`range_text` when one end is open (``in (0, 1]``); ``a number`` when unbounded."""
    if lo is not None and hi is not None:
        if inclusive[0] and inclusive[1]:
            return f"between {fmt(lo)} and {fmt(hi)}"
        return f"in {range_text(lo, hi, inclusive, fmt)}"
    if lo is not None:
        return f"at least {fmt(lo)}" if inclusive[0] else f"above {fmt(lo)}"
    if hi is not None:
        return f"at most {fmt(hi)}" if inclusive[1] else f"below {fmt(hi)}"
    return "a number"


def out_of_range(name: str, value: Any, allowed: str, note: str = "") -> KnobError:
    """The one wording of a refused knob: ``name=value is out of range: name must be <allowed> (note)``.

    ``allowed`` is what follows "must be", e.g. ``"in [0, 0.5]"`` or ``"an integer in [1, inf)"``."""
    return KnobError(f"{name}={value!r} is out of range: {name} must be {allowed}{f' ({note})' if note else ''}")


def _inside(v: float, lo, hi, inclusive: tuple[bool, bool]) -> bool:
    above = v > -math.inf if lo is None else (v >= lo if inclusive[0] else v > lo)
    below = v < math.inf if hi is None else (v <= hi if inclusive[1] else v < hi)
    return above and below


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None, *,
              inclusive: tuple[bool, bool] = (True, True), note: str = "") -> int:
    """``value`` as an int in the range, else a :class:`KnobError` naming ``name`` and the range.

    ``True``/``False`` are refused (Python counts them as integers, a knob does not)."""
    rng = range_text(lo, hi, inclusive)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise KnobError(f"{name}={value!r} is not an integer: {name} must be an integer in {rng}")
    if not _inside(value, lo, hi, inclusive):
        raise out_of_range(name, value, f"an integer in {rng}", note)
    return int(value)


def check_number(name: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                 inclusive: tuple[bool, bool] = (True, True), parse: bool = False, note: str = "") -> float:
    """``value`` as a float in the range, else a :class:`KnobError` naming ``name`` and the range.

    NaN and booleans are refused; ``parse=True`` also accepts a numeric string (``"inf"``, ``"0.1"``)."""
    rng = range_text(lo, hi, inclusive)
    if parse and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise KnobError(f"{name}={value!r} is not a number: {name} must be in {rng}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise KnobError(f"{name}={value!r} is not a number: {name} must be in {rng}")
    v = float(value)
    if math.isnan(v):
        raise KnobError(f"{name}=nan is not allowed; {name} must be in {rng}")
    if not _inside(v, lo, hi, inclusive):
        raise out_of_range(name, value, f"in {rng}", note)
    return v


def check_numbers(name: str, values: Any, lo: float | None = None, hi: float | None = None, *,
                  inclusive: tuple[bool, bool] = (True, True), note: str = "") -> list[float]:
    """``values`` as a non-empty list of floats, each in the range; the error names the first bad entry
    as ``name[i]`` (e.g. ``widths[2]=0 is out of range: widths[2] must be in (0, inf)``)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise KnobError(f"{name}={values!r} is not a list of numbers: each must be in {range_text(lo, hi, inclusive)}")
    values = list(values)
    if not values:
        raise KnobError(f"{name}=[] is empty: {name} must list at least one number in {range_text(lo, hi, inclusive)}")
    return [check_number(f"{name}[{i}]", v, lo, hi, inclusive=inclusive, note=note) for i, v in enumerate(values)]


def check_probability(name: str, value: Any, hi: float = 1.0, *, open_low: bool = False, note: str = "") -> float:
    """A probability or rate in ``[0, hi]`` (``(0, hi]`` with ``open_low``): a bit error rate is in
    ``[0, 0.5]`` (eq 3.28–3.29), a fraction in ``[0, 1]``."""
    return check_number(name, value, 0.0, hi, inclusive=(not open_low, True), note=note)


def check_seed(name: str, value: Any) -> int:
    """A torch seed: an integer in ``[-2^63, 2^63)``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not -2**63 <= value < 2**63:
        raise out_of_range(name, value, "an integer in [-2^63, 2^63)")
    return int(value)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a :class:`KnobError` listing them."""
    choices = list(choices)
    if value not in choices:
        raise KnobError(f"{name}={value!r} is not valid: {name} must be one of {', '.join(map(repr, choices))}")
    return value


def param_allowed(parameter: Any) -> str:
    """What a ``param`` parameter allows, as the words after "must be": ``in [0, 0.5]`` (its bounds),
    ``one of 'a', 'b'`` (its objects), ``a Memory`` (its class), else ``a valid value``."""
    bounds = getattr(parameter, "bounds", None)
    if bounds is not None:
        integer = any(c.__name__ == "Integer" for c in type(parameter).__mro__)
        rng = range_text(*bounds, getattr(parameter, "inclusive_bounds", (True, True)))
        return f"an integer in {rng}" if integer else f"in {rng}"
    objects = getattr(parameter, "objects", None)
    if objects:
        return "one of " + ", ".join(map(repr, objects.values() if isinstance(objects, dict) else objects))
    cls = getattr(parameter, "class_", None)
    if isinstance(cls, type):
        return f"a {cls.__name__}"
    return "a valid value"


def raised_by_param(exc: BaseException) -> bool:
    """Whether ``exc`` is ``param``'s own refusal of a value (raised inside the ``param`` package),
    as opposed to a plain message a model's own check or watcher raised."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__", "").split(".")[0] == "param"


def knob_error_from_param(name: str, value: Any, exc: BaseException, parameter: Any = None) -> KnobError:
    """The one wording for a value ``param`` refused: ``name=value is out of range: name must be in [lo, hi]``
    (``is not a number`` / ``is not valid`` for a wrong type or choice).  ``param``'s own text names the
    class, not the knob, so it is not shown; a :class:`KnobError` or any other exception keeps its message."""
    if isinstance(exc, KnobError):
        return exc
    if not raised_by_param(exc):
        return KnobError(str(exc).strip("'\""))
    allowed = param_allowed(parameter)
    if getattr(parameter, "bounds", None) is not None:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return KnobError(f"{name}={value!r} is not a number: {name} must be {allowed}")
        if allowed.startswith("an integer") and not isinstance(value, numbers.Integral):
            return KnobError(f"{name}={value!r} is not an integer: {name} must be {allowed}")
        return out_of_range(name, value, allowed)
    return KnobError(f"{name}={value!r} is not valid: {name} must be {allowed}")

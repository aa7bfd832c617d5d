"""The memory abstraction shared by every experiment.

A :class:`Memory` knows how a stored weight tensor reads back (:meth:`Memory.read`), what it
costs, and exposes its knobs as bounded ``param`` parameters.  A network is a model plus a
:class:`MemoryMap` (layer name → Memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import param
import torch

from ..knobs import KnobError, knob_error_from_param, param_allowed


def plain_values(obj: param.Parameterized) -> dict[str, Any]:
    """Knob values for hashing: ``Number`` knobs as floats (so ``p=0`` and ``p=0.0`` are one key)."""
    out = {}
    for k, v in obj.param.values().items():
        if k == "name":
            continue
        p = obj.param[k]
        if (
            isinstance(p, param.Number)
            and not isinstance(p, param.Integer)
            and v is not None
            and not isinstance(v, bool)
        ):
            v = float(v)
        out[k] = v
    return out


def set_knobs(obj: param.Parameterized, **values: Any) -> param.Parameterized:
    """Set ``values`` on ``obj``, raising :class:`KnobError` naming the knob and its range.

    NaN is refused for every numeric knob.
    """
    for name, value in values.items():
        if name not in obj.param:
            valid = ", ".join(n for n in obj.param if n != "name")
            raise KnobError(f"unknown knob {name!r} for {type(obj).__name__}; valid knobs: {valid}")
        p = obj.param[name]
        if isinstance(value, float) and value != value:
            raise KnobError(f"{name}=nan is not allowed; {name} must be {param_allowed(p)}")
        if isinstance(value, bool) and isinstance(p, param.Number):   # True is an int to param: epochs=true -> 1
            raise KnobError(f"{name}={value!r} is not a number: {name} must be {param_allowed(p)}")
        try:
            obj.param.update(**{name: value})
        except (ValueError, TypeError) as exc:
            raise knob_error_from_param(name, value, exc, p) from None
    return obj


def make(cls: type[param.Parameterized], **values: Any):
    """Instantiate ``cls`` with validated knobs (see :func:`set_knobs`)."""
    obj = cls()
    return set_knobs(obj, **values)


@dataclass
class Read:
    """One read of a weight tensor through a memory.

    ``weight`` is what the compute sees (weight domain).  ``extra`` carries technology state of
    the same draw (e.g. noisy conductances of a memristor crossbar, needed for its power).
    """

    weight: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class Memory(param.Parameterized):
    """Base class: an ideal (noise-free, reliable) memory."""

    technology = "ideal"
    #: number of bits the stored representation of one weight uses (for energy accounting)
    bits = param.Integer(16, bounds=(1, 32), doc="bits per stored weight ζ")

    def read(self, weight: torch.Tensor, generator: torch.Generator | None = None) -> Read:
        """Return the weight as read back from this memory (identity for the ideal memory)."""
        return Read(weight)

    def perturb(self, weight: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Convenience: the read-back weight tensor only."""
        return self.read(weight, generator).weight

    @property
    def is_noisy(self) -> bool:
        return False

    @property
    def noise_knob(self) -> str | None:
        """The knob that sets how unreliable this memory is (the x axis of its accuracy curve);
        ``None`` for a memory without one (the ideal memory)."""
        return None

    def knobs(self) -> dict[str, Any]:
        """The knob values as a plain dict (used for hashing and display)."""
        out = plain_values(self)
        out["technology"] = self.technology
        return out

    def clone(self, **overrides: Any) -> "Memory":
        vals = {k: v for k, v in self.knobs().items() if k != "technology"}
        vals.update(overrides)
        return make(type(self), **vals)

    def __repr__(self) -> str:  # short, stable
        inner = ", ".join(f"{k}={v!r}" for k, v in sorted(self.knobs().items()) if k != "technology")
        return f"{type(self).__name__}({inner})"


class IdealMemory(Memory):
    """A reliable memory: reads back exactly what was stored."""


class MemoryMap:
    """Mapping layer-name → :class:`Memory`, with a default for layers not named.

    ``MemoryMap(default, {"features.0": other})``.  Layers are the names of the model's noisy
    conv/linear modules (see :func:`workbench.nn.noisy_layers`).
    """

    def __init__(self, default: Memory | None = None, overrides: Mapping[str, Memory] | None = None):
        self.default = default if default is not None else IdealMemory()
        self.overrides: dict[str, Memory] = dict(overrides or {})

    def __getitem__(self, layer: str) -> Memory:
        return self.overrides.get(layer, self.default)

    def with_override(self, layer: str, memory: Memory) -> "MemoryMap":
        new = dict(self.overrides)
        new[layer] = memory
        return MemoryMap(self.default, new)

    def to_dict(self) -> dict[str, Any]:
        return {
            "default": self.default.knobs(),
            "overrides": {k: v.knobs() for k, v in sorted(self.overrides.items())},
        }

    def __repr__(self) -> str:
        return f"MemoryMap(default={self.default!r}, overrides={self.overrides!r})"



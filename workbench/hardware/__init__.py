"""Memory models: pure tensor code, no training, no UI.

The accelerator around a crossbar (converters, tiles, stuck-at devices, activation buffers) is a
set of :class:`MemristorMemory` knobs (:mod:`.periphery`); its energy and latency per inference come
from a :class:`HardwareProfile` (:mod:`.profile`).
"""

from typing import Mapping

from ..knobs import check_choice
from .base import IdealMemory, KnobError, Memory, MemoryMap, Read, make, set_knobs
from .memristor import InjectionMemory, MemristorMemory, crossbar_power, to_conductances
from .periphery import PERIPHERY_DEFAULTS, crossbar_mvm
from .profile import COMPONENTS, DEFAULT_PROFILE, PROFILES, HardwareProfile, layer_cost, make_profile, profile_from_dict
from .quant import QuantizedMemory, binarize, quantize_linear
from .sram import (
    ENERGY_REFERENCES,
    SRAMMemory,
    eta,
    memory_energy,
    memory_map_energy,
    normalised_energy,
    relative_energy,
    sample_flip_positions,
)

TECHNOLOGIES = {"ideal": IdealMemory, "sram": SRAMMemory, "memristor": MemristorMemory, "injection": InjectionMemory,
                "quantized": QuantizedMemory}


def memory_from_dict(d: dict | None) -> Memory:
    """Build a memory from ``{"technology": ..., knob: value}`` (validated)."""
    if not d:
        return IdealMemory()
    if not isinstance(d, Mapping):
        raise KnobError(f"a memory must be a mapping {{'technology': ..., knob: value}}, got {d!r}")
    d = dict(d)
    tech = d.pop("technology", "ideal")
    check_choice("technology", tech, sorted(TECHNOLOGIES))
    mem = make(TECHNOLOGIES[tech], **d)
    if hasattr(mem, "check"):
        mem.check()
    return mem


def memory_map_from_dict(d: dict | None) -> MemoryMap:
    """Inverse of :meth:`MemoryMap.to_dict`."""
    if not d:
        return MemoryMap()
    if not isinstance(d, Mapping):
        raise KnobError(
            f"a memory map must be a mapping {{'default': memory, 'overrides': {{layer: memory}}}}, got {d!r}"
        )
    overrides = d.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise KnobError(f"overrides={overrides!r} must be a mapping {{layer name: memory}}")
    return MemoryMap(memory_from_dict(d.get("default")),
                     {k: memory_from_dict(v) for k, v in overrides.items()})


__all__ = [
    "COMPONENTS", "DEFAULT_PROFILE", "HardwareProfile", "PERIPHERY_DEFAULTS", "PROFILES", "crossbar_mvm", "layer_cost",
    "make_profile", "profile_from_dict",
    "ENERGY_REFERENCES", "IdealMemory", "InjectionMemory", "KnobError", "Memory", "MemoryMap", "MemristorMemory",
    "QuantizedMemory", "Read", "SRAMMemory", "TECHNOLOGIES", "binarize", "crossbar_power", "eta", "make",
    "memory_energy", "memory_from_dict", "memory_map_energy", "memory_map_from_dict", "normalised_energy",
    "quantize_linear", "relative_energy", "sample_flip_positions", "set_knobs", "to_conductances",
]

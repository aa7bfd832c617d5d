"""The accelerator study: one network on a crossbar chip with converters, tiles and faults, its
accuracy over Monte-Carlo draws and its energy (J) and latency (s) per inference from a
:class:`~workbench.hardware.HardwareProfile`, for each ADC resolution of a list.

Each cell is one :func:`~workbench.experiments.core.evaluate` (cached in the store under its own
key), so the Accelerator page, which evaluates one setting at a time through the same function,
opens instantly on every shipped cell.  Regenerate the shipped cells with
:data:`REGENERATE_COMMAND`.

Energy model and sources: :mod:`workbench.hardware.profile` (ISAAC, Shafiee et al. ISCA 2016,
Table 6; Horowitz ISSCC 2014; Walden FOM).  Periphery model: :mod:`workbench.hardware.periphery`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import xarray as xr

from ..hardware import make_profile, memory_from_dict
from ..knobs import KnobError
from .core import evaluate, preset_config
from .store import Store

REGENERATE_COMMAND = "workbench sweep specs/accelerator_digits.json --cache-dir data/store"

#: the Accelerator page's defaults: the playground's memristor network (σ_c = 0.1, g_u = 25 µS) on
#: 128 × 128 tiles (ISAAC's crossbar size, Shafiee et al. ISCA 2016, Table 6) with 4-bit DACs and
#: 6-bit ADCs (an assumption: multi-bit converters of a plausible chip; ISAAC itself drives 1-bit
#: DAC slices and reads 8-bit ADCs), no faults
DEFAULT_MEMORY: dict[str, Any] = {"technology": "memristor", "noise": "multiplicative", "sigma_c": 0.1, "g_u": 25.0,
                                  "dac_bits": 4, "adc_bits": 6, "tile_rows": 128, "tile_cols": 128}
DEFAULT_PRESET = "digits-cnn"
DEFAULT_DRAWS = 10


def cell_memory(base: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]] | None = None,
                **knobs: Any) -> dict[str, Any]:
    """A memory-map dict: ``base`` with ``knobs`` for every layer, and each layer of ``overrides``
    changing some of those knobs for itself (validated: a bad knob raises a KnobError naming it)."""
    default = memory_from_dict({**base, **knobs})
    out = {"default": default.knobs(), "overrides": {}}
    for layer, changes in sorted((overrides or {}).items()):
        if changes:
            out["overrides"][layer] = default.clone(**dict(changes)).knobs()
    return out


def accelerator_study(adc_bits: list[int], draws: int = DEFAULT_DRAWS, *, preset: str = DEFAULT_PRESET,
                      memory: Mapping[str, Any] | None = None, profile: str = "isaac",
                      hw: Mapping[str, Any] | None = None, seed: int = 0, store: Store | None = None,
                      device: str = "auto", progress: Callable[[dict], None] | None = None,
                      cancel=None) -> xr.Dataset:
    """Accuracy (``adc_bits``, ``draw``), energy (J per inference: total by draw, mean by layer and
    component) and latency (s) of ``preset`` under ``memory`` (default :data:`DEFAULT_MEMORY`) for
    each ADC resolution in ``adc_bits``, with the hardware profile ``profile`` edited by ``hw``."""
    if not adc_bits:
        raise KnobError("adc_bits must list at least one ADC resolution (bits, 2 to 16)")
    cfg = preset_config(preset)
    prof = make_profile(profile, **dict(hw or {}))
    base = {**DEFAULT_MEMORY, **dict(memory or {})}
    cells = []
    for i, bits in enumerate(adc_bits):
        mem = cell_memory(base, adc_bits=int(bits))
        ds = evaluate(cfg, mem, draws=draws, seed=seed, store=store, device=device, cancel=cancel, profile=prof)
        cells.append(xr.Dataset({
            "accuracy": ds.accuracy,
            "energy_j": ds.energy_j,
            "layer_energy_j": ds.layer_energy_j.mean("draw").assign_attrs(ds.layer_energy_j.attrs),
            "latency_s": ds.latency_s,
        }, attrs={"clean_accuracy": ds.attrs.get("clean_accuracy", float("nan"))}))
        if progress is not None:
            progress({"cell": i + 1, "cells": len(adc_bits)})
    out = xr.concat(cells, dim="adc_bits", combine_attrs="override")
    out = out.assign_coords(adc_bits=("adc_bits", np.asarray(adc_bits, dtype=int),
                                      {"long_name": "ADC resolution", "units": "bits"}))
    out["accuracy_mean"] = out.accuracy.mean("draw").assign_attrs(long_name="mean accuracy", units="1")
    out.attrs.update(preset=preset, profile=profile, hardware_profile=str(prof.to_dict()),
                     memory=str(base), command=REGENERATE_COMMAND)
    return out


__all__ = ["DEFAULT_DRAWS", "DEFAULT_MEMORY", "DEFAULT_PRESET", "REGENERATE_COMMAND", "accelerator_study",
           "cell_memory"]

"""Robustness to post-training linear weight quantisation (thesis §5.5.1, Fig 5.6).

A trained network is evaluated, without any hardware-aware fine-tuning, with its conv/linear
weights read through a :class:`~workbench.hardware.quant.QuantizedMemory` of ``bits`` bits
(symmetric per-tensor linear quantisation).  As in the thesis, the first layer of the network is
excluded ("La première couche du DNN est exclue de cette quantification"): it keeps an ideal memory.
"""

from __future__ import annotations

import numbers
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn
import xarray as xr

from ..hardware import IdealMemory, MemoryMap, QuantizedMemory, make
from ..knobs import KnobError
from ..nn import noisy_layers
from .montecarlo import mc_evaluate

__all__ = ["DEFAULT_BITS", "quantization_memory_map", "quantization_sweep"]

#: the bit widths of Fig 5.6 (4–8 bits for MobileNetV2 on CIFAR-100, 5–8 for ResNet-18 on ImageNet)
DEFAULT_BITS = (4, 5, 6, 7, 8)


def quantization_memory_map(model: nn.Module, bits: int, exclude_first: bool = True) -> MemoryMap:
    """Every noisy layer quantised to ``bits`` bits (2–16), except the first one of
    :func:`~workbench.nn.noisy_layers` (model order) when ``exclude_first``, kept ideal."""
    mem = make(QuantizedMemory, bits=bits)
    layers = list(noisy_layers(model))
    if not layers:
        raise ValueError("the model has no noisy (memory-held) conv/linear layer to quantise")
    overrides = {layers[0]: IdealMemory()} if exclude_first else {}
    return MemoryMap(mem, overrides)


def quantization_sweep(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bits: Iterable[int] = DEFAULT_BITS,
                       exclude_first: bool = True, device: str | torch.device = "cpu") -> xr.Dataset:
    """Test accuracy of ``model`` on ``(x, y)`` with its weights linearly quantised to each of ``bits``
    (Fig 5.6), first layer excluded when ``exclude_first``.

    Quantisation is deterministic, so one evaluation per bit width is exact.  Returns a Dataset with
    ``accuracy(bits)`` (fraction) and attrs ``clean_accuracy`` (ideal memory), ``exclude_first``,
    ``excluded_layer`` (its name, or ``""``) and ``n_test``.
    """
    if isinstance(bits, numbers.Integral):
        bits = [bits]
    bits = list(bits)
    if not bits:
        raise KnobError("bits is empty: give at least one bit width in [2, 16]")
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, numbers.Integral):
            raise KnobError(f"bits={b!r} is not an integer: every bit width must be an integer in [2, 16]")
    bits = [int(b) for b in bits]
    if len(set(bits)) != len(bits):
        raise KnobError(f"bits={bits} has duplicates: give each bit width once")
    maps = [quantization_memory_map(model, b, exclude_first) for b in bits]  # validates every width first
    clean = float(mc_evaluate(model, x, y, MemoryMap(), draws=1, device=device).accuracy.values[0])
    acc = [float(mc_evaluate(model, x, y, mmap, draws=1, device=device).accuracy.values[0]) for mmap in maps]
    ds = xr.Dataset(coords={"bits": ("bits", np.asarray(bits), {"long_name": "quantisation bits", "units": "bit"})})
    ds["accuracy"] = ("bits", np.asarray(acc), {"long_name": "test accuracy (quantised weights)", "units": "1"})
    ds.attrs.update(clean_accuracy=clean, exclude_first=int(bool(exclude_first)),
                    excluded_layer=list(noisy_layers(model))[0] if exclude_first else "", n_test=int(len(y)))
    return ds

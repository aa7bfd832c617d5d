"""Layer-wise sensitivity to memory faults (thesis §4.3.1, Fig 4.3; parameter counts of Fig 4.1).

Every layer's weights are read from an under-volted SRAM at ``p = base_p`` (1 % in the thesis)
except one layer ``ℓ``, read at ``p_ℓ = high_p`` (50 %); the test set is evaluated ``draws``
times (10 in the thesis) with fresh bit flips, giving one accuracy distribution (box) per layer.

At ``high_p = 0.5`` the binary symmetric channel has zero capacity: the read-back signs are
uniformly random whatever was stored, so the layer is effectively re-initialised at random.  A
layer is then "robust" only if the network can route around it: in a residual network (the
thesis' WideResNet-28-10) a randomised residual-branch conv adds noise to the skip path, while a
layer on the only path (the stem conv, the classifier) drops accuracy to chance.  In a plain
feed-forward network (e.g. :class:`workbench.nn.SmallCNN`) every layer is on the only path, so
every layer at ``p = 0.5`` gives chance accuracy; use a lower ``high_p`` to rank its layers.
"""

from __future__ import annotations

import threading
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import xarray as xr
from scipy import stats

from ..hardware import MemoryMap, SRAMMemory, make
from ..hardware.sram import check_ber
from ..knobs import KnobError, check_int
from ..nn import layer_param_counts, noisy_layers
from ..training.trainer import Cancelled
from .montecarlo import mc_evaluate

__all__ = ["layer_sensitivity", "median_layer", "sensitivity_test"]


_check_p = check_ber


def _stream_seed(seed: int, index: int) -> int:
    """Independent seed of the ``index``-th configuration (0 = baseline, 1 + i = layer i)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


def layer_sensitivity(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, base_p: float | dict[str, float] = 0.01,
                      high_p: float = 0.5, draws: int = 10, seed: int = 0, bits: int = 1, device="auto",
                      progress: Callable[[dict], None] | None = None,
                      cancel: threading.Event | None = None) -> xr.Dataset:
    """Layer sensitivity analysis of thesis Fig 4.3 (§4.3.1).

    For each noisy layer ``ℓ`` (in :func:`workbench.nn.noisy_layers` order): every layer in an
    :class:`~workbench.hardware.SRAMMemory` at ``p = base_p``, layer ``ℓ`` at ``p_ℓ = high_p``,
    ``draws`` Monte-Carlo test passes (:func:`~workbench.analysis.montecarlo.mc_evaluate`).  Also
    the ``baseline`` with every layer at ``base_p``.  ``bits``: ``ζ`` of the SRAM (1 =
    BinaryConnect sign storage, as in the thesis).  Each configuration uses its own seed derived
    from ``seed`` (independent samples, reproducible).

    Returns a Dataset with ``accuracy(layer, draw)``, ``baseline(draw)``, ``param_count(layer)``
    (Fig 4.1), ``energy(layer)`` (normalised memory energy of that configuration, eq 3.30) and
    attrs ``base_p``, ``high_p``, ``bits``, ``draws``, ``seed``, ``n_test``.
    ``progress`` gets ``{"step", "steps", "layer"}`` after each configuration; setting
    ``cancel`` raises :class:`~workbench.training.trainer.Cancelled`.
    """
    per_layer = isinstance(base_p, dict)
    if per_layer:   # a per-layer base (e.g. the BERs LaNMax learned): {layer: p}
        base_p = {str(k): _check_p(f"base_p[{k!r}]", v) for k, v in base_p.items()}
    else:
        base_p = _check_p("base_p", base_p)
    high_p = _check_p("high_p", high_p)
    base_text = "per layer" if per_layer else f"{base_p:g}"
    check_int("draws", draws, 1, 100_000)
    check_int("seed", seed, 0)
    check_int("bits", bits, 1, 32)
    if len(x) != len(y):
        raise KnobError(f"x has {len(x)} samples but y has {len(y)}")
    layers = list(noisy_layers(model))
    if not layers:
        raise KnobError("model has no noisy (conv/linear) layers to analyse")
    if per_layer:
        unknown = set(base_p) - set(layers)
        if unknown:
            raise KnobError(f"base_p names layers the model does not have: {sorted(unknown)}")
        base_map = {name: make(SRAMMemory, p=base_p.get(name, 0.0), bits=int(bits)) for name in layers}
        base = make(SRAMMemory, p=0.0, bits=int(bits))
    else:
        base = make(SRAMMemory, p=base_p, bits=int(bits))
        base_map = {}
    high = make(SRAMMemory, p=high_p, bits=int(bits))
    steps = len(layers) + 1

    def check_cancel(done: int):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"sensitivity analysis cancelled after {done}/{steps} configurations")

    check_cancel(0)
    base_ds = mc_evaluate(model, x, y, MemoryMap(base, base_map), int(draws), seed=_stream_seed(seed, 0), device=device,
                          cancel=cancel)
    if progress is not None:
        progress({"step": 1, "steps": steps, "layer": None})
    acc = np.empty((len(layers), int(draws)))
    energy = np.empty(len(layers))
    for i, name in enumerate(layers):
        check_cancel(i + 1)
        ds = mc_evaluate(
            model,
            x,
            y,
            MemoryMap(base, {**base_map, name: high}),
            int(draws),
            seed=_stream_seed(seed, i + 1),
            device=device,
            cancel=cancel,
        )
        acc[i] = ds["accuracy"].values
        energy[i] = float(ds["energy"])
        if progress is not None:
            progress({"step": i + 2, "steps": steps, "layer": name})
    counts = layer_param_counts(model)
    out = xr.Dataset(coords={
        "layer": ("layer", np.asarray(layers, dtype=str),
                  {"long_name": "layer ℓ at the high bit error rate", "units": ""}),
        "draw": ("draw", np.arange(int(draws)), {"long_name": "Monte-Carlo draw", "units": "1"}),
    })
    out["accuracy"] = (
        ("layer", "draw"),
        acc,
        {"long_name": f"test accuracy, layer ℓ at p = {high_p:g}, others at p = {base_text}", "units": "1"},
    )
    out["baseline"] = ("draw", base_ds["accuracy"].values.astype(float),
                       {"long_name": f"test accuracy, every layer at p = {base_text}", "units": "1"})
    out["param_count"] = ("layer", np.asarray([counts[n] for n in layers], dtype=np.int64),
                          {"long_name": "weights stored in memory", "units": "1"})
    out["energy"] = ("layer", energy, {"long_name": "memory energy (÷ reliable 16-bit)", "units": "1"})
    out.attrs.update(
        base_p=(float(np.median(list(base_p.values()))) if per_layer else base_p),
        base_p_kind=("per layer (median shown)" if per_layer else "uniform"),
        high_p=high_p,
        bits=int(bits),
        draws=int(draws),
        seed=int(seed),
        n_test=int(len(y)),
        figure="thesis Fig 4.3 (§4.3.1)",
    )
    return out


def _layer_values(ds: xr.Dataset, name: str, arg: str) -> np.ndarray:
    layers = [str(v) for v in ds["layer"].values]
    if name not in layers:
        raise KnobError(f"{arg}={name!r} is not a layer of the dataset; valid layers: {', '.join(layers)}")
    return ds["accuracy"].isel(layer=layers.index(name)).values.astype(float)


def sensitivity_test(ds: xr.Dataset, layer_a: str, layer_b: str) -> dict:
    """One-sided Mann–Whitney U test that the accuracies with ``layer_a`` at the high bit error
    rate are stochastically smaller than with ``layer_b`` there (i.e. ``layer_a`` is the more
    sensitive; the boxes of thesis Fig 4.3).

    ``scipy.stats.mannwhitneyu(a, b, alternative="less")``.  Returns ``{"u", "p_value",
    "median_a", "median_b"}`` (``u`` is the U statistic of ``a``).
    """
    a = _layer_values(ds, layer_a, "layer_a")
    b = _layer_values(ds, layer_b, "layer_b")
    res = stats.mannwhitneyu(a, b, alternative="less")
    return {"u": float(res.statistic), "p_value": float(res.pvalue), "median_a": float(np.median(a)),
            "median_b": float(np.median(b))}


def median_layer(ds: xr.Dataset) -> str:
    """The layer whose median accuracy (over draws) is the median across layers (Fig 4.3).

    With an even number of layers the lower of the two middle ones is taken (the more sensitive
    of the two: comparing a layer against it is the conservative choice); ties keep layer order.
    """
    layers = [str(v) for v in ds["layer"].values]
    if not layers:
        raise KnobError("the dataset has no layers")
    med = np.median(ds["accuracy"].values.astype(float), axis=1)
    order = np.argsort(med, kind="stable")
    return layers[int(order[(len(layers) - 1) // 2])]

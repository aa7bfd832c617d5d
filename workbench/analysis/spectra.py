"""Spectral analysis of weight tensors trained with simulated memory faults (thesis §4.5, Fig 4.6–4.8).

A weight tensor ``W ∈ R^{n_1×…×n_d}`` is turned into a matrix by the **mode-k unfolding**
(Kolda & Bader 2009, §2.4): the mode-k fibres become the columns of ``W_(k) ∈ R^{n_k × N/n_k}``,
``N = n_1⋯n_d``, element ``(i_1, …, i_d)`` going to row ``i_k`` and column
``j = Σ_{m≠k} i_m J_m`` with ``J_m = Π_{l<m, l≠k} n_l`` (0-based), i.e. the earlier modes vary
fastest.  The thesis calls the singular values of that matrix ``λ_1 ≥ λ_2 ≥ …`` ("valeurs
propres", obtained "par une méthode de décomposition en valeurs singulières") and studies

* Fig 4.7: ``λ_1, λ_2`` of the mode-1 unfolding against the training bit error rate ``p_t``;
* Fig 4.8: the relative change ``Δ_i = (λ_i^8 − λ_i^1) / λ_i^1`` of the ten largest between the
  most and the least noisy training;
* a t-test of the difference of the means (t = −4.50, p = 0.0028 in the thesis), done here as
  Welch's unequal-variance t-test over training seeds.

**Mode numbering.** ``mode`` is 0-based here (``mode=0`` is the first axis, the output channels of
a conv/linear weight): the thesis' "mode 1" (Fig 4.7) is ``mode=0``.

**Which weights.** The *latent real-valued* weights ``W`` (``layer.weight``), not the stored
``sign(W)`` of BinaryConnect.  The thesis (§4.5): « Étant donné que ces mêmes paramètres sont
binarisés avec BC, les paramètres ont une représentation sur l'ensemble des réels, ce qui nous
permet d'appliquer une méthode de décomposition en valeurs singulières (SVD) pour obtenir les
valeurs propres. »  For full-precision layers the latent and stored weights coincide.
"""

from __future__ import annotations

import math
import numbers
from typing import Mapping

import numpy as np
import torch
import torch.nn as nn
import xarray as xr
from scipy import stats

from ..hardware.sram import check_ber
from ..knobs import KnobError, check_int
from ..nn import noisy_layers

__all__ = ["penultimate_layer", "relative_change", "spectra_dataset", "spectra_ttest", "top_singular_values",
           "unfold", "welch_test"]


def _as_array(tensor, name: str = "tensor") -> np.ndarray:
    if isinstance(tensor, nn.Module):
        if not isinstance(getattr(tensor, "weight", None), torch.Tensor):
            raise KnobError(f"{name} is a {type(tensor).__name__} without a weight tensor")
        tensor = tensor.weight
    if isinstance(tensor, torch.Tensor):
        return tensor.detach().cpu().to(torch.float64).numpy()
    try:
        arr = np.asarray(tensor, dtype=float)
    except (TypeError, ValueError) as exc:
        raise KnobError(f"{name} must be a numpy array or torch tensor ({exc})") from None
    return arr


def _check_mode(mode, ndim: int, what: str = "the tensor") -> int:
    if isinstance(mode, bool) or not isinstance(mode, numbers.Integral):
        raise KnobError(f"mode={mode!r} must be an integer in [0, {ndim - 1}] (0-based; the thesis' mode 1 is mode=0)")
    if not 0 <= mode < ndim:
        raise KnobError(
            f"mode={mode} is out of range: {what} has {ndim} dimensions, so mode must be in [0, {ndim - 1}] "
            "(0-based; the thesis' mode 1 is mode=0)"
        )
    return int(mode)


def unfold(tensor: np.ndarray | torch.Tensor, mode: int) -> np.ndarray:
    """Mode-``mode`` unfolding ``X_(k)`` of ``tensor`` (Kolda & Bader 2009; thesis §4.5, Fig 4.7).

    Shape ``(n_k, N / n_k)``; the mode-k fibres are the columns, ordered with the earlier modes
    varying fastest (the Kolda–Bader column order).  ``mode`` is 0-based.  Returns a float64
    numpy array.
    """
    arr = _as_array(tensor)
    if arr.ndim < 1:
        raise KnobError(f"tensor must have at least one dimension to unfold, got shape {arr.shape}")
    mode = _check_mode(mode, arr.ndim)
    n_k = arr.shape[mode]
    rest = arr.size // n_k if n_k else 0
    # moving mode k to the front keeps the other modes in order; column-major (Fortran) reshape
    # then makes the first of them vary fastest: j = Σ_{m≠k} i_m J_m
    return np.reshape(np.moveaxis(arr, mode, 0), (n_k, rest), order="F")


def top_singular_values(weight, mode: int = 0, k: int = 10) -> np.ndarray:
    """The ``k`` largest singular values ``λ_1 ≥ … ≥ λ_k`` of the mode-``mode`` unfolding of
    ``weight`` (thesis §4.5, Fig 4.7–4.8), descending.

    ``weight``: a numpy array, a torch tensor or a layer with a ``weight`` (its latent real-valued
    weight is used, see the module docstring).  Fewer than ``k`` values come back when the
    unfolding has fewer (``min(n_k, N/n_k)``).
    """
    check_int("k", k, 1, note="number of singular values")
    mat = unfold(weight, mode)
    if mat.size == 0:
        return np.zeros(0)
    sv = np.linalg.svd(mat, compute_uv=False)   # already descending
    return np.asarray(sv[: int(k)], dtype=float)


def relative_change(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``Δ = (v − ref) / ref`` elementwise (Fig 4.8: ``Δ_i = (λ_i^8 − λ_i^1) / λ_i^1``).

    ``values`` and ``reference`` must broadcast; a zero reference gives ±inf (or NaN for 0/0).
    """
    v = np.asarray(values, dtype=float)
    ref = np.asarray(reference, dtype=float)
    try:
        np.broadcast_shapes(v.shape, ref.shape)
    except ValueError:
        raise KnobError(f"values of shape {v.shape} and reference of shape {ref.shape} do not broadcast") from None
    with np.errstate(divide="ignore", invalid="ignore"):
        return (v - ref) / ref


def welch_test(a, b) -> dict:
    """Welch's unequal-variance t-test of ``mean(a) = mean(b)`` (thesis §4.5: the t-test on the
    means of the singular values, reported there as t = −4.50, p = 0.0028).

    ``scipy.stats.ttest_ind(a, b, equal_var=False)``, two-sided.  Returns ``{"t", "p_value",
    "mean_a", "mean_b", "n_a", "n_b"}``.  Each sample needs at least two values.
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    for name, s in (("a", a), ("b", b)):
        if s.size < 2:
            raise KnobError(f"{name} has {s.size} value(s): Welch's t-test needs at least 2 in each sample")
    res = stats.ttest_ind(a, b, equal_var=False)
    return {"t": float(res.statistic), "p_value": float(res.pvalue), "mean_a": float(a.mean()),
            "mean_b": float(b.mean()), "n_a": int(a.size), "n_b": int(b.size)}


def penultimate_layer(model: nn.Module) -> str:
    """Name of the next-to-last noisy layer (in module order): the layer the thesis analyses in
    §4.5 (« l'avant-dernière couche du DNN »)."""
    names = list(noisy_layers(model))
    if len(names) < 2:
        raise KnobError(f"model has {len(names)} noisy layer(s); a penultimate layer needs at least 2")
    return names[-2]


_check_p = check_ber


def spectra_dataset(models: Mapping[tuple[float, int], nn.Module], layer: str | None = None, mode: int = 0,
                    k: int = 10) -> xr.Dataset:
    """Top-``k`` singular values of the mode-``mode`` unfolding of each layer's weights, for networks
    trained at several bit error rates ``p_t`` and seeds (thesis §4.5, Fig 4.7–4.8).

    ``models``: trained networks keyed by ``(p_train, seed)``; they must share their noisy layers.
    ``layer``: one layer name (from :func:`workbench.nn.noisy_layers`) or ``None`` for all of
    them.  ``mode``: 0-based (the thesis' "mode 1" of Fig 4.7 is ``mode=0``).

    The *latent real-valued* weights ``W`` are analysed, not the stored ``sign(W)`` (see the
    module docstring for the thesis' reasoning).

    Returns a Dataset with

    * ``singular_value(p_train, seed, layer, rank)``: ``λ_rank``; ``rank`` runs 1…k (1 = largest).
      NaN where a ``(p_train, seed)`` pair is missing or the unfolding has fewer than ``rank``
      singular values;
    * ``relative_change(p_train, layer, rank)``: ``Δ = (λ̄(p_t) − λ̄(p_ref)) / λ̄(p_ref)`` (Fig 4.8)
      with ``λ̄`` the mean over seeds and ``p_ref`` the smallest ``p_train`` (so 0 there);
    * ``unfolding_rows(layer)``, ``unfolding_cols(layer)``: the shape ``(n_k, N/n_k)``;
    * attrs ``mode``, ``k``, ``reference_p_train``, ``weights = "latent"``.
    """
    if not isinstance(models, Mapping) or len(models) == 0:
        raise KnobError("models must be a non-empty mapping {(p_train, seed): model}")
    check_int("k", k, 1, note="number of singular values")
    entries = []
    for key, model in models.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise KnobError(f"models key {key!r} must be a (p_train, seed) tuple")
        p_t = _check_p("p_train", key[0])
        seed = key[1]
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise KnobError(f"seed={seed!r} in models key {key!r} must be an integer")
        if not isinstance(model, nn.Module):
            raise KnobError(f"models[{key!r}] must be a torch nn.Module, got {type(model).__name__}")
        entries.append((p_t, int(seed), model))
    if len({(p, s) for p, s, _ in entries}) != len(entries):
        raise KnobError("models has two entries with the same (p_train, seed)")
    entries.sort(key=lambda e: (e[0], e[1]))
    first_layers = list(noisy_layers(entries[0][2]))
    if not first_layers:
        raise KnobError("the models have no noisy (conv/linear) layers")
    if layer is None:
        names = first_layers
    else:
        if layer not in first_layers:
            raise KnobError(
                f"layer={layer!r} is not a noisy layer of the models; valid layers: {', '.join(first_layers)}"
            )
        names = [layer]
    p_values = sorted({p for p, _, _ in entries})
    seeds = sorted({s for _, s, _ in entries})
    sv = np.full((len(p_values), len(seeds), len(names), int(k)), np.nan)
    rows = np.zeros(len(names), dtype=int)
    cols = np.zeros(len(names), dtype=int)
    for p_t, seed, model in entries:
        layers = noisy_layers(model)
        missing = [n for n in names if n not in layers]
        if missing:
            raise KnobError(f"model (p_train={p_t}, seed={seed}) lacks layer(s) {missing}; "
                            f"valid layers: {', '.join(layers)}")
        for j, name in enumerate(names):
            w = layers[name].weight
            _check_mode(mode, w.dim(), f"layer {name!r} (weight of shape {tuple(w.shape)})")
            vals = top_singular_values(w, mode, int(k))
            sv[p_values.index(p_t), seeds.index(seed), j, : vals.size] = vals
            rows[j] = w.shape[mode]
            cols[j] = w.numel() // max(w.shape[mode], 1)
    ds = xr.Dataset(coords={
        "p_train": ("p_train", np.asarray(p_values, dtype=float),
                    {"long_name": "training bit error rate p_t", "units": "1"}),
        "seed": ("seed", np.asarray(seeds, dtype=int), {"long_name": "training seed", "units": "1"}),
        "layer": ("layer", np.asarray(names, dtype=str), {"long_name": "layer", "units": ""}),
        "rank": ("rank", np.arange(1, int(k) + 1), {"long_name": "singular value index i (1 = largest)", "units": "1"}),
    })
    ds["singular_value"] = (("p_train", "seed", "layer", "rank"), sv,
                            {"long_name": f"singular value λ_i of the mode-{int(mode)} unfolding (latent weights)",
                             "units": "1"})
    mean = ds["singular_value"].mean("seed", skipna=True)
    ref = mean.isel(p_train=0)
    ds["relative_change"] = (("p_train", "layer", "rank"), relative_change(mean.values, ref.values[None]),
                             {"long_name": f"relative change Δ_i of the seed-mean λ_i vs p_t = {p_values[0]:g}",
                              "units": "1"})
    ds["unfolding_rows"] = ("layer", rows, {"long_name": "rows n_k of the unfolding", "units": "1"})
    ds["unfolding_cols"] = ("layer", cols, {"long_name": "columns N/n_k of the unfolding", "units": "1"})
    ds.attrs.update(mode=int(mode), k=int(k), reference_p_train=float(p_values[0]), weights="latent",
                    figure="thesis Fig 4.7-4.8 (§4.5)")
    return ds


def spectra_ttest(ds: xr.Dataset, layer: str, rank: int, p_a: float, p_b: float) -> dict:
    """Welch's t-test over seeds of ``λ_rank`` of ``layer`` between ``p_train = p_a`` and ``p_b``
    (thesis §4.5; see :func:`welch_test`).  ``rank`` is 1-based (1 = largest); missing seeds
    (NaN) are dropped.  Returns :func:`welch_test`'s dict plus ``layer``, ``rank``, ``p_a``, ``p_b``.
    """
    layers = [str(v) for v in ds["layer"].values]
    if layer not in layers:
        raise KnobError(f"layer={layer!r} is not in the dataset; valid layers: {', '.join(layers)}")
    ranks = [int(r) for r in ds["rank"].values]
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or int(rank) not in ranks:
        raise KnobError(f"rank={rank!r} is out of range: rank must be an integer in [1, {max(ranks)}] (1 = largest)")
    ps = [float(v) for v in ds["p_train"].values]
    samples = []
    for name, p in (("p_a", p_a), ("p_b", p_b)):
        p = _check_p(name, p)
        match = [i for i, q in enumerate(ps) if math.isclose(q, p, rel_tol=1e-9, abs_tol=1e-15)]
        if not match:
            raise KnobError(
                f"{name}={p!r} is not a p_train of the dataset; available: {', '.join(f'{q:g}' for q in ps)}"
            )
        v = ds["singular_value"].isel(p_train=match[0]).sel(layer=layer, rank=int(rank)).values.astype(float)
        v = v[~np.isnan(v)]
        if v.size < 2:
            raise KnobError(f"{name}={p:g} has {v.size} seed(s) with λ_{int(rank)}: Welch's t-test needs at least 2")
        samples.append(v)
    out = welch_test(samples[0], samples[1])
    out.update(layer=layer, rank=int(rank), p_a=float(p_a), p_b=float(p_b))
    return out

"""Chapter 5 experiments: sharpness-aware training against memristor noise (thesis §5.3–5.5).

Every function here is a pure ``spec -> Dataset`` built from cached cells: each trained network
is a :func:`~workbench.experiments.core.train_model` entry and each accuracy-under-noise point an
:func:`~workbench.experiments.core.evaluate` entry, so a study shares its networks and points
with the pages, the CLI and the other studies.

The *methods* are the training modes compared in Fig 5.2: plain SGD, SAM, ASAM, SAMSON₂,
SAMSON∞, each alone and with aggressive clipping, and the Gaussian noise-injection baseline
(eq 5.4).  Their hyper-parameters are the thesis' best values for VGG-13 on CIFAR-10 (Table 5.7),
applied to the embedded digits network; pass ``rho=`` to study another neighbourhood size.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import numpy as np
import xarray as xr

from ..hardware import MemristorMemory
from ..knobs import KnobError, check_choice, check_int
from ..training import TrainConfig
from .core import evaluate, preset_config, test_tensors, train_model
from .store import Store

#: the network of the chapter-5 study on the embedded data (full precision, batch norm, width 0.25;
#: see the ``digits-cnn-small`` preset for why)
BASE_PRESET = "digits-cnn-small"
#: the Gaussian noise-injection training memory of the baseline (eq 5.4: σ_g = 0.94, g_u = 25)
INJECTION = {"default": {"technology": "injection", "sigma_g": 0.94, "g_u": 25.0}}

#: method → TrainConfig overrides (Table 5.7, VGG-13 / CIFAR-10)
METHODS: dict[str, dict[str, Any]] = {
    "sgd": {},
    "sam": {"sam": "sam", "rho": 0.1},
    "asam": {"sam": "asam", "rho": 0.5},
    "samson2": {"sam": "samson2", "rho": 0.2},
    "samsoninf": {"sam": "samsoninf", "rho": 1.0},
    "sgd+noise": {"clip_std": 2.0, "train_memory": INJECTION},
    "sgd+clip": {"clip": 0.15},
    "sam+clip": {"sam": "sam", "rho": 0.1, "clip": 0.2},
    "asam+clip": {"sam": "asam", "rho": 0.5, "clip": 0.2},
    "samson2+clip": {"sam": "samson2", "rho": 0.5, "clip": 0.2},
    "samsoninf+clip": {"sam": "samsoninf", "rho": 0.5, "clip": 0.2},
}
#: training mode of each method, the groups of Table 5.10: normal (N), additive noise (BA), clipping (TP)
MODES = {"sgd": "normal", "sam": "normal", "asam": "normal", "samson2": "normal", "samsoninf": "normal",
         "sgd+noise": "noise", "sgd+clip": "clipping", "sam+clip": "clipping", "asam+clip": "clipping",
         "samson2+clip": "clipping", "samsoninf+clip": "clipping"}
#: display labels
LABELS = {"sgd": "SGD", "sam": "SAM", "asam": "ASAM", "samson2": "SAMSON₂", "samsoninf": "SAMSON∞",
          "sgd+noise": "SGD + noise", "sgd+clip": "SGD + clip", "sam+clip": "SAM + clip", "asam+clip": "ASAM + clip",
          "samson2+clip": "SAMSON₂ + clip", "samsoninf+clip": "SAMSON∞ + clip"}
#: the σ_c grid of Fig 5.2
SIGMA_C_GRID = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]
#: additive conductance noise σ (µS) for the additive curves, at a chosen g_u
SIGMA_GRID = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0]


def method_config(method: str, seed: int = 0, *, base: str = BASE_PRESET, rho: float | None = None,
                  **overrides: Any) -> TrainConfig:
    """The training config of one ch.5 ``method`` (a key of :data:`METHODS`) for ``seed``;
    ``rho`` replaces the method's ρ (sharpness-aware methods only)."""
    check_choice("method", method, METHODS)
    over = dict(METHODS[method])
    if rho is not None:
        if "sam" not in over:
            raise KnobError(f"rho={rho} only applies to the sharpness-aware methods, not method={method!r}")
        over["rho"] = rho
    over.update(overrides)
    return preset_config(base, seed=seed, **over)


def check_values(name: str, values: Sequence, allowed: Sequence | None = None) -> list:
    """``values`` as a list: non-empty, without duplicates and (given ``allowed``) each one of ``allowed``."""
    values = list(values)
    if not values:
        raise KnobError(f"{name} must not be empty")
    if allowed is not None:
        for v in values:
            check_choice(name, v, allowed)
    if len(set(values)) != len(values):
        raise KnobError(f"{name}={values!r} has duplicates")
    return values


def sharpness_robustness_args(kw: dict) -> dict | None:
    """The :func:`robustness_study` arguments of the curves a sweep's ``sharpness`` entry correlates
    m-sharpness with, popping its ``robustness_levels``/``robustness_draws`` from ``kw`` (the
    :func:`sharpness_study` keyword arguments); ``None`` when the spec names neither, and
    :func:`sharpness_study` then computes ``[0, high]`` with 10 draws itself."""
    rob = {k: kw.pop(k) for k in ("robustness_levels", "robustness_draws") if k in kw}
    if not rob:
        return None
    return {"methods": kw.get("methods", tuple(METHODS)), "seeds": kw.get("seeds", (0, 1, 2)),
            "levels": rob.get("robustness_levels"), "adabs": [kw.get("adabs", True)],
            "draws": rob.get("robustness_draws", 10), "train": kw.get("train")}


def _noise_memory(noise: str, level: float, g_u: float) -> dict:
    """The memory map of one noise level; ``g_u`` matters to additive noise only (eq 3.36 vs 3.37)."""
    mem = {"technology": "memristor", "noise": noise, _noise_knob(noise): float(level)}
    return {"default": mem if noise == "multiplicative" else {**mem, "g_u": float(g_u)}}


def _noise_knob(noise: str) -> str:
    return MemristorMemory(noise=noise).noise_knob


#: the noise dims of the robustness Datasets, each named after its memory's noise knob (``sigma_c``, ``sigma``)
NOISE_DIMS = tuple(_noise_knob(n) for n in ("multiplicative", "additive"))


def noise_dim(ds: xr.Dataset) -> str:
    """The noise dim of a :func:`robustness_study` or :func:`rho_study` Dataset: ``sigma_c``
    (multiplicative, eq 3.37) or ``sigma`` (additive, eq 3.36)."""
    return next(d for d in NOISE_DIMS if d in ds.dims)


def _ticker(progress: Callable[[dict], None] | None, total: int, stage: str):
    state = {"n": 0}

    def tick():
        state["n"] += 1
        if progress is not None:
            progress({"cell": state["n"], "cells": total, "stage": stage})
    return tick


def _train_all(methods, seeds, rho, base, train, store, device, cancel, tick):
    out = {}
    for m in methods:
        for s in seeds:
            cfg = method_config(m, s, base=base, rho=rho if "sam" in METHODS[m] else None, **(train or {}))
            out[(m, s)] = (cfg, train_model(cfg, store, device=device, cancel=cancel))
            tick()
    return out


def _method_coords(ds: xr.Dataset, methods: Sequence[str]) -> xr.Dataset:
    ds = ds.assign_coords(mode=("method", [MODES[m] for m in methods], {"long_name": "training mode"}),
                          label=("method", [LABELS[m] for m in methods], {"long_name": "method label"}))
    ds["method"].attrs.update(long_name="training method", units="")
    ds["seed"].attrs.update(long_name="training seed", units="1")
    return ds


def network_grid(methods, seeds) -> tuple[list[str], list[int]]:
    """The validated ``(methods, seeds)`` of the chapter-5 studies: one trained network per pair."""
    return check_values("methods", methods, list(METHODS)), [int(s) for s in check_values("seeds", seeds)]


def rho_grid(methods, rhos: dict[str, Sequence[float]] | None) -> tuple[list[str], dict[str, list[float]]]:
    """The validated sharpness-aware ``methods`` of :func:`rho_study` and each one's ρ values (its
    thesis grid, Table 5.6, unless ``rhos`` names it)."""
    from ..training.sam import RHO_GRIDS
    methods = check_values("methods", methods, [m for m in METHODS if "sam" in METHODS[m]])
    return methods, {m: list((rhos or {}).get(m, RHO_GRIDS[METHODS[m]["sam"]])) for m in methods}


def robustness_grid(methods, seeds, noise, levels, g_u, adabs, draws):
    """The validated grid of :func:`robustness_study`: methods, seeds, noise levels, AdaBS flags
    and one memory map per level (a bad level is refused here, before anything is trained)."""
    from ..hardware import memory_map_from_dict
    methods, seeds = network_grid(methods, seeds)
    check_choice("noise", noise, ("multiplicative", "additive"))
    levels = [float(v) for v in check_values("levels", levels if levels is not None
                                       else (SIGMA_C_GRID if noise == "multiplicative" else SIGMA_GRID))]
    adabs = [bool(a) for a in check_values("adabs", adabs)]
    check_int("draws", draws, 1, 10_000)
    mems = [_noise_memory(noise, v, g_u) for v in levels]
    for mem in mems:
        memory_map_from_dict(mem)
    return methods, seeds, levels, adabs, mems


def robustness_study(
    methods: Sequence[str] = tuple(METHODS),
    seeds: Sequence[int] = (0, 1, 2),
    *,
    noise: str = "multiplicative",
    levels: Sequence[float] | None = None,
    g_u: float = 25.0,
    adabs: Sequence[bool] = (False, True),
    draws: int = 10,
    rho: float | None = None,
    base: str = BASE_PRESET,
    train: dict | None = None,
    store: Store | None = None,
    device: str = "auto",
    progress: Callable[[dict], None] | None = None,
    cancel: threading.Event | None = None,
) -> xr.Dataset:
    """Accuracy vs conductance noise per method × seed, AdaBS on/off (Fig 5.2).

    ``noise="multiplicative"``: ``g~ = g·δ``, ``δ ~ N(1, σ_c²)`` over ``levels`` (default
    :data:`SIGMA_C_GRID`, eq 3.37–3.38, independent of ``g_u``); ``"additive"``: ``g~ = g + ε``,
    ``ε ~ N(0, σ²)`` µS at conductance scale ``g_u`` (eq 3.36), ``levels`` default
    :data:`SIGMA_GRID`.  Each point is ``draws`` Monte-Carlo test passes.

    Dims: ``accuracy(method, seed, adabs, <noise knob>, draw)``, the noise dim ``sigma_c`` or ``sigma``
    (:func:`noise_dim`); ``accuracy_mean``/``accuracy_std`` over draws; ``clean_accuracy(method, seed)``;
    ``train_seconds(method, seed)``.
    """
    methods, seeds, levels, adabs, mems = robustness_grid(methods, seeds, noise, levels, g_u, adabs, draws)
    store = store or Store()
    n_cells = len(methods) * len(seeds) * (1 + len(adabs) * len(levels))
    tick = _ticker(progress, n_cells, "robustness")
    nets = _train_all(methods, seeds, rho, base, train, store, device, cancel, tick)
    acc = np.empty((len(methods), len(seeds), len(adabs), len(levels), draws))
    for i, m in enumerate(methods):
        for j, s in enumerate(seeds):
            cfg = nets[(m, s)][0]
            for a, ada in enumerate(adabs):
                for k, mem in enumerate(mems):
                    cell = evaluate(cfg, mem, draws=draws, seed=0, adabs=ada, store=store, device=device, cancel=cancel)
                    acc[i, j, a, k] = cell.accuracy.values
                    tick()
    knob = _noise_knob(noise)
    ds = xr.Dataset(coords={"method": methods, "seed": seeds, "adabs": adabs, knob: levels, "draw": np.arange(draws)})
    ds["accuracy"] = (("method", "seed", "adabs", knob, "draw"), acc, {"long_name": "test accuracy", "units": "1"})
    ds["accuracy_mean"] = ds.accuracy.mean("draw").assign_attrs(long_name="mean accuracy over draws", units="1")
    ds["accuracy_std"] = ds.accuracy.std("draw", ddof=1 if draws > 1 else 0).assign_attrs(
        long_name="std of accuracy over draws", units="1")
    ds["clean_accuracy"] = (("method", "seed"), [[nets[(m, s)][1].test_accuracy for s in seeds] for m in methods],
                            {"long_name": "clean test accuracy", "units": "1"})
    ds["train_seconds"] = (("method", "seed"), [[nets[(m, s)][1].train_seconds for s in seeds] for m in methods],
                           {"long_name": "training time", "units": "s"})
    ds[knob].attrs.update(long_name="multiplicative noise σ_c" if noise == "multiplicative" else "additive noise σ",
                             units="1" if noise == "multiplicative" else "µS")
    ds["adabs"].attrs.update(long_name="AdaBS applied", units="")
    ds["draw"].attrs.update(long_name="Monte-Carlo draw", units="1")
    ds.attrs.update(noise=noise, level_name=knob, g_u=float(g_u), base=base, draws=draws)
    return _method_coords(ds, methods)


def robustness_at(ds: xr.Dataset, high: float = 0.4, low: float = 0.0, adabs: bool = True) -> xr.DataArray:
    """Robustness ``acc(σ_c = low) − acc(σ_c = high)`` per method × seed (§5.4.4), mean over draws."""
    sel = ds.accuracy_mean.sel(adabs=adabs) if "adabs" in ds.dims else ds.accuracy_mean
    r = sel.sel({noise_dim(ds): low}) - sel.sel({noise_dim(ds): high})
    return r.assign_attrs(long_name=f"robustness acc(σ_c={low}) − acc(σ_c={high})", units="1")


def sharpness_study(
    methods: Sequence[str] = tuple(METHODS),
    seeds: Sequence[int] = (0, 1, 2),
    *,
    variants: Sequence[str] = ("sam", "asam", "samson2", "samsoninf"),
    rho: float = 0.5,
    m: int = 128,
    robustness: xr.Dataset | None = None,
    high: float = 0.4,
    adabs: bool = True,
    base: str = BASE_PRESET,
    train: dict | None = None,
    store: Store | None = None,
    device: str = "auto",
    progress: Callable[[dict], None] | None = None,
    cancel: threading.Event | None = None,
) -> xr.Dataset:
    """m-sharpness (eq 3.24 for SAM, eq 5.5 for ASAM/SAMSON, ρ = 0.5, minibatches of ``m`` from the
    training set) of every trained network, its robustness ``acc(0) − acc(high)`` from
    ``robustness`` (a :func:`robustness_study` result; computed with 10 draws when omitted), and
    the Pearson correlation per m-sharpness variant and training mode (Tab 5.10, Fig 5.4).

    Variables: ``sharpness(method, seed, variant)``, ``robustness(method, seed)``,
    ``pearson_r(variant, group)``, ``p_value(variant, group)``, ``n_points(variant, group)`` with
    ``group`` ∈ {normal, clipping, all} (each trained network is one point).
    """
    from ..analysis.sharpness import m_sharpness, sharpness_robustness_correlation
    from ..datasets import as_tensors
    from ..training import data_for
    methods, seeds = network_grid(methods, seeds)
    variants = check_values("variants", variants, ["sam", "asam", "samson2", "samsoninf"])
    store = store or Store()
    if robustness is None:
        robustness = robustness_study(methods, seeds, levels=[0.0, high], adabs=[adabs], draws=10, base=base,
                                      train=train, store=store, device=device, cancel=cancel)
    rob = robustness_at(robustness.sel({"method": methods, "seed": seeds}), high=high, adabs=adabs)
    tick = _ticker(progress, len(methods) * len(seeds), "sharpness")
    sharp = np.empty((len(methods), len(seeds), len(variants)))
    for i, meth in enumerate(methods):
        for j, s in enumerate(seeds):
            cfg = method_config(meth, s, base=base, **(train or {}))

            def compute(cfg=cfg, s=s):
                net = train_model(cfg, store, device=device, cancel=cancel).model
                x, y = as_tensors(data_for(cfg, augment=False).train)
                vals = [float(m_sharpness(net, x, y, variant=v, rho=rho, m=m, seed=s)["m_sharpness"]) for v in variants]
                return xr.Dataset({"sharpness": ("variant", np.asarray(vals, dtype=float))},
                                  coords={"variant": variants})

            cell = store.get_or_compute(
                "m-sharpness", {"train": cfg.to_dict(), "variants": variants, "rho": rho, "m": m}, compute
            )
            sharp[i, j] = cell.sharpness.values
            tick()
    ds = xr.Dataset(coords={"method": methods, "seed": seeds, "variant": variants})
    ds["sharpness"] = (("method", "seed", "variant"), sharp,
                       {"long_name": f"m-sharpness (ρ = {rho}, m = {m})", "units": "nats"})
    ds["robustness"] = (("method", "seed"), rob.values, rob.attrs)
    groups = ["normal", "clipping", "all"]
    r = np.full((len(variants), len(groups)), np.nan)
    pv, npts = r.copy(), np.zeros_like(r)
    for gi, g in enumerate(groups):
        sel = [k for k, meth in enumerate(methods) if g == "all" or MODES[meth] == g]
        if not sel:
            continue
        rob_g = ds.robustness.values[sel].ravel()
        for vi in range(len(variants)):
            sh_g = sharp[sel, :, vi].ravel()
            npts[vi, gi] = len(sh_g)
            try:
                c = sharpness_robustness_correlation(sh_g, rob_g)
            except (KnobError, ValueError):
                continue        # too few or constant points: no correlation for this group
            r[vi, gi], pv[vi, gi] = c["r"], c["p_value"]
    ds = ds.assign_coords(group=groups)
    ds["pearson_r"] = (("variant", "group"), r, {"long_name": "Pearson r (m-sharpness, robustness)", "units": "1"})
    ds["p_value"] = (("variant", "group"), pv, {"long_name": "p-value of Pearson r", "units": "1"})
    ds["n_points"] = (
        ("variant", "group"),
        npts.astype(int),
        {"long_name": "networks in the correlation", "units": "1"},
    )
    ds.attrs.update(rho=rho, m=m, high=high, adabs=int(adabs), base=base)
    return _method_coords(ds, methods)


def _per_network(
    kind: str, methods, seeds, base, train, store, device, cancel, progress, fn, extra_spec
) -> list[list[xr.Dataset]]:
    methods, seeds = network_grid(methods, seeds)
    store = store or Store()
    tick = _ticker(progress, len(methods) * len(seeds), kind)
    rows = []
    for meth in methods:
        row = []
        for s in seeds:
            cfg = method_config(meth, s, base=base, **(train or {}))

            def compute(cfg=cfg):
                net = train_model(cfg, store, device=device, cancel=cancel).model
                x, y = test_tensors(cfg)
                return fn(net, x, y)

            row.append(store.get_or_compute(kind, {"train": cfg.to_dict(), **extra_spec}, compute))
            tick()
        rows.append(row)
    return rows


def _stack(rows, methods, seeds, drop_attrs=True) -> xr.Dataset:
    ds = xr.concat([xr.concat(r, dim=xr.DataArray([int(s) for s in seeds], dims="seed"), combine_attrs="override")
                    for r in rows], dim=xr.DataArray(list(methods), dims="method"), combine_attrs="override")
    return _method_coords(ds, list(methods))


def quantization_study(
    methods: Sequence[str] = tuple(METHODS),
    seeds: Sequence[int] = (0, 1, 2),
    *,
    bits: Sequence[int] = (4, 5, 6, 7, 8),
    exclude_first: bool = True,
    base: str = BASE_PRESET,
    train: dict | None = None,
    store: Store | None = None,
    device: str = "auto",
    progress=None,
    cancel=None,
) -> xr.Dataset:
    """Accuracy under post-training linear weight quantisation (Fig 5.6), first layer excluded:
    ``accuracy(method, seed, bits)``."""
    from ..analysis.quantization import quantization_sweep
    bits = [int(b) for b in check_values("bits", bits)]
    rows = _per_network("quantization", methods, seeds, base, train, store, device, cancel, progress,
                        lambda net, x, y: quantization_sweep(net, x, y, bits=bits, exclude_first=exclude_first),
                        {"bits": bits, "exclude_first": exclude_first})
    ds = _stack(rows, methods, seeds)
    ds.attrs.update(exclude_first=int(exclude_first), base=base)
    return ds


def ood_study(
    methods: Sequence[str] = tuple(METHODS),
    seeds: Sequence[int] = (0, 1, 2),
    *,
    base: str = BASE_PRESET,
    train: dict | None = None,
    store: Store | None = None,
    device: str = "auto",
    progress=None,
    cancel=None,
) -> xr.Dataset:
    """Accuracy on the out-of-distribution test sets of Fig 5.7 (rotation, shear, zoom) per method ×
    seed, and ``wins(method)``: for how many transforms the method has the best mean over seeds.

    Pixels moved in from outside the image take the test set's smallest value (the background of
    the standardised digits; filling with 0 would paint the mean grey)."""
    from ..analysis.ood import OOD_TRANSFORMS, ood_accuracy, win_counts
    rows = _per_network("ood", methods, seeds, base, train, store, device, cancel, progress,
                        lambda net, x, y: ood_accuracy(net, x, y, fill=float(x.min())),
                        {"transforms": {k: list(v) for k, v in OOD_TRANSFORMS.items()}, "fill": "test-set minimum"})
    ds = _stack(rows, methods, seeds)
    ds["wins"] = win_counts(ds.accuracy)
    ds.attrs.update(base=base)
    return ds


#: PCM read times of Fig 5.5 (s): 1 s, 1 h, 1 day, 1 year
DRIFT_TIMES = (1.0, 3600.0, 86400.0, 31536000.0)


def drift_study(
    methods: Sequence[str] = tuple(METHODS),
    seeds: Sequence[int] = (0, 1, 2),
    *,
    times: Sequence[float] = DRIFT_TIMES,
    draws: int = 10,
    base: str = BASE_PRESET,
    train: dict | None = None,
    store: Store | None = None,
    device: str = "auto",
    progress=None,
    cancel=None,
) -> xr.Dataset:
    """Accuracy on IBM aihwkit's PCM model with drift and global drift compensation after each
    read time (Fig 5.5): ``accuracy(method, seed, t_inference, draw)``."""
    from ..analysis.drift import pcm_drift
    times = [float(t) for t in check_values("times", times)]
    rows = _per_network("pcm-drift", methods, seeds, base, train, store, device, cancel, progress,
                        lambda net, x, y: pcm_drift(net, x, y, times=times, draws=draws),
                        {"times": times, "draws": draws})
    ds = _stack(rows, methods, seeds)
    ds.attrs.update(base=base, draws=draws)
    return ds


def rho_study(
    methods: Sequence[str] = ("sam", "asam", "samson2", "samsoninf"),
    rhos: dict[str, Sequence[float]] | None = None,
    seeds: Sequence[int] = (0,),
    *,
    levels: Sequence[float] | None = None,
    draws: int = 10,
    adabs: bool = True,
    base: str = BASE_PRESET,
    train: dict | None = None,
    store: Store | None = None,
    device: str = "auto",
    progress=None,
    cancel=None,
) -> xr.Dataset:
    """Accuracy vs σ_c for each sharpness-aware method over its thesis ρ grid (Table 5.6): the
    trade-off ρ controls.  ``accuracy_mean(method, rho_index, seed, sigma_c)`` with the ρ values in
    ``rho(method, rho_index)``."""
    methods, rhos = rho_grid(methods, rhos)
    width = max(len(v) for v in rhos.values())
    levels = list(levels if levels is not None else SIGMA_C_GRID)
    out = np.full((len(methods), width, len(seeds), len(levels)), np.nan)
    clean = np.full((len(methods), width, len(seeds)), np.nan)
    rho_arr = np.full((len(methods), width), np.nan)
    total = sum(len(v) for v in rhos.values())
    tick = _ticker(progress, total, "rho")
    for i, m in enumerate(methods):
        for r, rho in enumerate(rhos[m]):
            ds = robustness_study([m], seeds, levels=levels, adabs=[adabs], draws=draws, rho=rho, base=base,
                                  train=train, store=store, device=device, cancel=cancel)
            out[i, r] = ds.accuracy_mean.isel(method=0, adabs=0).values
            clean[i, r] = ds.clean_accuracy.isel(method=0).values
            rho_arr[i, r] = rho
            tick()
    ds = xr.Dataset(coords={"method": methods, "rho_index": np.arange(width), "seed": list(seeds), "sigma_c": levels})
    ds["accuracy_mean"] = (("method", "rho_index", "seed", "sigma_c"), out,
                           {"long_name": "mean accuracy over draws", "units": "1"})
    ds["clean_accuracy"] = (("method", "rho_index", "seed"), clean, {"long_name": "clean test accuracy", "units": "1"})
    ds["rho"] = (("method", "rho_index"), rho_arr, {"long_name": "neighbourhood size ρ", "units": "1"})
    ds["sigma_c"].attrs.update(long_name="multiplicative noise σ_c", units="1")
    ds.attrs.update(adabs=int(adabs), base=base, draws=draws)
    return _method_coords(ds, methods)


__all__ = ["BASE_PRESET", "DRIFT_TIMES", "INJECTION", "LABELS", "METHODS", "MODES", "NOISE_DIMS", "SIGMA_C_GRID",
           "SIGMA_GRID", "drift_study", "method_config", "noise_dim", "ood_study", "quantization_study", "rho_study",
           "robustness_at", "robustness_study", "sharpness_study"]

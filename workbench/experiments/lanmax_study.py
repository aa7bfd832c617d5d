"""A fair LaNMax study on the embedded digits (thesis §4.4, Fig 4.4; issue 13 item 3).

LaNMax variants and the two baselines of Fig 4.4 — a uniform BER (trained and tested at ``p``)
and a noiseless BinaryConnect net of smaller width — are trained under the same budget (epochs ×
minibatches per epoch, one budget per batch size) over the same seeds.  Every E is the memory
energy of eq 3.30 relative to the full-width BinaryConnect network read from reliable memory
(thesis convention: uniform ``p`` gives ``η(p)``, width ``w`` noiseless gives its weight count ÷ the
full width's).  The comparison is :func:`energy_ratio`: how much more energy a baseline needs
than LaNMax at a stated target accuracy, with a bootstrap CI over seeds.  Every training and
every Monte-Carlo evaluation is a store cell, so ``workbench sweep specs/lanmax_study.json``
resumes where it stopped.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import xarray as xr

from ..hardware.sram import normalised_energy
from ..knobs import KnobError, check_int
from .core import evaluate, param_counts
from .sram import bc_config, check_ber_grid, evaluate_lanmax, pareto_energy_at, sram_map
from .store import Store

__all__ = ["ALPHAS", "BASELINES", "TARGETS", "TARGET_DROP", "VARIANTS", "energy_ratio", "lanmax_study", "study_energy",
           "verdict"]

ALPHAS = [0.1, 0.05, 0.03, 0.02, 0.01, 0.001, 0.0]       # thesis §4.4
#: name → training budget (batch size: 64 gives 23 OLS samples per slope on digits, 16 gives 90) and LaNMax knobs
VARIANTS: dict[str, dict[str, Any]] = {
    "thesis": {"batch_size": 64, "lanmax": {}},
    "lr_p scheduled": {"batch_size": 64, "lanmax": {"lr_p_schedule": "network"}},
    "batch 16": {"batch_size": 16, "lanmax": {}},
    "batch 16, lr_p scheduled": {"batch_size": 16, "lanmax": {"lr_p_schedule": "network"}},
}
BASELINES = ("uniform", "width")
#: the ratio is read at two target accuracies, each minus :data:`TARGET_DROP`: "noiseless" is the
#: noiseless full-width BinaryConnect net's (same budget; a LaNMax curve may never reach it), "common"
#: the highest accuracy that LaNMax and both baselines all reach (so a ratio always exists)
TARGETS = ("noiseless", "common")
TARGET_DROP = 0.01
THESIS_RATIO = 2.4    # §4.4: LaNMax vs a uniform BER at 95.3 % on CIFAR-10


def study_energy(p: Mapping[str, float], counts: Mapping[str, int], reference_weights: int) -> float:
    """Memory energy (eq 3.30) of a 1-bit network with BER ``p[layer]`` per layer, relative to a
    ``reference_weights``-weight 1-bit network read from reliable memory (η(0) = 1)."""
    names = list(counts)
    return float(normalised_energy(np.array([p[n] for n in names], float), [counts[n] for n in names], bits=1,
                                   reference_counts=[reference_weights], reference_bits=1))


def _curve(energy: np.ndarray, accuracy: np.ndarray, target: float) -> float:
    """Least energy at which the seed-mean curve (rows: seeds, columns: points) reaches ``target``."""
    return pareto_energy_at(np.nanmean(energy, axis=0), np.nanmean(accuracy, axis=0), target)


def energy_ratio(baseline: tuple[np.ndarray, np.ndarray], lanmax: tuple[np.ndarray, np.ndarray], target: float, *,
                 boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Energy a baseline needs ÷ the energy LaNMax needs at accuracy ``target`` (> 1: LaNMax wins).

    Each method is ``(energy, accuracy)``, arrays of shape ``(seeds, points)`` (one training per
    seed and grid point: a ``p``, width or α).  A method's frontier is its seed-mean curve, read at
    ``target`` by linear interpolation along its Pareto front (:func:`~.sram.pareto_energy_at`).
    The 95 % CI is the percentile bootstrap over seeds: each method's seeds are resampled with
    replacement, independently, ``boot`` times.  A resample whose LaNMax (baseline) curve never
    reaches the target counts as ratio 0 (∞), so such draws widen the CI rather than vanish.

    Returns ``ratio``, ``ci95_low``, ``ci95_high``, ``baseline_energy``, ``lanmax_energy`` (NaN
    where the seed-mean curve never reaches the target) and ``unreached`` (fraction of resamples).
    """
    (eb, ab), (el, al) = (tuple(np.atleast_2d(np.asarray(a, float)) for a in m) for m in (baseline, lanmax))
    if eb.shape != ab.shape or el.shape != al.shape:
        raise ValueError(f"energy and accuracy must have one shape (seeds, points) per method, got "
                         f"{eb.shape}/{ab.shape} and {el.shape}/{al.shape}")
    check_int("boot", boot, 1)
    e_b, e_l = _curve(eb, ab, target), _curve(el, al, target)
    rng = np.random.default_rng(seed)
    ratios = np.empty(boot)
    for i in range(boot):
        ib, il = rng.integers(0, len(eb), len(eb)), rng.integers(0, len(el), len(el))
        rb, rl = _curve(eb[ib], ab[ib], target), _curve(el[il], al[il], target)
        ratios[i] = 0.0 if np.isnan(rl) else np.inf if np.isnan(rb) else rb / rl
    lo, hi = np.quantile(ratios, [0.025, 0.975], method="inverted_cdf")
    ratio = e_b / e_l if e_l > 0 else float("nan")
    return {"ratio": float(ratio), "ci95_low": float(lo), "ci95_high": float(hi), "baseline_energy": e_b,
            "lanmax_energy": e_l, "unreached": float(np.mean((ratios == 0) | np.isinf(ratios)))}


def verdict(ratio: float, low: float, high: float, baseline: str = "a uniform BER") -> str:
    """One plain sentence: does LaNMax win against ``baseline`` on this data, and by how much."""
    thesis = f"(thesis on CIFAR-10: {THESIS_RATIO}× less than a uniform BER)"
    ci = f"95 % CI {low:.2f}–{high:.2f}"
    if not np.isfinite(ratio):
        return f"LaNMax does not reach the target accuracy here, so it does not win against {baseline} {thesis}."
    if low > 1:
        return f"LaNMax wins: {baseline} needs {ratio:.2f}× its energy at equal accuracy ({ci}) {thesis}."
    if high < 1:
        return (f"LaNMax loses: it needs {1 / ratio:.2f}× the energy of {baseline} at equal accuracy "
                f"(ratio {ratio:.2f}, {ci}) {thesis}.")
    return (f"No clear winner: {baseline} needs {ratio:.2f}× LaNMax's energy at equal accuracy, but the {ci} "
            f"contains 1 {thesis}.")


def _check_variants(variants: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    if not isinstance(variants, Mapping) or not variants:
        raise KnobError(f"variants must be a non-empty object name → {{batch_size, lanmax}}, got {variants!r}")
    out = {}
    for name, v in variants.items():
        if not isinstance(v, Mapping) or set(v) - {"batch_size", "lanmax"}:
            raise KnobError(f"variant {name!r} must be an object with keys batch_size and lanmax, got {v!r}")
        out[str(name)] = {"batch_size": check_int(f"variant {name!r} batch_size", v.get("batch_size", 64), 1),
                          "lanmax": dict(v.get("lanmax") or {})}
    return out


def lanmax_study(variants: Mapping[str, Any] = VARIANTS, alphas: Sequence[float] = ALPHAS,
                 p_uniform: Sequence[float] = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
                 widths: Sequence[float] = (0.25, 0.5, 1.0), seeds: Sequence[int] = (0, 1, 2), *, epochs: int = 10,
                 draws: int = 10, boot: int = 2000, store: Store | None = None, device: str = "auto",
                 progress: Callable[[dict], None] | None = None, cancel=None) -> xr.Dataset:
    """Fig 4.4 made fair: LaNMax variants against the uniform-BER and width baselines.

    Dims ``(point,)`` (one trained network: ``method`` uniform/width/lanmax, ``variant`` for
    LaNMax, ``batch_size``, ``value`` = p/width/α, ``seed``) with ``energy`` and ``accuracy``
    (Monte-Carlo mean over ``draws`` test passes), ``p_layer`` ``(point, layer)``; and
    ``(variant_name, baseline, target)`` with ``energy_ratio`` and its bootstrap CI
    (:func:`energy_ratio`) at ``target_accuracy`` ``(variant_name, target)``, the accuracies of
    :data:`TARGETS` under the variant's budget.
    """
    store = store or Store()
    variants = _check_variants(variants)
    p_uniform = check_ber_grid("p_uniform", p_uniform)
    epochs = check_int("epochs", epochs, 1)
    if 1.0 not in [float(w) for w in widths]:
        raise KnobError(f"widths={list(widths)} must include 1.0: the target accuracy is the full-width net's")
    ref_counts = param_counts(bc_config(0.0, 0))
    layers, ref_weights = list(ref_counts), sum(ref_counts.values())
    budgets = sorted({v["batch_size"] for v in variants.values()})
    jobs = ([("uniform", "", b, float(p), s) for b in budgets for p in p_uniform for s in seeds]
            + [("width", "", b, float(w), s) for b in budgets for w in widths for s in seeds]
            + [("lanmax", n, v["batch_size"], float(a), s) for n, v in variants.items() for a in alphas for s in seeds])
    rows = []
    for i, (method, variant, batch, value, seed) in enumerate(jobs):
        budget = {"epochs": epochs, "batch_size": batch}
        if method == "uniform":
            cfg = bc_config(value, seed, **budget)
            ds = evaluate(cfg, sram_map(value), draws=draws, seed=seed, store=store, device=device, cancel=cancel)
            p = {k: value for k in layers}
        elif method == "width":
            cfg = bc_config(0.0, seed, width=value, **budget)
            ds = evaluate(cfg, sram_map(0.0), draws=1, seed=seed, store=store, device=device, cancel=cancel)
            p = {k: 0.0 for k in layers}
        else:
            cfg = bc_config(0.0, seed, **budget)
            lm = {**variants[variant]["lanmax"], "alpha": value}
            ds = evaluate_lanmax(cfg, lm, draws=draws, seed=seed, store=store, device=device, cancel=cancel)
            p = {str(k): float(v) for k, v in zip(ds.layer.values, ds.learned_p.values)}
        rows.append({"method": method, "variant": variant, "batch_size": batch, "value": value, "seed": seed,
                     "energy": study_energy(p, param_counts(cfg), ref_weights),
                     "accuracy": float(ds.attrs["accuracy_mean"]), "p_layer": [p[k] for k in layers]})
        if progress is not None:
            progress({"cell": i + 1, "cells": len(jobs)})
    out = _points(rows, layers)
    return _ratios(out, variants, list(seeds), boot).assign_attrs(
        experiment="lanmax_study", figure="4.4", epochs=epochs, draws=draws, boot=boot, target_drop=TARGET_DROP,
        thesis_ratio=THESIS_RATIO,
        energy_reference="full-width BinaryConnect network read from reliable memory (eq 3.30, η(0) = 1)")


def _points(rows: list[dict[str, Any]], layers: list[str]) -> xr.Dataset:
    col = {k: [r[k] for r in rows] for k in rows[0]}
    out = xr.Dataset(coords={
        "point": ("point", np.arange(len(rows)), {"long_name": "trained network", "units": ""}),
        "layer": ("layer", layers, {"long_name": "layer", "units": ""}),
        "method": ("point", col["method"], {"long_name": "method", "units": ""}),
        "variant": ("point", col["variant"], {"long_name": "LaNMax variant ('' for a baseline)", "units": ""}),
        "batch_size": ("point", col["batch_size"], {"long_name": "batch size (training budget)", "units": "1"}),
        "value": ("point", col["value"], {"long_name": "uniform p, width or α of the point", "units": "1"}),
        "seed": ("point", col["seed"], {"long_name": "training seed", "units": "1"})})
    out["energy"] = ("point", col["energy"],
                     {"long_name": "memory energy E (eq 3.30) ÷ full-width BC read reliably", "units": "1"})
    out["accuracy"] = ("point", col["accuracy"], {"long_name": "mean test accuracy under its memory", "units": "1"})
    out["p_layer"] = (("point", "layer"), np.array(col["p_layer"]), {"long_name": "BER per layer", "units": "1"})
    return out


def _grid(ds: xr.Dataset, seeds: list[int], sel) -> tuple[np.ndarray, np.ndarray]:
    """``(energy, accuracy)`` of the points ``sel`` as ``(seeds, values)`` arrays."""
    sub = ds.isel(point=np.flatnonzero(sel))
    values = sorted(set(sub.value.values.tolist()))
    e, a = np.full((len(seeds), len(values)), np.nan), np.full((len(seeds), len(values)), np.nan)
    for v, s, en, ac in zip(sub.value.values, sub.seed.values, sub.energy.values, sub.accuracy.values):
        e[seeds.index(int(s)), values.index(float(v))] = en
        a[seeds.index(int(s)), values.index(float(v))] = ac
    return e, a


def _targets(ds: xr.Dataset, curves: dict[str, tuple[np.ndarray, np.ndarray]], full: np.ndarray) -> list[float]:
    """The accuracies of :data:`TARGETS`: the noiseless full-width net's seed mean, and the highest
    seed-mean accuracy every curve reaches; each minus :data:`TARGET_DROP`."""
    reach = min(float(np.nanmax(np.nanmean(a, axis=0))) for _, a in curves.values())
    return [float(np.mean(ds.accuracy.values[full])) - TARGET_DROP, reach - TARGET_DROP]


def _ratios(ds: xr.Dataset, variants: dict[str, dict[str, Any]], seeds: list[int], boot: int) -> xr.Dataset:
    names = list(variants)
    shape = (len(names), len(BASELINES), len(TARGETS))
    res = {k: np.full(shape, np.nan) for k in ("ratio", "ci95_low", "ci95_high", "baseline_energy", "unreached")}
    target, e_lanmax = np.full((len(names), len(TARGETS)), np.nan), np.full((len(names), len(TARGETS)), np.nan)
    method, batch = ds.method.values, ds.batch_size.values
    for i, name in enumerate(names):
        b = variants[name]["batch_size"]
        curves = {base: _grid(ds, seeds, (method == base) & (batch == b)) for base in BASELINES}
        curves["lanmax"] = _grid(ds, seeds, (method == "lanmax") & (ds.variant.values == name))
        target[i] = _targets(ds, curves, (method == "width") & (batch == b) & (ds.value.values == 1.0))
        for j, base in enumerate(BASELINES):
            for t, acc in enumerate(target[i]):
                r = energy_ratio(curves[base], curves["lanmax"], acc, boot=boot, seed=i)
                for k in res:
                    res[k][i, j, t] = r[k]
                e_lanmax[i, t] = r["lanmax_energy"]
    dims = ("variant_name", "baseline", "target")
    meta = {"ratio": ("energy_ratio", "energy ratio at equal accuracy: baseline E ÷ LaNMax E (> 1: LaNMax wins)"),
            "ci95_low": ("ratio_ci95_low", "95 % CI low of the ratio (percentile bootstrap over seeds)"),
            "ci95_high": ("ratio_ci95_high", "95 % CI high of the ratio (percentile bootstrap over seeds)"),
            "baseline_energy": ("baseline_energy", "baseline energy at the target accuracy"),
            "unreached": ("unreached", "fraction of bootstrap resamples where a curve misses the target")}
    out = ds.assign_coords(
        variant_name=("variant_name", names, {"long_name": "LaNMax variant", "units": ""}),
        baseline=("baseline", list(BASELINES), {"long_name": "baseline method", "units": ""}),
        target=("target", list(TARGETS), {"long_name": "how the target accuracy is set", "units": ""}))
    for k, (var, long_name) in meta.items():
        out[var] = (dims, res[k], {"long_name": long_name, "units": "1"})
    out["target_accuracy"] = (("variant_name", "target"), target,
                              {"long_name": f"target accuracy (see target; each minus {TARGET_DROP:g})", "units": "1"})
    out["lanmax_energy"] = (("variant_name", "target"), e_lanmax,
                            {"long_name": "LaNMax energy at the target accuracy", "units": "1"})
    out["ols_samples"] = ("variant_name", [_minibatches(variants[n]["batch_size"]) for n in names],
                          {"long_name": "OLS samples per slope (minibatches per epoch)", "units": "1"})
    return out


def _minibatches(batch_size: int) -> int:
    from ..datasets import load_dataset
    return -(-len(load_dataset("digits").train) // batch_size)

"""Chapter 4 experiments on under-volted SRAM: uniform-BER study, energy–accuracy curves, LaNMax
runs.  Each is a pure function of its spec returning an xarray Dataset, cached in the store; the
cells they are made of (trained networks, Monte-Carlo evaluations) are cached individually, so
sweeps share work and resume where they stopped."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import xarray as xr

from ..hardware import ENERGY_REFERENCES, SRAMMemory
from ..hardware.sram import DEFAULT_A, eta, reference_bits_of
from ..knobs import check_choice, check_numbers
from ..training import TrainConfig
from .core import evaluate, param_counts, preset_config
from .store import Store

#: Fig 4.2 grids on the digits default (the thesis uses the same shape on CIFAR-10)
P_TRAIN_GRID = [0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1]
P_TEST_GRID = [0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 2e-1, 5e-1]


def sram_map(p: float | dict[str, float], bits: int = 1) -> dict[str, Any]:
    """A memory-map dict with every layer (or each named layer) in SRAM at BER ``p``."""
    if isinstance(p, dict):
        base = SRAMMemory(p=0.0, bits=bits).knobs()
        return {
            "default": base,
            "overrides": {k: SRAMMemory(p=float(v), bits=bits).knobs() for k, v in sorted(p.items())},
        }
    return {"default": SRAMMemory(p=float(p), bits=bits).knobs(), "overrides": {}}


def bc_config(p_train: float = 0.0, seed: int = 0, width: float = 1.0, **overrides) -> TrainConfig:
    """The chapter-4 BinaryConnect digits net (``digits-wrn-bc``, WRN-10-1) trained with a uniform
    BSC at ``p_train`` (hardware-aware)."""
    mem = sram_map(p_train) if p_train > 0 else None
    return preset_config("digits-wrn-bc", seed=seed, width=width, train_memory=mem, **overrides)


def check_ber_grid(name: str, values: Sequence[float]) -> list[float]:
    """A non-empty list of bit error rates, each in [0, 0.5] (eq 3.28–3.29)."""
    return check_numbers(name, values, 0.0, 0.5)


def uniform_ber_grid(p_train: Sequence[float], p_test: Sequence[float]) -> tuple[list[float], list[float]]:
    """The validated ``(p_train, p_test)`` grid of Fig 4.2, shared by :func:`uniform_ber_study` and its sweep cells."""
    return check_ber_grid("p_train", p_train), check_ber_grid("p_test", p_test)


def bc_networks(p_train: float | Sequence[float], seeds: Sequence[int]) -> list[tuple[float, int]]:
    """The ``(p_t, seed)`` BinaryConnect networks of the sensitivity (one ``p_t``) and spectra (a list)
    experiments, shared by their runs and their sweep cells; every ``p_t`` a BER (eq 3.28–3.29)."""
    p_train = check_ber_grid("p_train", p_train if isinstance(p_train, (list, tuple)) else [p_train])
    return [(pt, int(s)) for pt in p_train for s in seeds]


def uniform_ber_study(p_train: Sequence[float] = P_TRAIN_GRID, p_test: Sequence[float] = P_TEST_GRID,
                      seeds: Sequence[int] = (0, 1, 2), *, draws: int = 10, store: Store | None = None,
                      device: str = "auto", epochs: int | None = None, train: dict | None = None,
                      progress: Callable[[dict], None] | None = None, cancel=None) -> xr.Dataset:
    """Fig 4.2: BinaryConnect nets trained at each uniform BER ``p_t`` and tested at each ``p``.
    ``train``: training-knob overrides of every network (e.g. a user's ``user_model`` and ``data``).

    Dims ``(p_train, p, seed, draw)``: ``accuracy``; ``accuracy_mean`` over draws and seeds with dims
    ``(p_train, p)``.  Every (p_t, seed) network and every (network, p) evaluation is a cache cell.
    """
    store = store or Store()
    p_train, p_test = uniform_ber_grid(p_train, p_test)
    extra = {**({"epochs": epochs} if epochs else {}), **(train or {})}
    total = len(p_train) * len(seeds) * len(p_test)
    acc = np.full((len(p_train), len(p_test), len(seeds), draws), np.nan)
    done = 0
    for i, pt in enumerate(p_train):
        for s, seed in enumerate(seeds):
            cfg = bc_config(pt, seed, **extra)
            for j, p in enumerate(p_test):
                ds = evaluate(cfg, sram_map(p), draws=draws, seed=seed, store=store, device=device, cancel=cancel)
                acc[i, j, s] = ds.accuracy.values
                done += 1
                if progress is not None:
                    progress({"cell": done, "cells": total})
    out = xr.Dataset(coords={
        "p_train": ("p_train", p_train, {"long_name": "training BER p_t", "units": "1"}),
        "p": ("p", p_test, {"long_name": "test BER p", "units": "1"}),
        "seed": ("seed", list(seeds), {"long_name": "training seed", "units": "1"}),
        "draw": ("draw", np.arange(draws), {"long_name": "Monte-Carlo draw", "units": "1"})})
    out["accuracy"] = (("p_train", "p", "seed", "draw"), acc, {"long_name": "test accuracy", "units": "1"})
    out["accuracy_mean"] = out.accuracy.mean(("seed", "draw")).assign_attrs(long_name="mean test accuracy", units="1")
    out["accuracy_std"] = out.accuracy.std(("seed", "draw"), ddof=1).assign_attrs(
        long_name="std of test accuracy", units="1"
    )
    out.attrs.update(experiment="uniform_ber_study", draws=draws, figure="4.2")
    return out


def energy_of(p: float | dict[str, float], counts: dict[str, int], bits: int, reference_weights: int,
              a: float = DEFAULT_A, reference: str = "same-network") -> float:
    """Memory energy ``ζ·Σ η(p_l)·count(W_l)`` (eq 3.30) on the Fig 4.4 axis: ÷ the full-width
    network of ``reference_weights`` weights read reliably (η(0) = 1), stored in 1 bit per weight
    (``"same-network"``, the thesis' BinaryConnect reference of §4.4) or in 16 (``"fp16"``).

    With ``"same-network"`` a full-width BinaryConnect net at a uniform ``p`` sits at ``η(p)``
    (0.3598 at ``p = 0.01``), a reliable BinaryConnect net of width ``w`` at ``ρ_w`` (its weights ÷ the
    full-width net's) and a 16-bit one at ``16 ρ_w``; ``"fp16"`` divides every point by 16.
    """
    total = sum(eta(p[name] if isinstance(p, dict) else p, a) * n for name, n in counts.items())
    return bits * total / (reference_bits_of(reference, 1) * reference_weights)


def pareto_energy_at(energy: np.ndarray, accuracy: np.ndarray, target: float) -> float:
    """Least energy at which a curve reaches ``target`` accuracy, interpolating linearly between the
    points of its Pareto front (energy ↑, accuracy ↑); NaN when the curve never reaches it."""
    e, a = np.asarray(energy, float), np.asarray(accuracy, float)
    order = np.argsort(e)
    e, a = e[order], a[order]
    front_e, front_a, best = [], [], -np.inf
    for ei, ai in zip(e, a):
        if ai > best:
            front_e.append(ei)
            front_a.append(ai)
            best = ai
    front_e, front_a = np.array(front_e), np.array(front_a)
    if front_a.size == 0 or front_a[-1] < target:
        return float("nan")
    k = int(np.argmax(front_a >= target))
    if k == 0:
        return float(front_e[0])
    a0, a1, e0, e1 = front_a[k - 1], front_a[k], front_e[k - 1], front_e[k]
    return float(e0 + (target - a0) * (e1 - e0) / (a1 - a0))


# --------------------------------------------------------------------------------------------
# LaNMax runs (cached) and the energy–accuracy comparison of Fig 4.4
# --------------------------------------------------------------------------------------------

def lanmax_run(cfg: TrainConfig, lanmax: dict[str, Any] | None = None, *, store: Store | None = None,
               device: str = "auto", progress=None, cancel=None):
    """Train ``cfg`` with LaNMax (Algorithm 1) or load the cached run.

    Returns ``(model, p, trajectory)``: the network, the learned BER per layer and the per-epoch
    Dataset of ``p`` (dims ``epoch, layer``) and losses.
    """
    from ..training import data_for, make_model
    from ..training.lanmax import LaNMaxConfig, train_lanmax

    store = store or Store()
    lcfg = LaNMaxConfig.from_dict(lanmax or {})
    spec = {"train": cfg.to_dict(), "lanmax": lcfg.to_dict()}
    from .store import spec_key
    key = spec_key("lanmax", spec)
    obj, traj = store.load_object("lanmax", key), store.load_dataset("lanmax", key)
    if obj is None or traj is None:
        with store.lock("lanmax", key):
            obj, traj = store.load_object("lanmax", key), store.load_dataset("lanmax", key)
            if obj is None or traj is None:
                res = train_lanmax(cfg, lcfg, device=device, progress=progress, cancel=cancel)
                obj = {"state_dict": res.model.state_dict(), "p": res.p, "test_accuracy": res.test_accuracy,
                       "train_seconds": res.train_seconds, "device": res.device}
                store.save_dataset("lanmax", key, res.trajectory, spec)
                store.save_object("lanmax", key, obj, spec)
                traj = store.load_dataset("lanmax", key)
    model = make_model(cfg, data_for(cfg, augment=False))
    model.load_state_dict(obj["state_dict"])
    traj.attrs["cache_key"] = key
    return model.eval(), {k: float(v) for k, v in obj["p"].items()}, traj


def evaluate_lanmax(cfg: TrainConfig, lanmax: dict[str, Any] | None = None, *, draws: int = 10, seed: int = 0,
                    store: Store | None = None, device: str = "auto", cancel=None,
                    energy_reference: str = "same-network") -> xr.Dataset:
    """Monte-Carlo accuracy of a LaNMax network read at its learned per-layer BER; ``energy``
    relative to ``energy_reference`` (:data:`workbench.hardware.ENERGY_REFERENCES`)."""
    from ..analysis.montecarlo import mc_evaluate
    from ..hardware import memory_map_from_dict
    from .core import test_tensors

    store = store or Store()
    model, p, traj = lanmax_run(cfg, lanmax, store=store, device=device, cancel=cancel)
    spec = {"lanmax_key": traj.attrs["cache_key"], "draws": draws, "seed": seed, "layout": 2}

    def compute():
        x, y = test_tensors(cfg)
        ds = mc_evaluate(model, x, y, memory_map_from_dict(sram_map(p)), draws, seed=seed, device=device, cancel=cancel)
        names = sorted(p)
        return ds.assign_coords(layer=("layer", names, {"long_name": "layer", "units": ""})).assign(
            learned_p=("layer", [p[k] for k in names], {"long_name": "BER learned by LaNMax", "units": "1"}))

    from .core import restate_energy
    ds = store.get_or_compute("evaluate-lanmax", spec, compute)
    return restate_energy(ds, memory_map_from_dict(sram_map(p)), energy_reference, lambda: {})


ALPHAS = [0.1, 0.05, 0.03, 0.02, 0.01, 0.001, 0.0]   # thesis §4.4.1, α of eq 4.5 with E relative to the same network
WIDTHS = [0.25, 0.5, 1.0, 2.0]
P_UNIFORM = [1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def energy_accuracy(widths: Sequence[float] = WIDTHS, p_uniform: Sequence[float] = P_UNIFORM,
                    alphas: Sequence[float] = ALPHAS, seeds: Sequence[int] = (0,), *, draws: int = 10,
                    lanmax: dict[str, Any] | None = None, store: Store | None = None, device: str = "auto",
                    progress: Callable[[dict], None] | None = None, cancel=None,
                    energy_reference: str = "same-network") -> xr.Dataset:
    """Fig 4.4: accuracy against memory energy on :func:`energy_of`'s axis (``energy_reference``: the
    full-width BinaryConnect net read reliably, the thesis' §4.4; or the full-width 16-bit net).

    Methods: ``fp16`` (full precision, 16 bits, widths varied, no noise), ``bc`` (BinaryConnect,
    widths varied, no noise), ``bc_uniform`` (width 1, trained and tested at a uniform ``p``; the
    thesis trains at ``p_t = 1e-4`` for ``p = 0``), ``lanmax`` (width 1, α varied).  Dims
    ``(point,)`` plus ``(point, layer)`` for the per-layer BER of each point.
    """
    store = store or Store()
    check_ber_grid("p_uniform", p_uniform)
    check_choice("energy_reference", energy_reference, list(ENERGY_REFERENCES))
    ref_counts = param_counts(preset_config("digits-wrn"))
    ref_weights = sum(ref_counts.values())
    layers = list(ref_counts)
    rows: list[dict[str, Any]] = []
    jobs: list[tuple[str, float, int]] = ([("fp16", w, s) for w in widths for s in seeds]
                                          + [("bc", w, s) for w in widths for s in seeds]
                                          + [("bc_uniform", p, s) for p in p_uniform for s in seeds]
                                          + [("lanmax", a, s) for a in alphas for s in seeds])
    for n, (method, value, seed) in enumerate(jobs):
        if method == "fp16":
            cfg = preset_config("digits-wrn", width=value, seed=seed)
            ds = evaluate(
                cfg,
                {"default": {"technology": "ideal"}, "overrides": {}},
                draws=1,
                seed=seed,
                store=store,
                device=device,
                cancel=cancel,
            )
            p_layers, bits = {k: 0.0 for k in layers}, 16
        elif method == "bc":
            cfg = bc_config(0.0, seed, width=value)
            ds = evaluate(cfg, sram_map(0.0), draws=1, seed=seed, store=store, device=device, cancel=cancel)
            p_layers, bits = {k: 0.0 for k in layers}, 1
        elif method == "bc_uniform":
            cfg = bc_config(value, seed)
            ds = evaluate(cfg, sram_map(value), draws=draws, seed=seed, store=store, device=device, cancel=cancel)
            p_layers, bits = {k: float(value) for k in layers}, 1
        else:
            cfg = bc_config(0.0, seed)
            lm = {**(lanmax or {}), "alpha": float(value)}
            ds = evaluate_lanmax(cfg, lm, draws=draws, seed=seed, store=store, device=device, cancel=cancel)
            p_layers = {str(k): float(v) for k, v in zip(ds.layer.values, ds.learned_p.values)}
            bits = 1
        counts = param_counts(cfg)
        rows.append({"method": method, "value": float(value), "seed": seed,
                     "energy": energy_of(p_layers, counts, bits, ref_weights, reference=energy_reference),
                     "rho": sum(counts.values()) / ref_weights,
                     "accuracy_mean": ds.attrs["accuracy_mean"], "ci95_low": ds.attrs["ci95_low"],
                     "ci95_high": ds.attrs["ci95_high"], "p_layer": [p_layers[k] for k in layers]})
        if progress is not None:
            progress({"cell": n + 1, "cells": len(jobs)})
    point = np.arange(len(rows))
    out = xr.Dataset(coords={
        "point": ("point", point, {"long_name": "network", "units": ""}),
        "layer": ("layer", layers, {"long_name": "layer", "units": ""}),
        "method": ("point", [r["method"] for r in rows], {"long_name": "method", "units": ""}),
        "value": ("point", [r["value"] for r in rows], {"long_name": "width, p or α of the point", "units": "1"}),
        "seed": ("point", [r["seed"] for r in rows], {"long_name": "seed", "units": "1"})})
    meta = {
        "energy": (f"memory energy (eq 3.30) relative to the full-width network read reliably "
                   f"({'1 bit' if energy_reference == 'same-network' else '16 bits'} per weight)", "1"),
        "rho": ("parameters ÷ reference", "1"),
        "accuracy_mean": ("mean test accuracy", "1"),
        "ci95_low": ("95 % CI low", "1"),
        "ci95_high": ("95 % CI high", "1"),
    }
    for name, (long_name, units) in meta.items():
        out[name] = ("point", [r[name] for r in rows], {"long_name": long_name, "units": units})
    out["p_layer"] = (
        ("point", "layer"),
        np.array([r["p_layer"] for r in rows]),
        {"long_name": "BER per layer", "units": "1"},
    )
    out.attrs.update(experiment="energy_accuracy", figure="4.4", draws=draws, energy_reference=energy_reference)
    return out


def energy_ratios(ds: xr.Dataset, target: float | None = None) -> dict[str, float]:
    """Energy ratio at equal accuracy (thesis: 2.4× vs uniform p, 3.3× vs noiseless BC).

    ``target``: the accuracy to compare at; default the highest accuracy every curve reaches."""
    curves = {}
    for m in ("lanmax", "bc_uniform", "bc"):
        sel = ds.where(ds.method == m, drop=True)
        if sel.point.size:
            curves[m] = (sel.energy.values, sel.accuracy_mean.values)
    if "lanmax" not in curves:
        return {}
    if target is None:
        target = float(min(a.max() for _, a in curves.values()))
    e_l = pareto_energy_at(*curves["lanmax"], target)
    out = {"target_accuracy": target, "lanmax_energy": e_l}
    for m in ("bc_uniform", "bc"):
        if m in curves:
            e = pareto_energy_at(*curves[m], target)
            out[f"{m}_energy"] = e
            out[f"ratio_vs_{m}"] = e / e_l if e_l > 0 else float("nan")
    return out

"""The whole NAS process of chapter 6 in one call (§6.3.1): supernet → collected states →
estimator → NSGA-II strategies M1/M2/M3 → full re-simulation → hypervolumes.

Measured on the embedded digits with the defaults (one torch thread on a busy 2-core CPU):
supernet 16 s, collection of 200 × 5 states 47 s, estimator 5 s, M1/M2/M3 searches (64 × 30 on the
estimator) < 1 s together, re-simulation of ≤ 20 states per front (5 draws, whole test split)
23–31 s: about 1 min 45 s in all.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import param
import xarray as xr

from ..datasets import load_dataset
from ..hardware.base import plain_values, set_knobs
from .estimator import SIGMA, Estimator, collect
from .search import STRATEGIES, SearchResult, compare, non_dominated, resimulate, run_search
from .supernet import Supernet, SupernetConfig, SupernetResult, train_supernet


class NASConfig(param.Parameterized):
    """Knobs of the NAS process after the supernet (thesis values in brackets)."""

    k = param.Integer(200, bounds=(1, 1_000_000), doc="random architectures collected (thesis 64 000)")
    k_g = param.Integer(5, bounds=(1, 1000), doc="Latin-hypercube g_u draws per architecture (thesis 50)")
    n_a = param.Integer(7, bounds=(1, 10_000), doc="minibatches for the collected accuracy (thesis 7)")
    n_p = param.Integer(1, bounds=(1, 10_000), doc="minibatches for the collected power (thesis 1)")
    d_a = param.Integer(1, bounds=(1, 1000), doc="noise draws averaged for the collected accuracy (thesis 1)")
    minibatch = param.Integer(32, bounds=(1, 65536), doc="minibatch size of the collection")
    sigma = param.Number(SIGMA, bounds=(0.0, 100.0), doc="additive conductance noise ε^v (µS; thesis 0.001)")
    estimator_epochs = param.Integer(200, bounds=(1, 10_000), doc="estimator training epochs (Annex C: 200)")
    pop_size = param.Integer(64, bounds=(2, 100_000), doc="NSGA-II population (thesis 1024)")
    n_gen = param.Integer(30, bounds=(1, 100_000), doc="NSGA-II generations (thesis 500)")
    draws = param.Integer(5, bounds=(1, 10_000), doc="Monte-Carlo draws of the final re-simulation")
    resimulate = param.Selector(default="front", objects=["front", "population"],
                                doc="re-simulate each strategy's estimated front or its whole final population")
    max_resimulated = param.Integer(
        20, bounds=(1, 1_000_000),
        doc="at most this many states re-simulated per strategy (evenly spread in estimated power)")
    seed = param.Integer(0, bounds=(0, 2**31 - 1), doc="seed of collection, estimator split, search and re-simulation")

    def to_dict(self) -> dict:
        return plain_values(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NASConfig":
        cfg = cls()
        set_knobs(cfg, **d)
        return cfg


@dataclass
class NASResult:
    supernet: SupernetResult
    collected: xr.Dataset
    estimator: Estimator
    searches: dict[str, SearchResult]
    resimulated: dict[str, xr.Dataset]
    hypervolume_estimated: dict[str, float]
    hypervolume: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)

    def fronts(self) -> dict[str, np.ndarray]:
        """Re-simulated non-dominated (accuracy, power) of each strategy and of the collected set."""
        out = {}
        for k, ds in self.resimulated.items():
            a, p = ds["accuracy"].values, ds["power"].values
            m = non_dominated(a, p)
            out[k] = np.column_stack([a[m], p[m]])
        return out


def _spread(states, power, n: int):
    """At most ``n`` of ``states``, evenly spaced in rank of ``power``."""
    order = np.argsort(power, kind="stable")
    if len(order) > n:
        order = order[np.unique(np.linspace(0, len(order) - 1, n).round().astype(int))]
    return states[order]


def run_nas(cfg: NASConfig | None = None, supernet_cfg: SupernetConfig | None = None, *,
            supernet: SupernetResult | None = None, progress: Callable[[dict], None] | None = None,
            cancel: threading.Event | None = None) -> NASResult:
    """Run every stage; ``progress`` gets ``{"stage", ...stage's own fields}``."""
    cfg = cfg or NASConfig()
    T: dict[str, float] = {}

    def stage(name):
        return None if progress is None else (lambda d: progress({"stage": name, **d}))

    t = time.perf_counter()
    if supernet is None:
        supernet = train_supernet(supernet_cfg, progress=stage("supernet"), cancel=cancel)
    T["supernet"] = time.perf_counter() - t
    net: Supernet = supernet.supernet
    data = load_dataset(net.config.dataset)
    t = time.perf_counter()
    ds = collect(net, cfg.k, cfg.k_g, cfg.n_a, cfg.n_p, d_a=cfg.d_a, data=data, minibatch=cfg.minibatch,
                 sigma=cfg.sigma, seed=cfg.seed, supernet_key=supernet.cache_key, progress=stage("collect"),
                 cancel=cancel)
    T["collect"] = time.perf_counter() - t
    t = time.perf_counter()
    est = Estimator(net.space, epochs=cfg.estimator_epochs, seed=cfg.seed)
    est.fit(ds, progress=stage("estimator"), cancel=cancel)
    T["estimator"] = time.perf_counter() - t
    searches: dict[str, SearchResult] = {}
    for s in STRATEGIES:
        t = time.perf_counter()
        searches[s] = run_search(s, est, net.space, cfg.pop_size, cfg.n_gen, cfg.seed, progress=stage(s), cancel=cancel,
                                 base=searches.get("M1") if s == "M3" else None)
        T[f"search_{s}"] = time.perf_counter() - t
    hv_est = compare({k: np.column_stack([r.accuracy[r.front], r.power[r.front]]) for k, r in searches.items()})
    t = time.perf_counter()
    resim = {}
    # the best collected states (their estimated front), as the thesis' "Jeu de données" curve
    best = non_dominated(ds["accuracy"].values, ds["power"].values)
    todo = {"dataset": _spread(ds["state_vector"].values[best], ds["power"].values[best], cfg.max_resimulated)}
    for k, r in searches.items():
        keep = r.front if cfg.resimulate == "front" else np.ones(len(r.states), bool)
        todo[k] = _spread(r.states[keep], r.power[keep], cfg.max_resimulated)
    for k, states in todo.items():
        resim[k] = resimulate(net, states, data=data, draws=cfg.draws, sigma=cfg.sigma, seed=cfg.seed,
                              progress=stage(f"resimulate {k}"), cancel=cancel)
    T["resimulate"] = time.perf_counter() - t
    res = NASResult(supernet, ds, est, searches, resim, hv_est, {}, T)
    res.hypervolume = compare(res.fronts())
    return res

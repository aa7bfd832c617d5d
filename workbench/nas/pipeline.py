"""The whole NAS process of chapter 6 in one call (§6.3.1): supernet → collected states →
estimator → NSGA-II strategies M1/M2/M3 → full re-simulation → hypervolumes.

Accelerator search (issue 15): ``adc_bits`` switches on one ADC-bits gene per crossbar layer,
``objectives`` chooses accuracy against ``power`` (eq 6.3, default), ``energy`` (J per inference)
and/or ``latency`` (s), with the constants of the hardware ``profile`` (:mod:`workbench.nas.cost`).
At their defaults these knobs are left out of :meth:`NASConfig.to_dict`, so a chapter-6 study keeps
its cache key and its shipped results.

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
from ..hardware.profile import DEFAULT_PROFILE, PROFILES, HardwareProfile, make_profile
from .cost import CostModel
from .estimator import ENERGY_TARGETS, SIGMA, TARGETS, Estimator, collect
from .search import (
    DEFAULT_OBJECTIVES,
    DIRECTIONS,
    STRATEGIES,
    SearchResult,
    check_objectives,
    compare,
    objective_matrix,
    objective_vars,
    pareto_mask,
    resimulate,
    run_search,
)
from .space import check_adc_choices
from .supernet import Supernet, SupernetConfig, SupernetResult, calibration_tensor, train_supernet

#: the accelerator knobs of :class:`NASConfig` and their defaults (left out of ``to_dict()`` there)
ACCELERATOR_DEFAULTS = {"adc_bits": [], "objectives": list(DEFAULT_OBJECTIVES), "profile": DEFAULT_PROFILE}


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
    adc_bits = param.List(default=[], item_type=int,
                          doc="ADC bits a crossbar layer may take, e.g. [3, 4, 5, 6, 8]: one ADC-bits gene per layer "
                              "searched with the architecture (empty: no ADC genes, ideal converters)")
    objectives = param.List(default=list(DEFAULT_OBJECTIVES), item_type=str,
                            doc="accuracy, then one or two of power (eq 6.3), energy (J per inference), "
                                "latency (s)")
    profile = param.Selector(default=DEFAULT_PROFILE, objects=sorted(PROFILES),
                             doc="hardware profile of the energy and latency objectives")

    def check(self) -> "NASConfig":
        """Refuse an objective list or ADC-bits list that is not allowed (a :class:`KnobError`)."""
        check_objectives(self.objectives)
        if self.adc_bits:
            check_adc_choices(self.adc_bits)
        return self

    @property
    def accelerator(self) -> bool:
        """Whether ADC genes or objectives other than eq 6.3's are on."""
        return any(getattr(self, k) != v for k, v in ACCELERATOR_DEFAULTS.items())

    @property
    def uses_profile(self) -> bool:
        """Whether the energy or latency objective (hence the hardware profile) is used."""
        return any(o in ("energy", "latency") for o in self.objectives)

    def hardware_profile(self) -> HardwareProfile | None:
        """The profile of the energy/latency objectives (None when neither is used)."""
        return make_profile(self.profile) if self.uses_profile else None

    def to_dict(self) -> dict:
        d = plain_values(self)
        for k, v in ACCELERATOR_DEFAULTS.items():       # at their defaults: the chapter-6 key
            if d[k] == v:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NASConfig":
        cfg = cls()
        set_knobs(cfg, **d)
        return cfg.check()


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
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES

    def fronts(self) -> dict[str, np.ndarray]:
        """Re-simulated non-dominated (accuracy, power) of each strategy and of the collected set
        (columns: the variables of :attr:`objectives`, non-dominated on all of them)."""
        out = {}
        variables = objective_vars(self.objectives)
        for k, ds in self.resimulated.items():
            vals = {v: ds[v].values for v in variables}
            m = pareto_mask(objective_matrix(vals, variables))
            out[k] = np.column_stack([vals[v][m] for v in variables])
        return out

    def directions(self) -> tuple[str, ...]:
        return tuple(DIRECTIONS[v] for v in objective_vars(self.objectives))


def _spread(states, power, n: int):
    """At most ``n`` of ``states``, evenly spaced in rank of ``power``."""
    order = np.argsort(power, kind="stable")
    if len(order) > n:
        order = order[np.unique(np.linspace(0, len(order) - 1, n).round().astype(int))]
    return states[order]


def run_nas(cfg: NASConfig | None = None, supernet_cfg: SupernetConfig | None = None, *,
            supernet: SupernetResult | None = None, progress: Callable[[dict], None] | None = None,
            cancel: threading.Event | None = None) -> NASResult:
    """Run every stage; ``progress`` gets ``{"stage", ...stage's own fields}``.

    With ``cfg.adc_bits`` the states carry ADC genes (collected, searched and re-simulated through
    those converters); with the energy or latency objective the collection and the re-simulation
    record J and s per inference with ``cfg.profile``, the estimator also learns the crossbar array
    energy and the searches add the exact rest (:class:`~workbench.nas.cost.CostModel`)."""
    cfg = (cfg or NASConfig()).check()
    objectives = tuple(cfg.objectives)
    variables = objective_vars(objectives)
    T: dict[str, float] = {}

    def stage(name):
        return None if progress is None else (lambda d: progress({"stage": name, **d}))

    t = time.perf_counter()
    if supernet is None:
        supernet = train_supernet(supernet_cfg, progress=stage("supernet"), cancel=cancel)
    T["supernet"] = time.perf_counter() - t
    net: Supernet = supernet.supernet
    data = load_dataset(net.config.dataset)
    space = net.space.with_adc(cfg.adc_bits) if cfg.adc_bits else net.space
    profile = cfg.hardware_profile()
    t = time.perf_counter()
    ds = collect(net, cfg.k, cfg.k_g, cfg.n_a, cfg.n_p, d_a=cfg.d_a, data=data, minibatch=cfg.minibatch,
                 sigma=cfg.sigma, seed=cfg.seed, supernet_key=supernet.cache_key, progress=stage("collect"),
                 cancel=cancel, **({"space": space, "profile": profile} if cfg.accelerator else {}))
    T["collect"] = time.perf_counter() - t
    t = time.perf_counter()
    targets = ENERGY_TARGETS if "energy" in objectives else TARGETS
    est = Estimator(space, epochs=cfg.estimator_epochs, seed=cfg.seed, targets=targets)
    est.fit(ds, progress=stage("estimator"), cancel=cancel)
    T["estimator"] = time.perf_counter() - t
    cost = None if profile is None else CostModel(net, profile, calibration_tensor(data, 1, cfg.seed), space)
    extra = {"objectives": objectives, "cost": cost} if cfg.accelerator else {}
    searches: dict[str, SearchResult] = {}
    for s in STRATEGIES:
        t = time.perf_counter()
        searches[s] = run_search(s, est, space, cfg.pop_size, cfg.n_gen, cfg.seed, progress=stage(s), cancel=cancel,
                                 base=searches.get("M1") if s == "M3" else None, **extra)
        T[f"search_{s}"] = time.perf_counter() - t
    directions = tuple(DIRECTIONS[v] for v in variables)
    hv_est = compare({k: np.column_stack([r.values()[v][r.front] for v in variables]) for k, r in searches.items()},
                     directions=directions)
    t = time.perf_counter()
    resim = {}
    # the best collected states (their estimated front), as the thesis' "Jeu de données" curve; spread
    # evenly in the first cost (power for eq 6.3)
    collected = {v: ds[v].values for v in variables}
    best = pareto_mask(objective_matrix(collected, variables))
    todo = {"dataset": _spread(ds["state_vector"].values[best], collected[variables[1]][best], cfg.max_resimulated)}
    for k, r in searches.items():
        keep = r.front if cfg.resimulate == "front" else np.ones(len(r.states), bool)
        todo[k] = _spread(r.states[keep], r.values()[variables[1]][keep], cfg.max_resimulated)
    extra = {"space": space, "profile": profile} if cfg.accelerator else {}
    for k, states in todo.items():
        resim[k] = resimulate(net, states, data=data, draws=cfg.draws, sigma=cfg.sigma, seed=cfg.seed,
                              progress=stage(f"resimulate {k}"), cancel=cancel, **extra)
    T["resimulate"] = time.perf_counter() - t
    res = NASResult(supernet, ds, est, searches, resim, hv_est, {}, T, objectives)
    res.hypervolume = compare(res.fronts(), directions=directions)
    return res

"""NSGA-II search of architecture and ``g_u`` on the estimator (thesis §6.2.2–6.2.3, §6.4).

``min_s (−A(s), P(s))`` (eq 6.3) with pymoo's NSGA-II, the operators of
:mod:`workbench.nas.operators` and the :class:`~workbench.nas.estimator.Estimator` as the
objective.  Strategies:

* **M1** — architecture only, ``g_u = g_u^d`` on every kept layer (``r = 1``);
* **M2** — architecture and ``g_u`` jointly;
* **M3** — M1's final population, each ``g_u`` vector scaled by 10 factors
  ``linspace(0.9, 1.1, 10)`` (clipped to the domain of eq 6.2); the non-dominated set of these
  scaled states together with the M1 states themselves (factor 1) is kept.

The final states are then re-simulated in full (:func:`resimulate`) and compared by
:func:`hypervolume`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import xarray as xr
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.callback import Callback
from pymoo.core.problem import Problem
from pymoo.indicators.hv import HV
from pymoo.optimize import minimize
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from ..analysis.montecarlo import mc_evaluate
from ..datasets import DataBundle, as_tensors, load_dataset
from ..knobs import check_choice, check_int, check_number
from ..training.trainer import Cancelled
from .estimator import SIGMA, Estimator, SubnetCache, device_of, memory_map
from .operators import StateCrossover, StateMutation, StateRepair, StateSampling
from .space import STATE_DIM, ArchSpace
from .supernet import Supernet, calibration_tensor

STRATEGIES = ("M1", "M2", "M3")
#: the scaling factors of M3 (§6.2.2)
M3_FACTORS = tuple(np.linspace(0.9, 1.1, 10))


class EstimatorProblem(Problem):
    """pymoo problem ``min (−A(s), P(s))`` (eq 6.3) evaluated by the estimator (vectorised)."""

    def __init__(self, estimator: Estimator, space: ArchSpace):
        super().__init__(n_var=space.n_var, n_obj=2, xl=space.xl, xu=space.xu)
        self.estimator, self.space = estimator, space

    def _evaluate(self, X, out, *args, **kwargs):
        acc, pw = self.estimator.predict(X)
        out["F"] = np.column_stack([-acc, pw])


def non_dominated(accuracy, power) -> np.ndarray:
    """Boolean mask of the states on the (accuracy ↑, power ↓) Pareto front (pymoo's sorting)."""
    F = np.column_stack([-np.asarray(accuracy, float), np.asarray(power, float)])
    mask = np.zeros(len(F), bool)
    if len(F):
        mask[NonDominatedSorting().do(F, only_non_dominated_front=True)] = True
    return mask


@dataclass
class SearchResult:
    """Final population of one strategy with its estimated objectives."""

    strategy: str
    states: np.ndarray
    accuracy: np.ndarray
    power: np.ndarray
    seconds: float = 0.0
    n_gen: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def front(self) -> np.ndarray:
        """Mask of the non-dominated states (on the estimator)."""
        return non_dominated(self.accuracy, self.power)

    def to_dataset(self, space: ArchSpace) -> xr.Dataset:
        ds = xr.Dataset(coords={"state": ("state", np.arange(len(self.states)), {"long_name": "state", "units": "1"}),
                                **space.state_coords()})
        ds["state_vector"] = (("state", STATE_DIM), self.states,
                              {"long_name": "state s = (m, g_u/g_u^d)", "units": "1"})
        ds["accuracy"] = ("state", self.accuracy, {"long_name": "estimated accuracy", "units": "1"})
        ds["power"] = ("state", self.power, {"long_name": "estimated crossbar power", "units": "a.u."})
        ds["front"] = ("state", self.front, {"long_name": "non-dominated on the estimator", "units": ""})
        ds.attrs.update(strategy=self.strategy, seconds=self.seconds, n_gen=self.n_gen)
        return ds


class _Stream(Callback):
    """pymoo callback: stream the current front, honour cancellation."""

    def __init__(self, strategy, n_gen, progress, cancel, history):
        super().__init__()
        self.strategy, self.n_gen, self.progress, self.cancel, self.history = strategy, n_gen, progress, cancel, history

    def notify(self, algorithm):
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"{self.strategy} search cancelled at generation {algorithm.n_gen}/{self.n_gen}")
        F = algorithm.opt.get("F")
        X = algorithm.opt.get("X")
        order = np.argsort(F[:, 1])
        msg = {"strategy": self.strategy, "generation": int(algorithm.n_gen), "n_gen": self.n_gen,
               "accuracy": -F[order, 0], "power": F[order, 1], "states": X[order]}
        self.history.append({"generation": msg["generation"], "accuracy": msg["accuracy"], "power": msg["power"]})
        if self.progress is not None:
            self.progress(msg)


def scale_states(space: ArchSpace, states, factors=M3_FACTORS) -> np.ndarray:
    """M3's scaled configurations: every state's ``g_u`` times each factor (clipped to eq 6.2),
    rows ordered state-major."""
    S = np.atleast_2d(np.asarray(states, float))
    out = np.repeat(S, len(factors), axis=0)
    f = np.tile(np.asarray(factors, float), len(S))[:, None]
    g = out[:, space.gu_slice]
    out[:, space.gu_slice] = np.where(g > 0, np.clip(g * f, space.gu_low, space.gu_high), 0.0)
    return out


def run_search(strategy: str, estimator: Estimator, space: ArchSpace, pop_size: int = 64, n_gen: int = 30,
               seed: int = 0, progress: Callable[[dict], None] | None = None,
               cancel: threading.Event | None = None, base: SearchResult | None = None,
               factors=M3_FACTORS) -> SearchResult:
    """Run strategy ``"M1"``, ``"M2"`` or ``"M3"`` with NSGA-II on the estimator.

    ``progress`` receives, after every generation, ``{"strategy", "generation", "n_gen",
    "accuracy", "power", "states"}`` of the current non-dominated front (sorted by power) so a
    page can stream it; setting ``cancel`` raises :class:`Cancelled` at the next generation.
    M3 scales ``base`` (an M1 result) or runs M1 first with the same arguments.
    """
    check_choice("strategy", strategy, STRATEGIES)
    check_int("pop_size", pop_size, 2)
    check_int("n_gen", n_gen, 1)
    start = time.perf_counter()
    if strategy == "M3":
        if base is None:
            base = run_search("M1", estimator, space, pop_size, n_gen, seed, progress, cancel)
        elif base.strategy != "M1":
            raise ValueError(f"M3 scales an M1 result, got {base.strategy}")
        cand = np.concatenate([base.states, scale_states(space, base.states, factors)])
        cand = np.unique(cand, axis=0)
        acc, pw = estimator.predict(cand)
        keep = non_dominated(acc, pw)
        res = SearchResult("M3", cand[keep], acc[keep], pw[keep], base.seconds + time.perf_counter() - start,
                           base.n_gen, base.history)
        if progress is not None:
            order = np.argsort(res.power)
            progress({"strategy": "M3", "generation": base.n_gen, "n_gen": base.n_gen, "accuracy": res.accuracy[order],
                      "power": res.power[order], "states": res.states[order]})
        return res
    search_gu = strategy == "M2"
    algorithm = NSGA2(pop_size=pop_size, sampling=StateSampling(space, search_gu), crossover=StateCrossover(space),
                      mutation=StateMutation(space, search_gu), repair=StateRepair(space), eliminate_duplicates=True)
    history: list[dict] = []
    problem = EstimatorProblem(estimator, space)
    res = minimize(problem, algorithm, ("n_gen", n_gen), seed=seed, verbose=False,
                   callback=_Stream(strategy, n_gen, progress, cancel, history))
    X, F = res.pop.get("X"), res.pop.get("F")
    return SearchResult(strategy, X, -F[:, 0], F[:, 1], time.perf_counter() - start, n_gen, history)


def resimulate(supernet: Supernet, states, *, data: DataBundle | None = None, draws: int = 5, sigma: float = SIGMA,
               seed: int = 0, calib_size: int = 256, fold_bn: bool = True,
               progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None) -> xr.Dataset:
    """Full Monte-Carlo accuracy and power of ``states`` on the whole test split (§6.4).

    Each state's subnet is sliced, BN-recalibrated (and folded), programmed with its ``g_u``
    and evaluated with :func:`~workbench.analysis.montecarlo.mc_evaluate` over ``draws`` noise
    draws (accuracy on every test image, power per sample on every test image).  Returns
    ``accuracy``/``accuracy_std``/``power`` over ``state``."""
    space = supernet.space
    S = np.atleast_2d(np.asarray(states, float))
    data = data if data is not None else load_dataset(supernet.config.dataset)
    dev = device_of(supernet)
    x, y = (t.to(dev) for t in as_tensors(data.test))
    calib = calibration_tensor(data, calib_size, seed).to(dev)
    subnets = SubnetCache(supernet, calib, fold_bn)
    names = space.layer_names()
    acc, std, pw = np.empty(len(S)), np.empty(len(S)), np.empty(len(S))
    start = time.perf_counter()
    for i, s in enumerate(S):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"re-simulation cancelled after {i}/{len(S)} states")
        net = subnets(s)
        r = mc_evaluate(net, x, y, memory_map(net, names, s[space.gu_slice], sigma), draws=draws, seed=seed,
                        device=dev, power_batch=len(y))
        acc[i], std[i], pw[i] = r.attrs["accuracy_mean"], r.attrs["accuracy_std"], float(r["power"].mean())
        if progress is not None:
            progress({"done": i + 1, "total": len(S)})
    ds = xr.Dataset(coords={"state": ("state", np.arange(len(S)), {"long_name": "state", "units": "1"}),
                            **space.state_coords()})
    ds["state_vector"] = (("state", STATE_DIM), S, {"long_name": "state s = (m, g_u/g_u^d)", "units": "1"})
    ds["accuracy"] = ("state", acc, {"long_name": "test accuracy (Monte-Carlo mean)", "units": "1"})
    ds["accuracy_std"] = ("state", std, {"long_name": "test accuracy std over draws", "units": "1"})
    ds["power"] = ("state", pw, {"long_name": "crossbar power (Monte-Carlo mean)", "units": "a.u."})
    ds.attrs.update(draws=int(draws), sigma=float(sigma), seed=int(seed), n_test=int(len(y)),
                    supernet_key=supernet.config.cache_key(), seconds=time.perf_counter() - start)
    return ds


def hypervolume(front, ref_point=(0.0, 1.1), power_scale: float | None = None) -> float:
    """Hypervolume (pymoo's HV indicator) of an (accuracy, power) front.

    ``front``: ``(n, 2)`` array of (accuracy, power) in collected units.  Objectives are
    minimised and normalised: ``(−A, P / power_scale)``; the reference point is given in those
    units, default ``(0, 1.1)``: zero accuracy and 1.1 × ``power_scale``.  ``power_scale``
    defaults to the front's largest power — pass the largest power of *all* fronts compared
    (as :func:`compare` does) so their hypervolumes share one scale.  Points not strictly better
    than the reference point in both objectives add nothing."""
    F = np.atleast_2d(np.asarray(front, float))
    if F.size == 0:
        return 0.0
    scale = float(power_scale) if power_scale is not None else float(F[:, 1].max())
    check_number("power_scale", scale, 0.0, inclusive=(False, True))
    G = np.column_stack([-F[:, 0], F[:, 1] / scale])
    ref = np.asarray(ref_point, float)
    G = G[np.all(G < ref, axis=1)]
    if len(G) == 0:
        return 0.0
    return float(HV(ref_point=ref)(G))


def compare(fronts: dict[str, np.ndarray], ref_point=(0.0, 1.1)) -> dict[str, float]:
    """Hypervolumes of several (accuracy, power) fronts on one power scale (their joint max)."""
    scale = max(float(np.max(np.atleast_2d(f)[:, 1])) for f in fronts.values() if np.size(f))
    return {k: hypervolume(f, ref_point, scale) for k, f in fronts.items()}


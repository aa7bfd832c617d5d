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

Accelerator objectives (issue 15): ``objectives`` replaces eq 6.3's ``(−A, P)`` by accuracy
against the total energy per inference in joules (``"energy"``: the estimator's learned crossbar
array energy plus the exact converter, accumulation and buffer energy of
:class:`~workbench.nas.cost.CostModel`, ISAAC Table 6 / Walden constants of a
:class:`~workbench.hardware.profile.HardwareProfile`), with the latency in seconds (``"latency"``,
exact) as an optional third objective; the ADC bits per layer are searched as optional genes of the
state (:meth:`ArchSpace.with_adc`).  The default ``("accuracy", "power")`` is eq 6.3, unchanged.
"""

from __future__ import annotations

import json
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
from ..hardware.profile import HardwareProfile
from ..knobs import KnobError, check_choice, check_int, check_number
from ..training.trainer import Cancelled
from .cost import CostModel
from .estimator import SIGMA, Estimator, SubnetCache, device_of, state_memory_map
from .operators import StateCrossover, StateMutation, StateRepair, StateSampling
from .space import STATE_DIM, ArchSpace
from .supernet import Supernet, calibration_tensor

STRATEGIES = ("M1", "M2", "M3")
#: the scaling factors of M3 (§6.2.2)
M3_FACTORS = tuple(np.linspace(0.9, 1.1, 10))
#: the objectives a search can use: name -> (variable of a result Dataset, "max" or "min")
OBJECTIVES = {"accuracy": ("accuracy", "max"), "power": ("power", "min"), "energy": ("energy_j", "min"),
              "latency": ("latency_s", "min")}
#: eq 6.3: accuracy against crossbar power
DEFAULT_OBJECTIVES = ("accuracy", "power")
#: the direction of each result variable (accuracy is maximised, every cost minimised)
DIRECTIONS = {var: d for var, d in OBJECTIVES.values()}


def check_objectives(objectives, name: str = "objectives") -> tuple[str, ...]:
    """``objectives`` (a list or a comma-separated string) as a tuple: ``accuracy`` first, then one or
    two distinct costs among ``power``, ``energy``, ``latency`` (a :class:`KnobError` naming ``name``)."""
    items = objectives.split(",") if isinstance(objectives, str) else list(objectives)
    items = tuple(str(o).strip() for o in items)
    costs = [o for o in OBJECTIVES if o != "accuracy"]
    ok = (len(items) in (2, 3) and items[0] == "accuracy" and len(set(items)) == len(items)
          and all(o in costs for o in items[1:]))
    if not ok:
        raise KnobError(f"{name}={','.join(items)!r} is not valid: {name} must be accuracy followed by one or two "
                        f"of {', '.join(costs)} (e.g. accuracy,energy or accuracy,energy,latency)")
    return items


def objective_vars(objectives) -> list[str]:
    """The result variables of ``objectives`` (``energy`` -> ``energy_j``, ``latency`` -> ``latency_s``)."""
    return [OBJECTIVES[o][0] for o in objectives]


def objective_matrix(values: dict, variables) -> np.ndarray:
    """The minimised objective matrix of ``values`` (``{variable: (n,)}``) on ``variables``:
    ``−accuracy``, costs as they are (eq 6.3's sign convention)."""
    return np.column_stack([-np.asarray(values[v], float) if DIRECTIONS[v] == "max" else np.asarray(values[v], float)
                            for v in variables])


def pareto_mask(F) -> np.ndarray:
    """Boolean mask of the rows of the minimised objective matrix ``F`` on the Pareto front (pymoo's sorting)."""
    F = np.asarray(F, float)
    mask = np.zeros(len(F), bool)
    if len(F):
        mask[NonDominatedSorting().do(F, only_non_dominated_front=True)] = True
    return mask


def estimate_objectives(estimator: Estimator, states, cost: CostModel | None = None) -> dict[str, np.ndarray]:
    """Estimated ``accuracy`` and ``power`` of ``states``; with ``cost``, also ``latency_s`` (exact) and,
    when the estimator learned the array energy, ``energy_j`` = learned array energy + exact rest."""
    pred = dict(zip(estimator.targets, estimator.predict(states)))
    out = {"accuracy": pred["accuracy"], "power": pred["power"]}
    if cost is not None:
        exact = cost.costs(states)
        out["latency_s"] = exact["latency_s"]
        if "array_energy_j" in pred:
            out["energy_j"] = pred["array_energy_j"] + exact["exact_energy_j"]
    return out


def _check_objective_inputs(objectives, estimator: Estimator, cost: CostModel | None) -> None:
    if ("energy" in objectives or "latency" in objectives) and cost is None:
        raise ValueError(f"objectives {objectives} need a CostModel (a hardware profile): pass cost=")
    if "energy" in objectives and "array_energy_j" not in estimator.targets:
        raise ValueError("the energy objective needs an estimator that learned array_energy_j "
                         "(Estimator(targets=ENERGY_TARGETS) on a collection with a hardware profile)")


class EstimatorProblem(Problem):
    """pymoo problem ``min (−A(s), P(s))`` (eq 6.3) evaluated by the estimator (vectorised); with
    ``objectives`` (and a :class:`CostModel` for energy and latency) ``min (−A, E[, T])``."""

    def __init__(self, estimator: Estimator, space: ArchSpace, objectives=DEFAULT_OBJECTIVES,
                 cost: CostModel | None = None):
        objectives = check_objectives(objectives)
        _check_objective_inputs(objectives, estimator, cost)
        super().__init__(n_var=space.n_var, n_obj=len(objectives), xl=space.xl, xu=space.xu)
        self.estimator, self.space, self.objectives, self.cost = estimator, space, objectives, cost

    def _evaluate(self, X, out, *args, **kwargs):
        out["F"] = objective_matrix(estimate_objectives(self.estimator, X, self.cost), objective_vars(self.objectives))


def non_dominated(accuracy, power) -> np.ndarray:
    """Boolean mask of the states on the (accuracy ↑, power ↓) Pareto front (pymoo's sorting)."""
    return pareto_mask(np.column_stack([-np.asarray(accuracy, float), np.asarray(power, float)]))


@dataclass
class SearchResult:
    """Final population of one strategy with its estimated objectives (``energy_j``/``latency_s``
    with a cost model; ``objectives``: what the front is non-dominated on)."""

    strategy: str
    states: np.ndarray
    accuracy: np.ndarray
    power: np.ndarray
    seconds: float = 0.0
    n_gen: int = 0
    history: list[dict] = field(default_factory=list)
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    energy_j: np.ndarray | None = None
    latency_s: np.ndarray | None = None

    def values(self) -> dict[str, np.ndarray]:
        """The estimated variables: ``accuracy``, ``power`` and those of a cost model."""
        out = {"accuracy": self.accuracy, "power": self.power}
        for v in ("energy_j", "latency_s"):
            if getattr(self, v) is not None:
                out[v] = getattr(self, v)
        return out

    @property
    def front(self) -> np.ndarray:
        """Mask of the non-dominated states (on the estimator)."""
        if tuple(self.objectives) == DEFAULT_OBJECTIVES:
            return non_dominated(self.accuracy, self.power)
        return pareto_mask(objective_matrix(self.values(), objective_vars(self.objectives)))

    def to_dataset(self, space: ArchSpace) -> xr.Dataset:
        ds = xr.Dataset(coords={"state": ("state", np.arange(len(self.states)), {"long_name": "state", "units": "1"}),
                                **space.state_coords()})
        ds["state_vector"] = (("state", STATE_DIM), self.states,
                              {"long_name": "state s = (m, g_u/g_u^d)", "units": "1"})
        ds["accuracy"] = ("state", self.accuracy, {"long_name": "estimated accuracy", "units": "1"})
        ds["power"] = ("state", self.power, {"long_name": "estimated crossbar power", "units": "a.u."})
        if self.energy_j is not None:
            ds["energy_j"] = ("state", self.energy_j, {"long_name": "estimated energy per inference", "units": "J"})
        if self.latency_s is not None:
            ds["latency_s"] = ("state", self.latency_s, {"long_name": "latency per inference", "units": "s"})
        ds["front"] = ("state", self.front, {"long_name": "non-dominated on the estimator", "units": ""})
        ds.attrs.update(strategy=self.strategy, seconds=self.seconds, n_gen=self.n_gen)
        if tuple(self.objectives) != DEFAULT_OBJECTIVES:
            ds.attrs["objectives"] = ",".join(self.objectives)
        return ds


class _Stream(Callback):
    """pymoo callback: stream the current front, honour cancellation."""

    def __init__(self, strategy, n_gen, progress, cancel, history, evaluate=None):
        super().__init__()
        self.strategy, self.n_gen, self.progress, self.cancel, self.history = strategy, n_gen, progress, cancel, history
        self.evaluate = evaluate           # states -> estimated variables (objectives other than eq 6.3)

    def notify(self, algorithm):
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"{self.strategy} search cancelled at generation {algorithm.n_gen}/{self.n_gen}")
        F = algorithm.opt.get("F")
        X = algorithm.opt.get("X")
        order = np.argsort(F[:, 1])
        msg = {"strategy": self.strategy, "generation": int(algorithm.n_gen), "n_gen": self.n_gen,
               "accuracy": -F[order, 0], "power": F[order, 1], "states": X[order]}
        if self.evaluate is not None:         # F holds other costs than power: report every estimated variable
            msg.update(self.evaluate(X[order]))
        self.history.append({k: v for k, v in msg.items() if k not in ("strategy", "n_gen", "states")})
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


def _result(strategy, states, values, objectives, seconds, n_gen, history) -> SearchResult:
    return SearchResult(strategy, states, values["accuracy"], values["power"], seconds, n_gen, history,
                        tuple(objectives), values.get("energy_j"), values.get("latency_s"))


def run_search(strategy: str, estimator: Estimator, space: ArchSpace, pop_size: int = 64, n_gen: int = 30,
               seed: int = 0, progress: Callable[[dict], None] | None = None,
               cancel: threading.Event | None = None, base: SearchResult | None = None,
               factors=M3_FACTORS, *, objectives=DEFAULT_OBJECTIVES, cost: CostModel | None = None) -> SearchResult:
    """Run strategy ``"M1"``, ``"M2"`` or ``"M3"`` with NSGA-II on the estimator.

    ``progress`` receives, after every generation, ``{"strategy", "generation", "n_gen",
    "accuracy", "power", "states"}`` of the current non-dominated front (sorted by power) so a
    page can stream it; setting ``cancel`` raises :class:`Cancelled` at the next generation.
    M3 scales ``base`` (an M1 result) or runs M1 first with the same arguments.

    ``objectives``: eq 6.3's ``("accuracy", "power")`` (default) or accuracy with ``"energy"``
    and/or ``"latency"`` (:func:`check_objectives`), which need ``cost`` (a :class:`CostModel` of the
    profile) and, for energy, an estimator with the ``array_energy_j`` target; the front streamed
    is then sorted by the first cost and carries ``energy_j``/``latency_s`` too.  With ADC genes in
    ``space`` every strategy also searches the ADC bits (M1: architecture and ADC bits).
    """
    check_choice("strategy", strategy, STRATEGIES)
    check_int("pop_size", pop_size, 2)
    check_int("n_gen", n_gen, 1)
    objectives = check_objectives(objectives)
    _check_objective_inputs(objectives, estimator, cost)
    default = objectives == DEFAULT_OBJECTIVES
    start = time.perf_counter()
    if strategy == "M3":
        if base is None:
            base = run_search("M1", estimator, space, pop_size, n_gen, seed, progress, cancel,
                              objectives=objectives, cost=cost)
        elif base.strategy != "M1":
            raise ValueError(f"M3 scales an M1 result, got {base.strategy}")
        cand = np.concatenate([base.states, scale_states(space, base.states, factors)])
        cand = np.unique(cand, axis=0)
        vals = estimate_objectives(estimator, cand, cost if not default else None)
        keep = pareto_mask(objective_matrix(vals, objective_vars(objectives)))
        res = _result("M3", cand[keep], {k: v[keep] for k, v in vals.items()}, objectives,
                      base.seconds + time.perf_counter() - start, base.n_gen, base.history)
        if progress is not None:
            order = np.argsort(vals[objective_vars(objectives)[1]][keep])
            progress({"strategy": "M3", "generation": base.n_gen, "n_gen": base.n_gen, "states": res.states[order],
                      **{k: v[order] for k, v in res.values().items()}})
        return res
    search_gu = strategy == "M2"
    algorithm = NSGA2(pop_size=pop_size, sampling=StateSampling(space, search_gu), crossover=StateCrossover(space),
                      mutation=StateMutation(space, search_gu), repair=StateRepair(space), eliminate_duplicates=True)
    history: list[dict] = []
    problem = EstimatorProblem(estimator, space, objectives, cost)
    evaluate = None if default else (lambda X: estimate_objectives(estimator, X, cost))
    res = minimize(problem, algorithm, ("n_gen", n_gen), seed=seed, verbose=False,
                   callback=_Stream(strategy, n_gen, progress, cancel, history, evaluate))
    X, F = res.pop.get("X"), res.pop.get("F")
    if default:
        return SearchResult(strategy, X, -F[:, 0], F[:, 1], time.perf_counter() - start, n_gen, history)
    return _result(strategy, X, estimate_objectives(estimator, X, cost), objectives, time.perf_counter() - start,
                   n_gen, history)


def resimulate(supernet: Supernet, states, *, data: DataBundle | None = None, draws: int = 5, sigma: float = SIGMA,
               seed: int = 0, calib_size: int = 256, fold_bn: bool = True,
               progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
               space: ArchSpace | None = None, profile: HardwareProfile | None = None) -> xr.Dataset:
    """Full Monte-Carlo accuracy and power of ``states`` on the whole test split (§6.4).

    Each state's subnet is sliced, BN-recalibrated (and folded), programmed with its ``g_u``
    and evaluated with :func:`~workbench.analysis.montecarlo.mc_evaluate` over ``draws`` noise
    draws (accuracy on every test image, power per sample on every test image).  Returns
    ``accuracy``/``accuracy_std``/``power`` over ``state``.

    ``space`` with ADC genes: each subnet is read through its state's ADCs (ranges calibrated on
    the ``calib_size`` training images).  ``profile``: also ``energy_j`` (J per inference, mean
    over draws, every component of :func:`~workbench.hardware.profile.layer_cost`) and
    ``latency_s`` (s), from ``mc_evaluate(profile=...)``."""
    space = space or supernet.space
    S = np.atleast_2d(np.asarray(states, float))
    data = data if data is not None else load_dataset(supernet.config.dataset)
    dev = device_of(supernet)
    x, y = (t.to(dev) for t in as_tensors(data.test))
    calib = calibration_tensor(data, calib_size, seed).to(dev)
    subnets = SubnetCache(supernet, calib, fold_bn)
    acc, std, pw = np.empty(len(S)), np.empty(len(S)), np.empty(len(S))
    energy, latency = np.full(len(S), np.nan), np.full(len(S), np.nan)
    extra = {}
    if space.has_adc or profile is not None:     # the converters' ranges from training images, as collected
        extra = {"calibration": calib, "profile": profile}
    start = time.perf_counter()
    for i, s in enumerate(S):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"re-simulation cancelled after {i}/{len(S)} states")
        net = subnets(s)
        r = mc_evaluate(net, x, y, state_memory_map(net, space, s, sigma), draws=draws, seed=seed,
                        device=dev, power_batch=len(y), **extra)
        acc[i], std[i], pw[i] = r.attrs["accuracy_mean"], r.attrs["accuracy_std"], float(r["power"].mean())
        if profile is not None:
            energy[i], latency[i] = float(r["energy_j"].mean()), float(r["latency_s"])
        if progress is not None:
            progress({"done": i + 1, "total": len(S)})
    ds = xr.Dataset(coords={"state": ("state", np.arange(len(S)), {"long_name": "state", "units": "1"}),
                            **space.state_coords()})
    ds["state_vector"] = (("state", STATE_DIM), S, {"long_name": "state s = (m, g_u/g_u^d)", "units": "1"})
    ds["accuracy"] = ("state", acc, {"long_name": "test accuracy (Monte-Carlo mean)", "units": "1"})
    ds["accuracy_std"] = ("state", std, {"long_name": "test accuracy std over draws", "units": "1"})
    ds["power"] = ("state", pw, {"long_name": "crossbar power (Monte-Carlo mean)", "units": "a.u."})
    if profile is not None:
        ds["energy_j"] = ("state", energy, {"long_name": "energy per inference (Monte-Carlo mean)", "units": "J"})
        ds["latency_s"] = ("state", latency, {"long_name": "latency per inference", "units": "s"})
        ds.attrs["hardware_profile"] = json.dumps(profile.to_dict(), sort_keys=True)
    if space.has_adc:
        ds.attrs["adc_choices"] = [int(b) for b in space.adc_choices]
    ds.attrs.update(draws=int(draws), sigma=float(sigma), seed=int(seed), n_test=int(len(y)),
                    supernet_key=supernet.config.cache_key(), seconds=time.perf_counter() - start)
    return ds


def hypervolume(front, ref_point=None, power_scale: float | None = None, *, directions=("max", "min"),
                scales=None) -> float:
    """Hypervolume (pymoo's HV indicator) of an (accuracy, power) front, or of any front whose
    columns are maximised or minimised as ``directions`` says.

    ``front``: ``(n, 2)`` array of (accuracy, power) in collected units.  Objectives are
    minimised and normalised: ``(−A, P / power_scale)``; the reference point is given in those
    units, default ``(0, 1.1)``: zero accuracy and 1.1 × ``power_scale``.  ``power_scale``
    defaults to the front's largest power — pass the largest power of *all* fronts compared
    (as :func:`compare` does) so their hypervolumes share one scale.  Points not strictly better
    than the reference point in both objectives add nothing.

    In general (e.g. accuracy against energy in J, latency in s, or energy against latency): a
    ``"max"`` column ``v`` (accuracy, in [0, 1]) becomes ``−v`` with reference 0; a ``"min"`` column
    becomes ``v / scale`` with reference 1.1, ``scale`` its entry of ``scales`` (default: the
    front's largest value; ``power_scale`` is the scale of column 1)."""
    directions = tuple(directions)
    F = np.atleast_2d(np.asarray(front, float))
    if F.size == 0:
        return 0.0
    if F.shape[1] != len(directions) or not set(directions) <= {"max", "min"}:
        raise ValueError(f"front has {F.shape[1]} columns; directions={directions} must give 'max' or 'min' for each")
    scales = [None] * len(directions) if scales is None else list(scales)
    if power_scale is not None:
        scales[1] = power_scale
    cols, ref = [], []
    for j, d in enumerate(directions):
        if d == "max":
            cols.append(-F[:, j])
            ref.append(0.0)
            continue
        scale = float(scales[j]) if scales[j] is not None else float(F[:, j].max())
        check_number("power_scale" if j == 1 else f"scale of objective {j}", scale, 0.0, inclusive=(False, True))
        cols.append(F[:, j] / scale)
        ref.append(1.1)
    G = np.column_stack(cols)
    ref = np.asarray(ref if ref_point is None else ref_point, float)
    G = G[np.all(G < ref, axis=1)]
    if len(G) == 0:
        return 0.0
    return float(HV(ref_point=ref)(G))


def compare(fronts: dict[str, np.ndarray], ref_point=None, directions=("max", "min")) -> dict[str, float]:
    """Hypervolumes of several fronts on one scale per minimised objective (their joint max):
    (accuracy, power) by default, any columns with ``directions`` (see :func:`hypervolume`)."""
    directions = tuple(directions)
    scales = [None if d == "max" else max(float(np.max(np.atleast_2d(f)[:, j])) for f in fronts.values() if np.size(f))
              for j, d in enumerate(directions)]
    return {k: hypervolume(f, ref_point, directions=directions, scales=scales) for k, f in fronts.items()}


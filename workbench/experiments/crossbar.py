"""Chapter 6 experiments: crossbar power and the joint architecture + ``g_u`` search (§6.2–6.4).

Cached pieces (each keyed by its complete spec and the code version):

* ``supernet``: the trained elastic supernet (weights), :func:`load_supernet`;
* ``nas``: the whole NAS process on it (collected states, estimator and its held-out R²,
  NSGA-II strategies M1/M2/M3, re-simulated fronts and hypervolumes), :func:`nas_study`; the
  fitted estimator is stored beside it (``nas-estimator``) so a page can run new searches;
* ``nas-select``: the ``n_a``/``n_p`` selection of eq 6.7 (Fig 6.1), :func:`select_study`;
* ``nas-point``: one state's power split per layer and its robustness curve, :func:`state_details`.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import numpy as np
import xarray as xr

from ..analysis.montecarlo import mc_evaluate
from ..datasets import as_tensors, load_dataset
from ..knobs import KnobError, check_numbers, knob_error_from_param
from ..nas.estimator import Estimator, memory_map, minibatch_curves, select_n
from ..nas.pipeline import NASConfig, run_nas
from ..nas.search import STRATEGIES, non_dominated
from ..nas.space import STATE_DIM
from ..nas.supernet import Supernet, SupernetConfig, SupernetResult, calibration_tensor, train_supernet
from .store import Store, spec_key

#: additive conductance noise of the digits study (µS, one weight unit ↦ 1 µS).  The thesis'
#: ε^v = 0.001 leaves the digits supernet's accuracy untouched by g_u (only power moves); at 0.015
#: lowering g_u costs accuracy, the trade-off chapter 6 is about.
DIGITS_SIGMA = 0.015
#: noise multiples of a state's robustness curve
ROBUSTNESS_SCALES = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]


def supernet_config(spec: dict | None = None) -> SupernetConfig:
    cfg = SupernetConfig()
    for k, v in (spec or {}).items():
        if k not in cfg.param or k == "name":
            raise KnobError(
                f"unknown supernet knob {k!r}; valid knobs: {', '.join(n for n in cfg.param if n != 'name')}"
            )
        try:
            cfg.param.update(**{k: v})
        except (ValueError, TypeError) as exc:
            raise knob_error_from_param(k, v, exc, cfg.param[k]) from None
    try:
        return cfg.check()
    except ValueError as exc:
        raise KnobError(str(exc)) from None


def nas_config(spec: dict | None = None) -> NASConfig:
    try:
        return NASConfig.from_dict({"sigma": DIGITS_SIGMA, **(spec or {})})
    except (ValueError, TypeError) as exc:
        raise KnobError(str(exc)) from None


def _supernet_spec(cfg: SupernetConfig) -> dict:
    return {k: v for k, v in cfg.param.values().items() if k != "name"}


def load_supernet(spec: dict | None = None, store: Store | None = None, *, device: str = "auto",
                  progress: Callable[[dict], None] | None = None,
                  cancel: threading.Event | None = None) -> SupernetResult:
    """The trained supernet of ``spec`` (SupernetConfig knobs): from the store, or trained (sandwich rule)."""
    store = store or Store()
    cfg = supernet_config(spec)
    key = spec_key("supernet", _supernet_spec(cfg))
    obj = store.load_object("supernet", key)
    if obj is None:
        with store.lock("supernet", key):
            obj = store.load_object("supernet", key, repair=True)
            if obj is None:
                res = train_supernet(cfg, device=device, progress=progress, cancel=cancel)
                obj = {"state_dict": res.supernet.state_dict(), "history": res.history,
                       "accuracy_largest": res.accuracy_largest, "accuracy_smallest": res.accuracy_smallest,
                       "train_seconds": res.train_seconds, "device": res.device}
                store.save_object("supernet", key, obj, _supernet_spec(cfg))
    net = Supernet(cfg)
    net.load_state_dict(obj["state_dict"])
    net.eval()
    return SupernetResult(net, dict(obj["history"]), float(obj["accuracy_largest"]), float(obj["accuracy_smallest"]),
                          float(obj["train_seconds"]), str(obj["device"]), key)


def _pad(rows: Sequence[np.ndarray], width: int | None = None) -> np.ndarray:
    n = max(len(r) for r in rows)
    shape = (len(rows), n) + ((width,) if width is not None else ())
    out = np.full(shape, np.nan)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def nas_study(nas: dict | None = None, supernet: dict | None = None, store: Store | None = None, *,
              device: str = "auto", progress: Callable[[dict], None] | None = None,
              cancel: threading.Event | None = None) -> xr.Dataset:
    """The NAS process of §6.3 on the supernet ``supernet`` with the knobs ``nas`` (NASConfig).

    Returns the re-simulated points of each strategy (``dataset`` = the best collected states,
    M1 architecture only, M2 joint, M3 M1 rescaled): ``accuracy``/``accuracy_std``/``power``
    ``(strategy, point)``, ``on_front``, ``state_vector(strategy, point, state_entry)``; the collected
    states' estimated ``collected_accuracy``/``collected_power``; ``r2(target)`` of the estimator
    on its held-out 20 %; ``hypervolume`` and ``hypervolume_estimated`` per strategy.
    """
    store = store or Store()
    ncfg, scfg = nas_config(nas), supernet_config(supernet)
    spec = {"nas": ncfg.to_dict(), "supernet": _supernet_spec(scfg)}

    def compute():
        sn = load_supernet(_supernet_spec(scfg), store, device=device, progress=progress, cancel=cancel)
        res = run_nas(ncfg, supernet=sn, progress=progress, cancel=cancel)
        store.save_object("nas-estimator", spec_key("nas-estimator", spec),
                          {"state_dict": res.estimator.state_dict(), "r2": dict(res.estimator.r2_)}, spec)
        strategies = ["dataset", *STRATEGIES]
        sims = [res.resimulated[s] for s in strategies]
        space = sn.supernet.space
        ds = xr.Dataset(
            coords={
                "strategy": ("strategy", strategies, {"long_name": "search strategy", "units": ""}),
                "point": (
                    "point",
                    np.arange(max(d.sizes["state"] for d in sims)),
                    {"long_name": "re-simulated state", "units": "1"},
                ),
                **space.state_coords(),
                "state": (
                    "state",
                    np.arange(res.collected.sizes["state"]),
                    {"long_name": "collected state", "units": "1"},
                ),
                "target": ("target", ["accuracy", "power"], {"long_name": "estimated quantity", "units": ""}),
            }
        )
        ds["accuracy"] = (("strategy", "point"), _pad([d.accuracy.values for d in sims]),
                          {"long_name": "test accuracy (re-simulated)", "units": "1"})
        ds["accuracy_std"] = (("strategy", "point"), _pad([d.accuracy_std.values for d in sims]),
                              {"long_name": "accuracy std over draws", "units": "1"})
        ds["power"] = (("strategy", "point"), _pad([d.power.values for d in sims]),
                       {"long_name": "crossbar power (re-simulated)", "units": "a.u."})
        ds["state_vector"] = (("strategy", "point", STATE_DIM),
                              _pad([d.state_vector.values for d in sims], len(space.var_names)),
                              {"long_name": "state s = (m, g_u/g_u^d)", "units": "1"})
        front = np.zeros(ds.accuracy.shape, bool)
        for i, d in enumerate(sims):
            front[i, :d.sizes["state"]] = non_dominated(d.accuracy.values, d.power.values)
        ds["on_front"] = (("strategy", "point"), front, {"long_name": "on the strategy's Pareto front", "units": ""})
        ds["collected_accuracy"] = ("state", res.collected.accuracy.values,
                                    {"long_name": f"accuracy on n_a = {ncfg.n_a} minibatches, {ncfg.d_a} draws",
                                     "units": "1"})
        ds["collected_power"] = ("state", res.collected.power.values,
                                 {"long_name": f"power on n_p = {ncfg.n_p} minibatches", "units": "a.u."})
        ds["r2"] = ("target", [res.estimator.r2_["accuracy"], res.estimator.r2_["power"]],
                    {"long_name": "estimator held-out R²", "units": "1"})
        ds["hypervolume"] = ("strategy", [res.hypervolume.get(s, np.nan) for s in strategies],
                             {"long_name": "hypervolume of the re-simulated front", "units": "1"})
        ds["hypervolume_estimated"] = ("strategy", [res.hypervolume_estimated.get(s, np.nan) for s in strategies],
                                       {"long_name": "hypervolume of the estimated front", "units": "1"})
        ds.attrs.update(supernet_key=sn.cache_key, supernet_accuracy_largest=sn.accuracy_largest,
                        supernet_accuracy_smallest=sn.accuracy_smallest, sigma=ncfg.sigma, pop_size=ncfg.pop_size,
                        n_gen=ncfg.n_gen, k=ncfg.k, k_g=ncfg.k_g, n_a=ncfg.n_a, n_p=ncfg.n_p, d_a=ncfg.d_a,
                        **{f"seconds_{k}": float(v) for k, v in res.seconds.items()})
        return ds

    return store.get_or_compute("nas", spec, compute)


def load_estimator(nas: dict | None = None, supernet: dict | None = None, store: Store | None = None,
                   **kw: Any) -> Estimator:
    """The estimator fitted by :func:`nas_study` for the same specs (running the study if needed)."""
    store = store or Store()
    ncfg, scfg = nas_config(nas), supernet_config(supernet)
    spec = {"nas": ncfg.to_dict(), "supernet": _supernet_spec(scfg)}
    key = spec_key("nas-estimator", spec)
    obj = store.load_object("nas-estimator", key)
    if obj is None:
        nas_study(nas, supernet, store, **kw)
        obj = store.load_object("nas-estimator", key)
    sn = load_supernet(_supernet_spec(scfg), store)
    return Estimator.from_state_dict(sn.supernet.space, obj["state_dict"])


def select_study(supernet: dict | None = None, store: Store | None = None, *, n_arch: int = 100,
                 deltas: Sequence[float] = (0.0025, 0.005, 0.01, 0.02, 0.03, 0.05), epsilon: float = 0.05,
                 sigma: float = DIGITS_SIGMA, minibatch: int = 32, seed: int = 0, envelope: str = "upper",
                 device: str = "auto", progress=None, cancel=None) -> xr.Dataset:
    """Fig 6.1: the smallest ``n_a`` (accuracy) and ``n_p`` (power) minibatches that rank two random
    states correctly with probability ``1 − ε`` when they differ by more than ``δ`` (eq 6.7), made
    monotone in ``δ`` by ``envelope`` (:func:`~workbench.nas.estimator.select_n`).

    For power, ``δ`` is relative: the power curves are divided by the largest power first."""
    store = store or Store()
    scfg = supernet_config(supernet)
    deltas = check_numbers("deltas", deltas, 0.0, inclusive=(False, True))
    spec = {"supernet": _supernet_spec(scfg), "n_arch": n_arch, "deltas": deltas, "epsilon": epsilon, "sigma": sigma,
            "minibatch": minibatch, "seed": seed, "envelope": envelope}

    def compute():
        sn = load_supernet(_supernet_spec(scfg), store, device=device, cancel=cancel)
        curves = minibatch_curves(sn.supernet, n_arch, minibatch=minibatch, sigma=sigma, seed=seed, progress=progress,
                                  cancel=cancel)
        out = {}
        for name in ("accuracy", "power"):
            c = np.asarray(curves[name].values, dtype=float)
            if name == "power":          # δ relative to the power scale (accuracy is already in [0, 1])
                c = c / np.nanmax(c[:, -1])
            out[name] = select_n(c, deltas, epsilon, seed=seed, envelope=envelope)
        ds = xr.Dataset(coords={"delta": ("delta", deltas, {"long_name": "tolerance δ", "units": "1"})})
        ds["n_a"] = ("delta", np.asarray(out["accuracy"]["n"].values, float),
                     {"long_name": "smallest n_a (accuracy minibatches)", "units": "1"})
        ds["n_p"] = ("delta", np.asarray(out["power"]["n"].values, float),
                     {"long_name": "smallest n_p (power minibatches)", "units": "1"})
        ds.attrs.update(epsilon=epsilon, n_arch=n_arch, minibatch=minibatch, sigma=sigma,
                        n_minibatches=int(curves.sizes["n"]), power_delta="relative to the largest power",
                        envelope=envelope)
        return ds

    return store.get_or_compute("nas-select", spec, compute)


def state_details(state: Sequence[float], supernet: dict | None = None, store: Store | None = None, *,
                  sigma: float = DIGITS_SIGMA, draws: int = 10, scales: Sequence[float] = ROBUSTNESS_SCALES,
                  seed: int = 0, device: str = "auto", cancel=None) -> xr.Dataset:
    """One state's deployment: power per layer (eq 3.41–3.44, mean over draws) at its ``g_u`` and its
    robustness curve (accuracy over draws as the conductance noise is scaled by ``scales``)."""
    store = store or Store()
    scfg = supernet_config(supernet)
    s = np.asarray(state, dtype=float)
    spec = {"supernet": _supernet_spec(scfg), "state": [float(v) for v in s], "sigma": sigma, "draws": draws,
            "scales": [float(v) for v in scales], "seed": seed}

    def compute():
        sn = load_supernet(_supernet_spec(scfg), store, device=device, cancel=cancel)
        return evaluate_state(sn.supernet, s, sigma=sigma, draws=draws, scales=scales, seed=seed, cancel=cancel)

    return store.get_or_compute("nas-point", spec, compute)


def evaluate_state(net: Supernet, state, *, sigma: float = DIGITS_SIGMA, draws: int = 10,
                   scales: Sequence[float] = (1.0,), seed: int = 0, cancel=None) -> xr.Dataset:
    """Monte-Carlo accuracy and power (per layer) of one state's subnet, programmed with its ``g_u``
    (BN recalibrated and folded), at the noise ``sigma × scale`` for each scale."""
    space = net.space
    s = np.asarray(state, dtype=float)
    if s.shape != (space.n_var,):
        raise KnobError(f"state has {s.size} entries; this supernet's states have {space.n_var}")
    if not space.is_valid(s[None])[0]:
        raise KnobError(
            "state is not valid for this supernet: repair it (eq 6.4) or check the g_u domain [0.5, 1.5]·g_u^d"
        )
    data = load_dataset(net.config.dataset)
    x, y = as_tensors(data.test)
    sub = net.subnet(s, calibration_tensor(data, 256, seed), fold_bn=True)
    names = space.layer_names()
    accs, powers, layer_pw = [], [], None
    for sc in scales:
        mm = memory_map(sub, names, s[space.gu_slice], sigma * float(sc))
        r = mc_evaluate(sub, x, y, mm, draws=draws, seed=seed, power_batch=len(y), cancel=cancel)
        accs.append(r.accuracy.values)
        powers.append(float(r.power.mean()))
        if abs(float(sc) - 1.0) < 1e-12 or layer_pw is None:
            layer_pw = r.layer_power.mean("draw")
    ds = xr.Dataset(
        coords={
            "scale": ("scale", [float(v) for v in scales], {"long_name": "noise multiple of σ", "units": "1"}),
            "draw": ("draw", np.arange(draws), {"long_name": "Monte-Carlo draw", "units": "1"}),
        }
    )
    ds["accuracy"] = (("scale", "draw"), np.asarray(accs), {"long_name": "test accuracy", "units": "1"})
    ds["power"] = ("scale", powers, {"long_name": "crossbar power (mean over draws)", "units": "a.u."})
    ds["layer_power"] = layer_pw.assign_attrs(long_name="crossbar power per layer (at σ)", units="a.u.")
    ds["g_u_rel"] = ("layer", [float(dict(zip(names, s[space.gu_slice]))[str(layer)]) for layer in ds.layer.values],
                     {"long_name": "g_u / g_u^d", "units": "1"})
    arch = space.decode(s)
    ds.attrs.update(sigma=float(sigma), arch=str(arch), depth=str(list(arch.depth)), width=str(list(arch.width)),
                    expand=str([list(e) for e in arch.expand]) if hasattr(arch, "expand") else "")
    return ds


__all__ = ["DIGITS_SIGMA", "ROBUSTNESS_SCALES", "evaluate_state", "load_estimator", "load_supernet", "nas_config",
           "nas_study", "select_study", "state_details", "supernet_config"]

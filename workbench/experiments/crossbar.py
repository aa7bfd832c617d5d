"""Chapter 6 experiments: crossbar power and the joint architecture + ``g_u`` search (§6.2–6.4).

Cached pieces (each keyed by its complete spec and the code version):

* ``supernet``: the trained elastic supernet (weights), :func:`load_supernet`;
* ``nas``: the whole NAS process on it (collected states, estimator and its held-out R²,
  NSGA-II strategies M1/M2/M3, re-simulated fronts and hypervolumes), :func:`nas_study`; the
  fitted estimator is stored beside it (``nas-estimator``) so a page can run new searches;
* ``nas-select``: the ``n_a``/``n_p`` selection of eq 6.7 (Fig 6.1), :func:`select_study`;
* ``nas-point``: one state's power split per layer and its robustness curve, :func:`state_details`.

Accelerator search (issue 15): the NAS knobs ``adc_bits``, ``objectives`` and ``profile``
(:class:`~workbench.nas.pipeline.NASConfig`) add ADC-bits genes and the energy (J) and latency (s)
objectives; the study then also holds ``energy_j``/``latency_s`` of every re-simulated point and of the
collected states, and its spec the hardware profile's constants.  :func:`pair_hypervolumes` reports
the hypervolumes of any two of the study's quantities (the Pareto page's axes).
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Sequence

import numpy as np
import xarray as xr

from ..analysis.montecarlo import mc_evaluate
from ..datasets import as_tensors, load_dataset
from ..hardware.profile import HardwareProfile, profile_from_dict
from ..knobs import KnobError, check_numbers, knob_error_from_param
from ..nas.cost import CostModel
from ..nas.estimator import Estimator, minibatch_curves, select_n, state_memory_map
from ..nas.pipeline import NASConfig, run_nas
from ..nas.search import DIRECTIONS, STRATEGIES, compare, objective_matrix, objective_vars, pareto_mask
from ..nas.space import STATE_DIM
from ..nas.supernet import Supernet, SupernetConfig, SupernetResult, calibration_tensor, train_supernet
from .store import Store, spec_key

#: additive conductance noise of the digits study (µS, one weight unit ↦ 1 µS).  The thesis'
#: ε^v = 0.001 leaves the digits supernet's accuracy untouched by g_u (only power moves); at 0.015
#: lowering g_u costs accuracy, the trade-off chapter 6 is about.
DIGITS_SIGMA = 0.015
#: noise multiples of a state's robustness curve
ROBUSTNESS_SCALES = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]
#: the quantities of a study a Pareto view can show (those present in the study), in a fixed order
FRONT_AXES = ("accuracy", "power", "energy_j", "latency_s")


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


def _nas_spec(ncfg: NASConfig, scfg: SupernetConfig) -> dict:
    """The cache spec of a study: its knobs, the supernet's and, with energy or latency objectives,
    every constant of the hardware profile (a preset whose numbers change is another study)."""
    spec = {"nas": ncfg.to_dict(), "supernet": _supernet_spec(scfg)}
    profile = ncfg.hardware_profile()
    if profile is not None:
        spec["hardware_profile"] = profile.to_dict()
    return spec


def study_space(ncfg: NASConfig, supernet: Supernet):
    """The state space of a study: the supernet's, with ADC genes when ``ncfg.adc_bits`` lists any."""
    return supernet.space.with_adc(ncfg.adc_bits) if ncfg.adc_bits else supernet.space


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
    spec = _nas_spec(ncfg, scfg)

    def compute():
        sn = load_supernet(_supernet_spec(scfg), store, device=device, progress=progress, cancel=cancel)
        res = run_nas(ncfg, supernet=sn, progress=progress, cancel=cancel)
        store.save_object("nas-estimator", spec_key("nas-estimator", spec),
                          {"state_dict": res.estimator.state_dict(), "r2": dict(res.estimator.r2_)}, spec)
        strategies = ["dataset", *STRATEGIES]
        sims = [res.resimulated[s] for s in strategies]
        space = study_space(ncfg, sn.supernet)
        variables = objective_vars(ncfg.objectives)
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
                "target": ("target", list(res.estimator.targets), {"long_name": "estimated quantity",
                                                                     "units": ""}),
            }
        )
        ds["accuracy"] = (("strategy", "point"), _pad([d.accuracy.values for d in sims]),
                          {"long_name": "test accuracy (re-simulated)", "units": "1"})
        ds["accuracy_std"] = (("strategy", "point"), _pad([d.accuracy_std.values for d in sims]),
                              {"long_name": "accuracy std over draws", "units": "1"})
        ds["power"] = (("strategy", "point"), _pad([d.power.values for d in sims]),
                       {"long_name": "crossbar power (re-simulated)", "units": "a.u."})
        for v in ("energy_j", "latency_s"):
            if v in sims[0]:
                attrs = sims[0][v].attrs
                ds[v] = (("strategy", "point"), _pad([d[v].values for d in sims]),
                         {"long_name": f"{attrs['long_name']} (re-simulated)", "units": attrs["units"]})
        ds["state_vector"] = (("strategy", "point", STATE_DIM),
                              _pad([d.state_vector.values for d in sims], len(space.var_names)),
                              {"long_name": "state s = (m, g_u/g_u^d)" + (", ADC bits" if space.has_adc else ""),
                               "units": "1"})
        front = np.zeros(ds.accuracy.shape, bool)
        for i, d in enumerate(sims):
            front[i, :d.sizes["state"]] = pareto_mask(objective_matrix({v: d[v].values for v in variables}, variables))
        ds["on_front"] = (("strategy", "point"), front, {"long_name": "on the strategy's Pareto front", "units": ""})
        ds["collected_accuracy"] = ("state", res.collected.accuracy.values,
                                    {"long_name": f"accuracy on n_a = {ncfg.n_a} minibatches, {ncfg.d_a} draws",
                                     "units": "1"})
        ds["collected_power"] = ("state", res.collected.power.values,
                                 {"long_name": f"power on n_p = {ncfg.n_p} minibatches", "units": "a.u."})
        for v in ("energy_j", "latency_s"):
            if v in res.collected:
                ds[f"collected_{v}"] = ("state", res.collected[v].values,
                                        {"long_name": res.collected[v].attrs["long_name"],
                                         "units": res.collected[v].attrs["units"]})
        ds["r2"] = ("target", [res.estimator.r2_[t] for t in res.estimator.targets],
                    {"long_name": "estimator held-out R²", "units": "1"})
        on = "" if not ncfg.accelerator else f" on ({', '.join(variables)})"
        ds["hypervolume"] = ("strategy", [res.hypervolume.get(s, np.nan) for s in strategies],
                             {"long_name": f"hypervolume of the re-simulated front{on}", "units": "1"})
        ds["hypervolume_estimated"] = ("strategy", [res.hypervolume_estimated.get(s, np.nan) for s in strategies],
                                       {"long_name": f"hypervolume of the estimated front{on}", "units": "1"})
        ds.attrs.update(supernet_key=sn.cache_key, supernet_accuracy_largest=sn.accuracy_largest,
                        supernet_accuracy_smallest=sn.accuracy_smallest, sigma=ncfg.sigma, pop_size=ncfg.pop_size,
                        n_gen=ncfg.n_gen, k=ncfg.k, k_g=ncfg.k_g, n_a=ncfg.n_a, n_p=ncfg.n_p, d_a=ncfg.d_a,
                        **{f"seconds_{k}": float(v) for k, v in res.seconds.items()})
        if ncfg.accelerator:
            ds.attrs["objectives"] = ",".join(ncfg.objectives)
            if ncfg.adc_bits:
                ds.attrs["adc_choices"] = ",".join(str(int(b)) for b in space.adc_choices)
            if "hardware_profile" in spec:
                ds.attrs.update(profile=ncfg.profile, hardware_profile=json.dumps(spec["hardware_profile"],
                                                                                  sort_keys=True))
        return ds

    return store.get_or_compute("nas", spec, compute)


def load_estimator(nas: dict | None = None, supernet: dict | None = None, store: Store | None = None,
                   **kw: Any) -> Estimator:
    """The estimator fitted by :func:`nas_study` for the same specs (running the study if needed)."""
    store = store or Store()
    ncfg, scfg = nas_config(nas), supernet_config(supernet)
    spec = _nas_spec(ncfg, scfg)
    key = spec_key("nas-estimator", spec)
    obj = store.load_object("nas-estimator", key)
    if obj is None:
        nas_study(nas, supernet, store, **kw)
        obj = store.load_object("nas-estimator", key)
    sn = load_supernet(_supernet_spec(scfg), store)
    return Estimator.from_state_dict(study_space(ncfg, sn.supernet), obj["state_dict"])


def search_setup(nas: dict | None = None, supernet: dict | None = None, store: Store | None = None,
                 **kw: Any) -> tuple[Estimator, dict[str, Any]]:
    """The study's estimator and the keywords of :func:`~workbench.nas.search.run_search` that
    search on its objectives (``objectives`` and, for energy or latency, ``cost``: a
    :class:`~workbench.nas.cost.CostModel` of its profile); ``{}`` for a chapter-6 study."""
    est = load_estimator(nas, supernet, store, **kw)
    ncfg, scfg = nas_config(nas), supernet_config(supernet)
    if not ncfg.accelerator:
        return est, {}
    profile = ncfg.hardware_profile()
    cost = None
    if profile is not None:
        sn = load_supernet(_supernet_spec(scfg), store or Store())
        data = load_dataset(sn.supernet.config.dataset)
        cost = CostModel(sn.supernet, profile, calibration_tensor(data, 1, ncfg.seed), est.space)
    return est, {"objectives": tuple(ncfg.objectives), "cost": cost}


def study_adc_choices(ds: xr.Dataset) -> tuple[int, ...] | None:
    """The ADC bits a study's states choose from (``adc_choices`` of its attributes), None without ADC genes."""
    text = ds.attrs.get("adc_choices")
    return None if not text else tuple(int(b) for b in str(text).split(","))


def study_profile(ds: xr.Dataset) -> HardwareProfile | None:
    """The hardware profile of a study's energy and latency (None when it has neither)."""
    text = ds.attrs.get("hardware_profile")
    return None if not text else profile_from_dict(json.loads(text))


def front_axes(ds: xr.Dataset) -> list[str]:
    """The quantities of a study that a Pareto view can put on an axis (:data:`FRONT_AXES` it holds)."""
    return [v for v in FRONT_AXES if v in ds]


def pair_fronts(ds: xr.Dataset, a: str, b: str) -> dict[str, np.ndarray]:
    """Per strategy, its re-simulated points non-dominated on the two quantities ``a`` and ``b``
    (accuracy maximised, costs minimised), as ``(n, 2)`` arrays with columns in :data:`FRONT_AXES`
    order (accuracy first)."""
    cols = [v for v in FRONT_AXES if v in (a, b)]
    if a == b or len(cols) != 2 or any(v not in ds for v in cols):
        raise KnobError(f"axes {a!r} and {b!r} must be two different quantities of the study: "
                        f"{', '.join(front_axes(ds))}")
    out = {}
    for s in ds.strategy.values:
        sub = ds.sel(strategy=s)
        vals = {v: sub[v].values for v in cols}
        ok = np.all([np.isfinite(v) for v in vals.values()], axis=0)
        vals = {v: x[ok] for v, x in vals.items()}
        m = pareto_mask(objective_matrix(vals, cols))
        out[str(s)] = np.column_stack([vals[v][m] for v in cols])
    return out


def pair_hypervolumes(ds: xr.Dataset, a: str, b: str) -> dict[str, float]:
    """Hypervolume of each strategy's front on the two quantities ``a``, ``b``, all on one scale per
    cost (the largest over the strategies; :func:`~workbench.nas.search.compare`).  For power and
    accuracy these are the study's own ``hypervolume`` (Fig 6.2's comparison)."""
    fronts = pair_fronts(ds, a, b)
    cols = [v for v in FRONT_AXES if v in (a, b)]
    return compare(fronts, directions=tuple(DIRECTIONS[v] for v in cols))


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
                  seed: int = 0, device: str = "auto", cancel=None, adc_choices: Sequence[int] | None = None,
                  profile: HardwareProfile | dict | None = None) -> xr.Dataset:
    """One state's deployment: power per layer (eq 3.41–3.44, mean over draws) at its ``g_u`` and its
    robustness curve (accuracy over draws as the conductance noise is scaled by ``scales``).
    ``adc_choices``: the state has ADC genes over them (a study with ``adc_bits``); ``profile``: also
    its energy (J) and latency (s) per inference (:func:`evaluate_state`)."""
    store = store or Store()
    scfg = supernet_config(supernet)
    s = np.asarray(state, dtype=float)
    profile = profile_from_dict(profile) if isinstance(profile, dict) else profile
    spec = {"supernet": _supernet_spec(scfg), "state": [float(v) for v in s], "sigma": sigma, "draws": draws,
            "scales": [float(v) for v in scales], "seed": seed}
    if adc_choices:
        spec["adc_choices"] = [int(b) for b in adc_choices]
    if profile is not None:
        spec["hardware_profile"] = profile.to_dict()

    def compute():
        sn = load_supernet(_supernet_spec(scfg), store, device=device, cancel=cancel)
        return evaluate_state(sn.supernet, s, sigma=sigma, draws=draws, scales=scales, seed=seed, cancel=cancel,
                              adc_choices=adc_choices, profile=profile)

    return store.get_or_compute("nas-point", spec, compute)


def evaluate_state(net: Supernet, state, *, sigma: float = DIGITS_SIGMA, draws: int = 10,
                   scales: Sequence[float] = (1.0,), seed: int = 0, cancel=None,
                   adc_choices: Sequence[int] | None = None, profile: HardwareProfile | None = None) -> xr.Dataset:
    """Monte-Carlo accuracy and power (per layer) of one state's subnet, programmed with its ``g_u``
    (BN recalibrated and folded), at the noise ``sigma × scale`` for each scale.

    ``adc_choices``: the state carries ADC genes over them; the subnet is read through those ADCs
    (ranges calibrated on training images, as the search collected and re-simulated it).
    ``profile``: also ``energy_j`` (J per inference at each scale), ``layer_energy_j`` (layer,
    component; at σ) and ``latency_s`` (s), from ``mc_evaluate(profile=...)``."""
    space = net.space.with_adc(adc_choices) if adc_choices else net.space
    s = np.asarray(state, dtype=float)
    if s.shape != (space.n_var,):
        raise KnobError(f"state has {s.size} entries; this supernet's states have {space.n_var}")
    if not space.is_valid(s[None])[0]:
        raise KnobError(
            "state is not valid for this supernet: repair it (eq 6.4) or check the g_u domain [0.5, 1.5]·g_u^d"
        )
    data = load_dataset(net.config.dataset)
    x, y = as_tensors(data.test)
    calib = calibration_tensor(data, 256, seed)
    sub = net.subnet(s, calib, fold_bn=True)
    names = space.layer_names()
    accs, powers, energies, layer_pw, layer_e, latency = [], [], [], None, None, None
    extra = {"calibration": calib, "profile": profile} if (space.has_adc or profile is not None) else {}
    for sc in scales:
        mm = state_memory_map(sub, space, s, sigma * float(sc))
        r = mc_evaluate(sub, x, y, mm, draws=draws, seed=seed, power_batch=len(y), cancel=cancel, **extra)
        accs.append(r.accuracy.values)
        powers.append(float(r.power.mean()))
        if profile is not None:
            energies.append(float(r.energy_j.mean()))
            latency = float(r.latency_s)
        if abs(float(sc) - 1.0) < 1e-12 or layer_pw is None:
            layer_pw = r.layer_power.mean("draw")
            if profile is not None:
                layer_e = r.layer_energy_j.mean("draw")
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
    if space.has_adc:
        bits = space.adc_bits(s)
        ds["adc_bits"] = ("layer", [bits[str(layer)] for layer in ds.layer.values],
                          {"long_name": "ADC bits", "units": "bit"})
    if profile is not None:
        ds["energy_j"] = ("scale", energies, {"long_name": "energy per inference (mean over draws)", "units": "J"})
        ds["layer_energy_j"] = layer_e.assign_attrs(long_name="energy per inference by layer and component (at σ)",
                                                    units="J")
        ds["latency_s"] = ((), latency, {"long_name": "latency per inference", "units": "s"})
        ds.attrs["hardware_profile"] = json.dumps(profile.to_dict(), sort_keys=True)
    arch = space.decode(s)
    ds.attrs.update(sigma=float(sigma), arch=str(arch), depth=str(list(arch.depth)), width=str(list(arch.width)),
                    expand=str([list(e) for e in arch.expand]) if hasattr(arch, "expand") else "")
    return ds


__all__ = ["DIGITS_SIGMA", "FRONT_AXES", "ROBUSTNESS_SCALES", "evaluate_state", "front_axes", "load_estimator",
           "load_supernet", "nas_config", "nas_study", "pair_fronts", "pair_hypervolumes", "search_setup",
           "select_study", "state_details", "study_adc_choices", "study_profile", "study_space", "supernet_config"]

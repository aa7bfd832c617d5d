"""Command line: ``workbench {train,evaluate,estimate,curve,cache,sweep,lanmax,sharpness,drift,precompute}``
(also ``python -m workbench``).

Every subcommand accepts ``--json`` to print exactly one JSON object on stdout.  Out-of-range
knobs exit with status 2 and a message naming the knob and its allowed range.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .hardware import ENERGY_REFERENCES, memory_from_dict
from .knobs import KnobError, check_choice, check_int, check_number, check_numbers, out_of_range
from .nn.external import exported_dir, exported_memory_overrides
from .plugins import DATA_GROUP, MODEL_GROUP, registered
from .training import Cancelled, parse_assignment


def _store(args):
    from .experiments import Store
    return Store(args.cache_dir) if args.cache_dir else Store()


def _config(args, technology: str | None = None, default: str | None = None):
    from .experiments import PRESET_FOR_TECHNOLOGY, preset_config
    preset = args.preset or default or PRESET_FOR_TECHNOLOGY.get(technology or "ideal")
    overrides = dict(parse_assignment(s) for s in (args.set or []))
    if getattr(args, "method", None):
        from .experiments.sharpness import METHODS
        check_choice("method", args.method, METHODS)
        overrides = {**METHODS[args.method], **overrides}
    if getattr(args, "model", None):
        overrides["user_model"] = args.model
        overrides["model_args"] = dict(parse_assignment(s) for s in (args.model_arg or []))
        if args.weights:
            overrides["init_weights"] = args.weights
        overrides["digital"] = list(args.digital or [])
    elif getattr(args, "model_arg", None) or getattr(args, "digital", None) or getattr(args, "weights", None):
        raise KnobError("--model-arg, --weights and --digital apply to --model (your network): add --model SPEC")
    if getattr(args, "data", None):
        overrides["data"] = args.data
    cfg = preset_config(preset, **overrides)
    if getattr(args, "download", False):
        from .datasets import load_dataset
        load_dataset(cfg.dataset, args.data_root, download=True)   # fetch once; later loads find the files
    return preset, cfg


def _progress(desc: str, quiet: bool):
    bar = None

    def cb(info: dict):
        nonlocal bar
        total = info.get("epochs") or info.get("draws") or info.get("cells") or info.get("total") or info.get("n_gen")
        done = info.get("epoch") or info.get("draw") or info.get("cell") or info.get("done") or info.get("generation")
        if bar is None:
            bar = tqdm(total=total, desc=desc, file=sys.stderr, disable=quiet, leave=False)
        if "stage" in info:                       # a multi-stage run (NAS): one bar, restarted per stage
            bar.set_description(f"{desc} · {info['stage']}")
        if total is None or done is None:
            return
        if done < bar.n:
            bar.reset(total=total)
        bar.total = total
        bar.update(done - bar.n)
        if "loss" in info:
            bar.set_postfix(loss=f"{info['loss']:.3f}")
    return cb


#: the memory flags of ``evaluate``/``curve`` and the memory each belongs to (``ideal`` takes none)
MEMORY_FLAGS: dict[str, tuple[str, ...]] = {
    "ideal": (),
    "sram": ("p", "bits"),
    "memristor": ("sigma_c", "sigma", "g_u", "noise"),
}


#: the knobs ``workbench curve --knob`` sweeps
CURVE_KNOBS = ("p", "sigma_c", "sigma", "g_u")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _memory_dict(args) -> dict[str, Any]:
    """The memory map of ``--memory`` and its flags; a flag of another memory is refused, not dropped."""
    tech = args.memory
    own = MEMORY_FLAGS[tech]
    for other, names in MEMORY_FLAGS.items():
        for name in names:
            if name not in own and getattr(args, name, None) is not None:
                hint = (f"choose --memory {other}" if tech == "ideal" else
                        f"--memory {tech} takes only {', '.join(map(_flag, own))}")
                raise KnobError(
                    f"{_flag(name)} is a --memory {other} flag and has no effect with --memory {tech}; {hint}"
                )
    knobs: dict[str, Any] = {"technology": tech}
    for name in own:
        v = getattr(args, name)
        if v is not None:
            knobs[name] = v
    mem = memory_from_dict(knobs)       # validates every knob, naming it and its range
    out = {"default": {**mem.knobs()}, "overrides": {}}
    model = getattr(args, "model", None)
    if tech == "memristor" and args.g_u is None and getattr(args, "knob", None) != "g_u" and exported_dir(model):
        # a searched network keeps the per-layer g_u it was searched with (its metadata.json)
        out["overrides"] = exported_memory_overrides(model, out["default"])
    return out


def cmd_train(args) -> dict:
    from .experiments import train_model
    preset, cfg = _config(args)
    t0 = time.perf_counter()
    tr = train_model(cfg, _store(args), device=args.device, data_root=args.data_root,
                     progress=_progress(f"train {preset}", args.json or args.quiet), recompute=args.recompute)
    return {"preset": preset, "config": cfg.to_dict(), "test_accuracy": tr.test_accuracy,
            "train_seconds": tr.train_seconds, "device": tr.device, "cache_key": tr.cache_key, "cached": tr.cached,
            "wall_seconds": time.perf_counter() - t0}


def _check_number(name: str, value, lo: float, hi: float, *, lo_open: bool = False) -> None:
    """Refuse a CLI number before any training: NaN, inf and values outside the range (``None``: not given)."""
    if value is not None:
        check_number(name, value, lo, hi, inclusive=(not lo_open, True))


def _check_seed(seed) -> None:
    if seed is not None and not (0 <= seed < 2**63):
        raise out_of_range("seed", seed, "in [0, 2^63)")


#: ``evaluate``'s crossbar periphery flags (workbench.hardware.periphery), --memory memristor only
PERIPHERY_FLAGS = ("adc_bits", "dac_bits", "tile", "stuck_at", "act_p", "act_bits")


def _periphery_knobs(args) -> dict[str, Any]:
    """The crossbar periphery knobs of ``evaluate``'s flags, each checked naming its flag and range."""
    given = [f for f in PERIPHERY_FLAGS if getattr(args, f, None) is not None]
    if given and args.memory != "memristor":
        raise KnobError(f"{_flag(given[0])} sets the periphery of a crossbar and has no effect with --memory "
                        f"{args.memory}; choose --memory memristor")
    knobs: dict[str, Any] = {}
    for name in ("adc_bits", "dac_bits"):
        if getattr(args, name) is not None:
            knobs[name] = check_int(_flag(name), getattr(args, name), 2, 16, note="converter resolution in bits")
    if args.tile is not None:
        parts = args.tile.split(",")
        try:
            rows, cols = (int(v) for v in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            rows = cols = None
        if rows is None or not (1 <= rows <= 1 << 20 and 1 <= cols <= 1 << 20):
            raise KnobError(f"--tile={args.tile!r}: --tile must be R,C, two integers in [1, {1 << 20}] (rows and "
                            "columns of devices per crossbar tile)")
        knobs["tile_rows"], knobs["tile_cols"] = rows, cols
    if args.stuck_at is not None:        # split evenly between g_min and g_max
        rate = check_number("--stuck-at", args.stuck_at, 0.0, 1.0, note="rate of stuck devices")
        knobs["stuck_min"] = knobs["stuck_max"] = rate / 2
    if args.act_p is not None:
        knobs["act_p"] = check_number("--act-p", args.act_p, 0.0, 0.5, note="activation buffer bit error rate")
    if args.act_bits is not None:
        knobs["act_bits"] = check_int("--act-bits", args.act_bits, 2, 32, note="activation word length")
    return knobs


def _profile(args):
    """The hardware profile of ``--profile``/``--hw`` (``None`` when neither is given)."""
    from .hardware import make_profile
    if args.profile is None and not args.hw:
        return None
    overrides = {}
    for text in args.hw or []:
        if "=" not in text:
            raise KnobError(f"--hw expects KEY=VALUE (a HardwareProfile knob), got {text!r}")
        key, value = parse_assignment(text)
        overrides[key] = value
    try:
        return make_profile(args.profile or "isaac", **overrides)
    except KnobError as exc:
        raise KnobError(f"--profile/--hw: {exc}") from None


def cmd_evaluate(args) -> dict:
    from .experiments import evaluate
    _check_number("target_ci_width", args.target_ci, 0.0, 1.0, lo_open=True)
    _check_seed(args.seed)
    mem = _memory_dict(args)
    periphery = _periphery_knobs(args)
    if periphery:        # one setting for every crossbar layer, overrides (an exported net's g_u) included
        mem = {"default": memory_from_dict({**mem["default"], **periphery}).knobs(),
               "overrides": {k: memory_from_dict({**v, **periphery}).knobs() for k, v in mem["overrides"].items()}}
    profile = _profile(args)
    preset, cfg = _config(args, args.memory)
    ds = evaluate(cfg, mem, draws=args.draws, seed=args.seed, target_ci_width=args.target_ci, adabs=args.adabs,
                  store=_store(args), device=args.device, data_root=args.data_root,
                  progress=_progress("draws", args.json or args.quiet), energy_reference=args.energy_reference,
                  profile=profile)
    out = {"preset": preset, "memory": mem["default"],
           **{k: ds.attrs[k] for k in ("accuracy_mean", "accuracy_std", "ci95_low", "ci95_high", "clean_accuracy")},
           "draws": int(ds.attrs["draws"]),
           "cache_key": ds.attrs.get("cache_key"), "cache": ds.attrs.get("cache")}
    if args.memory == "memristor":
        out["power"] = float(ds.power.mean())
        out["power_units"] = "a.u. per input sample"
    else:
        out["energy"] = float(ds.energy)
        out["energy_reference"] = ds.attrs["energy_reference"]
        out["energy_units"] = ENERGY_REFERENCES[out["energy_reference"]]
    if profile is not None:     # J and s per inference, means over the draws
        e = ds.layer_energy_j.mean("draw")
        if "energy" in out:
            out["memory_energy"] = out.pop("energy")
        out["energy_breakdown"] = {str(c): float(e.sel(component=c).sum()) for c in e.component.values}
        out["energy"] = math.fsum(out["energy_breakdown"].values())
        out["energy_per_layer"] = {str(n): float(e.sel(layer=n).sum()) for n in e.layer.values}
        out["energy_units"] = "J per inference"
        out["latency"] = float(ds.latency_s)
        out["latency_units"] = "s per inference"
        out["profile"] = profile.to_dict()
    return out


def cmd_estimate(args) -> dict:
    from .experiments.estimate import estimate
    check_choice("memory", args.memory, ("memristor",))
    mem = _memory_dict(args)
    preset, cfg = _config(args, args.memory)
    out = estimate(cfg, mem, mode=args.mode, check_ci=args.check_ci, inputs=args.inputs, seed=args.seed,
                   store=_store(args), device=args.device, data_root=args.data_root,
                   progress=_progress(f"train {preset}", args.json or args.quiet))
    return {"preset": preset, "memory": mem["default"], **out}


def cmd_curve(args) -> dict:
    from .experiments import noise_curve
    mem = _memory_dict(args)
    if args.knob is None:
        args.knob = memory_from_dict(mem["default"]).noise_knob
        if args.knob is None:
            raise KnobError("--memory ideal has no noise knob to sweep; choose --memory sram or --memory memristor")
    if args.knob not in MEMORY_FLAGS[args.memory]:      # a curve of another memory's knob: refuse, do not guess
        owner = next(t for t, names in MEMORY_FLAGS.items() if args.knob in names)
        mine = [k for k in CURVE_KNOBS if k in MEMORY_FLAGS[args.memory]]
        hint = (f"with --memory {args.memory} knob must be one of {', '.join(mine)}" if mine else
                f"choose --memory {owner}")
        raise KnobError(
            f"knob={args.knob} is a --memory {owner} knob and has no effect with --memory {args.memory}; {hint}"
        )
    preset, cfg = _config(args, args.memory)
    ds = noise_curve(cfg, mem, args.knob, args.values, draws=args.draws, seed=args.seed, adabs=args.adabs,
                     store=_store(args),
                     device=args.device, data_root=args.data_root, progress=_progress("curve", args.json or args.quiet))
    return {"preset": preset, "knob": args.knob, "values": ds[args.knob].values.tolist(),
            "accuracy_mean": ds.accuracy_mean.values.tolist(), "ci95_low": ds.ci95_low.values.tolist(),
            "ci95_high": ds.ci95_high.values.tolist(), "clean_accuracy": ds.attrs["clean_accuracy"]}


def cmd_cache(args) -> dict:
    store = _store(args)
    if args.action == "clear":
        return {"action": "clear", "removed": store.clear(), "root": str(store.root)}
    entries = store.verify(repair=args.action == "verify")
    rows = [
        {"kind": e.kind, "key": e.key, "ok": e.ok, "bytes": e.size, "shipped": e.shipped, "path": str(e.path)}
        for e in entries
    ]
    return {"action": args.action, "root": str(store.root), "entries": rows, "bad": sum(not r["ok"] for r in rows)}


def cmd_sweep(args) -> dict:
    """Compute every missing cell of a sweep spec into the store: in this process, or on a Dask
    cluster (``--scheduler ADDRESS``, or a LocalCluster of ``--workers N`` > 1 processes)."""
    from .experiments.sweep import load_spec, run_spec
    spec = load_spec(args.spec)
    store = _store(args)
    progress = _progress(f"sweep {spec.get('name', '')}", args.json or args.quiet)
    report = None
    if args.workers is not None:
        check_int("workers", args.workers, 1, 1024)
    if args.scheduler or (args.workers or 1) > 1:
        from .experiments.cluster import SweepError, run_spec_distributed

        def on_event(ev):               # a lost worker's cells are rescheduled by Dask: say so
            what = (
                "joined"
                if ev["event"] == "worker-joined"
                else (
                    "lost; Dask reschedules "
                    + ("its cells: " + ", ".join(ev["cells"]) if ev["cells"] else "nothing (it ran no cell)")
                )
            )
            print(f"workbench: sweep: worker {ev['worker']} {what}", file=sys.stderr)
        try:
            results, report = run_spec_distributed(spec, store, scheduler=args.scheduler or None,
                                                   workers=args.workers or 2, retries=args.retries, only=args.only,
                                                   device=args.device, progress=progress, on_event=on_event)
        except SweepError as exc:       # the other cells are in the store: report them, exit 1
            print(f"workbench: error: sweep {args.spec}: {exc}", file=sys.stderr)
            if args.json:
                print(json.dumps({"spec": str(args.spec), "store": str(store.root), "failed": exc.failed,
                                  "blocked": exc.blocked, "completed": sorted(exc.results),
                                  "timings": exc.report.to_dict()}, default=float))
            raise SystemExit(1) from None
    else:
        results = run_spec(spec, store, device=args.device, only=args.only, progress=progress)
    out = {"spec": str(args.spec), "store": str(store.root),
           "experiments": {k: {"cache_key": v.attrs.get("cache_key"), "cache": v.attrs.get("cache"),
                               "dims": {d: int(n) for d, n in v.sizes.items()}} for k, v in results.items()}}
    if report is not None:
        out["timings"] = report.to_dict()
    return out


def cmd_lanmax(args) -> dict:
    """Train one network with LaNMax (Algorithm 1) and report the learned per-layer BER."""
    from .experiments.sram import evaluate_lanmax, lanmax_run
    from .training.lanmax import check_train_config
    preset, cfg = _config(args, default="digits-wrn-bc")
    check_train_config(cfg)            # refuse knobs LaNMax does not take before touching the store
    lanmax = dict(parse_assignment(s) for s in (args.lanmax or []))
    if args.alpha is not None:
        lanmax["alpha"] = args.alpha
    store = _store(args)
    model, p, traj = lanmax_run(cfg, lanmax, store=store, device=args.device,
                                progress=_progress(f"LaNMax {preset}", args.json or args.quiet))
    ds = evaluate_lanmax(cfg, lanmax, draws=args.draws, store=store, device=args.device)
    return {"preset": preset, "lanmax": {k: v for k, v in traj.attrs.items() if k not in ("cache_key",)},
            "p": p, "accuracy_mean": ds.attrs["accuracy_mean"], "ci95_low": ds.attrs["ci95_low"],
            "ci95_high": ds.attrs["ci95_high"], "energy": float(ds.energy),
            "energy_reference": ds.attrs["energy_reference"], "cache_key": traj.attrs.get("cache_key")}


def cmd_sharpness(args) -> dict:
    """m-sharpness (eq 3.24 / 5.5) of a trained network per definition, and its robustness."""
    from .analysis.sharpness import VARIANTS, m_sharpness
    from .datasets import as_tensors, load_dataset
    from .experiments import evaluate, train_model
    _check_number("rho", args.rho, 0.0, 10.0, lo_open=True)
    check_int("m", args.m, 1)
    # the robustness gap is accuracy at σ_c = 0 minus accuracy at --sigma-c: σ_c = 0 would compare the clean
    # accuracy with itself (gap 0.0 by construction, one "sigma_c=0" key), so the level must be > 0
    check_number("sigma_c", args.sigma_c, 0.0, 1.0, inclusive=(False, True),
                 note="the robustness gap compares the accuracy at sigma_c=0 with the accuracy at --sigma-c, "
                      "so it needs a noise level > 0")
    for v in args.variants:
        check_choice("variant", v, VARIANTS)
    preset, cfg = _config(args, "memristor")
    store = _store(args)
    net = train_model(cfg, store, device=args.device, data_root=args.data_root,
                      progress=_progress(f"train {preset}", args.json or args.quiet)).model
    x, y = as_tensors(load_dataset(cfg.dataset, args.data_root).train)
    sharp = {v: float(m_sharpness(net, x, y, variant=v, rho=args.rho, m=args.m)["m_sharpness"]) for v in args.variants}
    acc = {}
    for level in (0.0, args.sigma_c):
        mem = {"default": {"technology": "memristor", "noise": "multiplicative", "sigma_c": level}}
        acc[level] = evaluate(cfg, mem, draws=args.draws, adabs=args.adabs, store=store, device=args.device,
                              data_root=args.data_root).attrs["accuracy_mean"]
    return {"preset": preset, "config": cfg.to_dict(), "rho": args.rho, "m": args.m, "m_sharpness": sharp,
            "accuracy": {f"sigma_c={k:g}": v for k, v in acc.items()},
            "robustness": acc[0.0] - acc[args.sigma_c], "adabs": args.adabs}


def cmd_drift(args) -> dict:
    """Accuracy on IBM aihwkit's PCM model after each read time (Fig 5.5)."""
    from .analysis.drift import pcm_drift
    from .experiments import test_tensors, train_model
    check_numbers("times", args.times, 0.0, math.inf, inclusive=(False, False), note="seconds after programming")
    _check_seed(args.seed)
    preset, cfg = _config(args, "memristor")
    net = train_model(cfg, _store(args), device=args.device, data_root=args.data_root,
                      progress=_progress(f"train {preset}", args.json or args.quiet)).model
    x, y = test_tensors(cfg, args.data_root)
    ds = pcm_drift(net, x, y, times=args.times, draws=args.draws, seed=args.seed,
                   progress=_progress("PCM draws", args.json or args.quiet))
    return {"preset": preset, "times_s": ds.t_inference.values.tolist(), "labels": [str(v) for v in ds.label.values],
            "accuracy_mean": ds.accuracy_mean.values.tolist(), "accuracy_std": ds.accuracy_std.values.tolist(),
            "clean_accuracy": ds.attrs.get("clean_accuracy"), "draws": args.draws}


def _nas_accelerator(args, nas: dict) -> dict:
    """``nas``'s knobs with those of ``--adc-bits``, ``--objectives`` and ``--profile``, each checked
    naming its option and what it allows."""
    from .hardware import PROFILES
    from .nas.search import check_objectives
    from .nas.space import check_adc_choices
    out = dict(nas)
    if args.adc_bits is not None:
        try:
            bits = [int(b) for b in args.adc_bits.split(",")]
        except ValueError:
            raise KnobError(f"--adc-bits={args.adc_bits!r} is not valid: --adc-bits must be a comma-separated list of "
                            "ADC bit counts, each an integer in [2, 16] (e.g. 3,4,5,6,8)") from None
        out["adc_bits"] = list(check_adc_choices(bits, "--adc-bits"))
    if args.objectives is not None:
        out["objectives"] = list(check_objectives(args.objectives, "--objectives"))
    if args.profile is not None:
        check_choice("--profile", args.profile, sorted(PROFILES))
        if not any(o in ("energy", "latency") for o in out.get("objectives", [])):
            raise KnobError("--profile sets the constants of the energy and latency objectives: add --objectives "
                            "accuracy,energy (or accuracy,energy,latency)")
        out["profile"] = args.profile
    return out


def cmd_nas(args) -> dict:
    """The NAS process of ch. 6 (supernet, collection, estimator, M1/M2/M3, re-simulation);
    ``--export DIR`` writes one point of a front as a standalone network.  ``--adc-bits``,
    ``--objectives`` and ``--profile`` search ADC bits per layer against energy (J) and latency (s)."""
    from .experiments.crossbar import nas_study
    nas = dict(parse_assignment(s) for s in (args.set or []))
    supernet = dict(parse_assignment(s) for s in (args.supernet or []))
    nas = _nas_accelerator(args, nas)
    if args.export:
        return _nas_export(args, nas, supernet)
    if args.strategy is not None or args.point is not None:
        raise KnobError("--strategy and --point choose the point --export writes: add --export DIR")
    ds = nas_study(nas, supernet, _store(args), device=args.device,
                   progress=_progress("NAS", args.json or args.quiet))
    fronts = {}
    for s in ds.strategy.values:
        sub = ds.sel(strategy=s)
        f = sub.on_front.values
        fronts[str(s)] = {
            "accuracy": sub.accuracy.values[f].round(4).tolist(),
            "power": sub.power.values[f].round(6).tolist(),
        }
        for v in ("energy_j", "latency_s"):     # physical units: significant digits, not decimals
            if v in sub:
                fronts[str(s)][v] = [float(f"{x:.6g}") for x in sub[v].values[f]]
    out = {"r2": dict(zip(map(str, ds.target.values), ds.r2.values.round(4).tolist())),
           "hypervolume": dict(zip(map(str, ds.strategy.values), ds.hypervolume.values.round(4).tolist())),
           "fronts": fronts, "supernet_accuracy_largest": ds.attrs["supernet_accuracy_largest"],
           "supernet_accuracy_smallest": ds.attrs["supernet_accuracy_smallest"],
           "cache_key": ds.attrs.get("cache_key"), "cache": ds.attrs.get("cache")}
    if "objectives" in ds.attrs:
        from .experiments.crossbar import front_axes, pair_hypervolumes
        out["objectives"] = ds.attrs["objectives"].split(",")
        out["hypervolume_on"] = ds.hypervolume.attrs["long_name"]
        # every pair with accuracy, as the Pareto page shows them
        out["hypervolume_pairs"] = {f"accuracy-{v}": {k: round(h, 4) for k, h in pair_hypervolumes(ds, "accuracy",
                                                                                                   v).items()}
                                    for v in front_axes(ds) if v != "accuracy"}
        if "adc_choices" in ds.attrs:
            out["adc_bits"] = [int(b) for b in str(ds.attrs["adc_choices"]).split(",")]
        if "profile" in ds.attrs:
            out["profile"] = ds.attrs["profile"]
        out["units"] = {"energy_j": "J per inference", "latency_s": "s per inference", "power": "a.u."}
    return out


def _nas_export(args, nas: dict, supernet: dict) -> dict:
    """``nas --export DIR``: the study of the given knobs, or with none the crossbar page's (the
    shipped ``specs/crossbar_digits.json``); its point written by :func:`workbench.nas.export.export_subnet`."""
    from .experiments.crossbar import load_supernet, nas_study
    from .experiments.sweep import CROSSBAR_SPEC, load_spec
    from .nas.export import DEFAULT_STRATEGY, export_subnet
    if not nas and not supernet:
        params = load_spec(CROSSBAR_SPEC)["experiments"]["nas"]
        nas, supernet = dict(params.get("nas") or {}), dict(params.get("supernet") or {})
    strategy = args.strategy or DEFAULT_STRATEGY
    check_choice("strategy", strategy, ["dataset", "M1", "M2", "M3"])
    store = _store(args)
    quiet = args.json or args.quiet
    ds = nas_study(nas, supernet, store, device=args.device, progress=_progress("NAS", quiet))
    sn = load_supernet(supernet, store, device=args.device)
    command = " ".join(["workbench nas --export", str(args.export), "--strategy", strategy]
                       + (["--point", str(args.point)] if args.point is not None else [])
                       + [f"--set {s}" for s in (args.set or [])] + [f"--supernet {s}" for s in (args.supernet or [])])
    meta = export_subnet(args.export, sn.supernet, ds, strategy=strategy, point=args.point,
                         provenance={"command": command, "nas_knobs": nas, "supernet_knobs": supernet})
    return {"dir": str(Path(args.export).expanduser().resolve()), "strategy": strategy,
            "point": meta["provenance"]["point"], "accuracy": meta["accuracy"]["mean"],
            "accuracy_ci95": meta["accuracy"]["ci95"], "power": meta["power"]["mean"],
            "power_ci95": meta["power"]["ci95"], "power_units": meta["power"]["units"],
            "clean_accuracy": meta["clean_accuracy"], "nas_key": ds.attrs.get("cache_key"),
            "cache": ds.attrs.get("cache")}


def cmd_figure(args) -> dict:
    """Render a thesis figure from the store (``--list``: the figures, one per line)."""
    from .plots.figures import figure_list, save_figure
    if args.list:
        return {"figures": figure_list()}
    if not args.name or not args.out:
        raise KnobError("workbench figure NAME --out FILE.pdf|.png|.svg, or workbench figure --list")
    out = save_figure(args.name, args.out, _store(args), dpi=args.dpi)
    return {"figure": args.name, "out": str(out), "bytes": out.stat().st_size}


def cmd_precompute(args) -> dict:
    """Regenerate the results shipped in ``data/store`` (what the app opens with)."""
    from .experiments import Store
    from .experiments.shipped import precompute
    store = Store(args.out, read_only=[])
    return precompute(store, device=args.device, progress=_progress("precompute", args.json or args.quiet))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="workbench", description=__doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    common.add_argument("--cache-dir", help="result store directory (default: $WORKBENCH_CACHE or the user cache)")
    common.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda, cuda:1, ...")
    common.add_argument("--data-root", help="root of torchvision datasets (default: $WORKBENCH_DATA_ROOT)")
    common.add_argument("--download", action="store_true",
                        help="let torchvision download a missing dataset into --data-root (needs network access)")
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp):
        sp.add_argument(
            "--preset", help="training preset (digits-cnn, digits-bc, digits-wrn, digits-wrn-bc, wrn28-10-bc-cifar10)"
        )
        sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a training knob, e.g. epochs=5")
        sp.add_argument("--method", help="a chapter-5 training method (sgd, sam, asam, samson2, samsoninf, sgd+noise, "
                                         "sgd+clip, sam+clip, ...): its thesis settings, before --set")
        registered_models = sorted(registered(MODEL_GROUP))
        sp.add_argument("--model", metavar="SPEC",
                        help="your network instead of the preset's: path/to/file.py:factory, package.module:factory"
                             + (f" or a registered name ({', '.join(registered_models)})" if registered_models else
                                " or a name registered under the workbench.models entry points"))
        sp.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="a keyword argument of the factory")
        sp.add_argument("--weights", metavar="FILE", help="a state dict to start from (read with weights_only=True)")
        sp.add_argument("--digital", nargs="+", metavar="LAYER",
                        help="layers of --model kept in reliable digital memory (left out of energy and power)")
        datasets = sorted(registered(DATA_GROUP))
        sp.add_argument("--data", metavar="SPEC", help="your data instead of the preset's: a .npz (x_train, y_train, "
                                                       "x_test, y_test), a folder of class folders, module:factory"
                                                       + (f" or a registered name ({', '.join(datasets)})" if datasets
                                                          else " or a name registered under workbench.datasets"))

    t = sub.add_parser("train", parents=[common], help="train (or load from cache) a network")
    model_args(t)
    t.add_argument("--recompute", action="store_true", help="ignore cached weights")
    t.set_defaults(func=cmd_train)

    def memory_args(sp):
        sp.add_argument("--memory", choices=["ideal", "sram", "memristor"], default="ideal")
        sp.add_argument("--p", type=float, help="SRAM bit error rate, in [0, 0.5]")
        sp.add_argument("--bits", type=int, help="SRAM bits per weight ζ, in [1, 32]")
        sp.add_argument("--sigma-c", dest="sigma_c", type=float, help="multiplicative conductance noise σ_c, in [0, 1]")
        sp.add_argument("--sigma", type=float, help="additive conductance noise σ (µS), in [0, 100]")
        sp.add_argument("--g-u", dest="g_u", type=float, help="conductance scale g_u (µS), in (g_min, g_max] = (0, 25]")
        sp.add_argument("--noise", choices=["multiplicative", "additive"], help="conductance noise model")
        sp.add_argument("--draws", type=int, default=30, help="Monte-Carlo draws (minimum with --target-ci)")
        sp.add_argument("--seed", type=int, default=0, help="noise seed")
        sp.add_argument("--adabs", action="store_true", help="re-estimate batch-norm statistics under the noise first")

    e = sub.add_parser("evaluate", parents=[common], help="Monte-Carlo accuracy under a memory")
    model_args(e)
    memory_args(e)
    e.add_argument("--target-ci", type=float, help="keep drawing until the 95%% CI is narrower than this")
    e.add_argument("--energy-reference", choices=list(ENERGY_REFERENCES), default="same-network",
                   help="memory energy E (eq 3.30) relative to the same network read from reliable memory "
                        "(thesis §4.4, default) or to its 16-bit version (fp16)")
    e.add_argument("--adc-bits", dest="adc_bits", type=int, help="crossbar ADC bits per tile partial sum, in [2, 16]")
    e.add_argument("--dac-bits", dest="dac_bits", type=int, help="crossbar DAC bits per input, in [2, 16]")
    e.add_argument("--tile", metavar="R,C", help="crossbar tile of R rows x C columns of devices (each in [1, 2^20])")
    e.add_argument("--stuck-at", dest="stuck_at", type=float, metavar="RATE",
                   help="rate of crossbar devices stuck (half at g_min, half at g_max), in [0, 1]")
    e.add_argument("--act-p", dest="act_p", type=float, metavar="P",
                   help="bit error rate of the SRAM activation buffers, in [0, 0.5]")
    e.add_argument("--act-bits", dest="act_bits", type=int, metavar="B", help="activation word length, in [2, 32]")
    e.add_argument("--profile", metavar="NAME", help="hardware profile for energy (J) and latency (s) per inference: "
                                                     "isaac or survey-frontier")
    e.add_argument("--hw", action="append", metavar="KEY=VALUE", help="override a hardware profile constant, e.g. "
                                                                      "--hw adc_fom_j=5e-15 (implies --profile isaac)")
    e.set_defaults(func=cmd_evaluate)

    es = sub.add_parser("estimate", parents=[common],
                        help="analytic output MSE and power on a memristor memory (MemSE), optionally vs Monte Carlo")
    model_args(es)
    es.add_argument("--memory", default="memristor", help="memristor (the only memory the estimate models)")
    es.add_argument("--sigma-c", dest="sigma_c", type=float, help="multiplicative conductance noise σ_c, in [0, 1]")
    es.add_argument("--sigma", type=float, help="additive conductance noise σ (µS), in [0, 100]")
    es.add_argument("--g-u", dest="g_u", type=float, help="conductance scale g_u (µS), in (g_min, g_max] = (0, 25]")
    es.add_argument("--noise", choices=["multiplicative", "additive"], help="conductance noise model")
    es.add_argument("--mode", default="fast", help="fast (first order in the noise, any net) or full (full "
                                                   "covariance, no residual nets)")
    es.add_argument("--check-ci", dest="check_ci", type=float, metavar="W",
                    help="also run Monte Carlo until its 95%% CI half-width is W × its mean, W in (0, 1]")
    es.add_argument("--inputs", type=int, default=64, help="test inputs the output MSE averages over")
    es.add_argument("--seed", type=int, default=0, help="Monte-Carlo seed of --check-ci")
    es.set_defaults(func=cmd_estimate)

    c = sub.add_parser("curve", parents=[common], help="accuracy vs one noise knob")
    model_args(c)
    memory_args(c)
    c.add_argument(
        "--knob",
        default=None,
        choices=list(CURVE_KNOBS),
        help="knob swept (default: p for --memory sram; sigma_c, or sigma with --noise additive, for memristor)",
    )
    c.add_argument("--values", type=float, nargs="+", help="grid (default: the built-in one)")
    c.set_defaults(func=cmd_curve)

    k = sub.add_parser("cache", parents=[common], help="inspect the result store")
    k.add_argument("action", choices=["list", "verify", "clear"])
    k.set_defaults(func=cmd_cache)

    sw = sub.add_parser("sweep", parents=[common], help="compute a sweep spec (JSON) into the store")
    sw.add_argument("spec", help="path of the spec, e.g. specs/sram_digits.json")
    sw.add_argument("--only", nargs="+", help="run only these experiments of the spec")
    sw.add_argument("--scheduler", metavar="ADDRESS",
                    help="run the missing cells on this Dask scheduler (e.g. tcp://10.0.0.5:8786); its workers "
                         "need workbench installed and the store directory at the same path")
    sw.add_argument("--workers", type=int, metavar="N",
                    help="without --scheduler: N > 1 runs the cells on a local Dask cluster of N processes")
    sw.add_argument("--retries", type=int, default=2, help="retries of a failed cell on a cluster (default 2)")
    sw.set_defaults(func=cmd_sweep)

    lm = sub.add_parser("lanmax", parents=[common], help="learn one BER per layer with LaNMax (Algorithm 1)")
    model_args(lm)
    lm.add_argument("--alpha", type=float, help="energy weight α of eq 4.5, in [0, 10]")
    lm.add_argument("--lanmax", action="append", metavar="KEY=VALUE", help="other LaNMax knob, e.g. h=0.02")
    lm.add_argument("--draws", type=int, default=10, help="Monte-Carlo draws at the learned p")
    lm.set_defaults(func=cmd_lanmax)

    sh = sub.add_parser("sharpness", parents=[common], help="m-sharpness and robustness of a network (Fig 5.4)")
    model_args(sh)
    sh.add_argument("--rho", type=float, default=0.5, help="ρ of the m-sharpness, in (0, inf)")
    sh.add_argument("--m", type=int, default=128, help="minibatch size m")
    sh.add_argument("--variants", nargs="+", default=["sam", "asam", "samson2", "samsoninf"])
    sh.add_argument("--sigma-c", dest="sigma_c", type=float, default=0.4, help="σ_c of the robustness gap, in (0, 1]")
    sh.add_argument("--draws", type=int, default=10, help="Monte-Carlo draws per accuracy")
    sh.add_argument("--adabs", action="store_true", help="AdaBS before testing under noise")
    sh.set_defaults(func=cmd_sharpness)

    dr = sub.add_parser("drift", parents=[common], help="accuracy on aihwkit's PCM model with drift (Fig 5.5)")
    model_args(dr)
    dr.add_argument("--times", type=float, nargs="+", default=[1.0, 3600.0, 86400.0, 31536000.0],
                    help="seconds after programming")
    dr.add_argument("--draws", type=int, default=10)
    dr.add_argument("--seed", type=int, default=0)
    dr.set_defaults(func=cmd_drift)

    na = sub.add_parser("nas", parents=[common], help="joint architecture + g_u search on a supernet (ch. 6)")
    na.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="NAS knob, e.g. pop_size=128, n_gen=100, k=300, k_g=5, n_a=7, n_p=1, sigma=0.015")
    na.add_argument("--supernet", action="append", metavar="KEY=VALUE", help="supernet knob, e.g. epochs=8")
    na.add_argument("--export", metavar="DIR",
                    help="write one point of a front as a standalone network (architecture.json, weights.pt with "
                         "batch norm folded, metadata.json with its per-layer g_u, accuracy and power); without "
                         "--set/--supernet from the crossbar page's study (specs/crossbar_digits.json, shipped); "
                         "load it with --model exported:DIR")
    na.add_argument("--strategy", choices=["dataset", "M1", "M2", "M3"],
                    help="with --export: the front the point is taken from (default M2, the joint search)")
    na.add_argument("--point", type=int, metavar="K",
                    help="with --export: the re-simulated point K (default: the front's most accurate)")
    na.add_argument("--adc-bits", dest="adc_bits", metavar="B,B,...",
                    help="search the ADC bits of every crossbar layer among these (e.g. 3,4,5,6,8; each in [2, 16]): "
                         "collected, searched and re-simulated through those converters")
    na.add_argument("--objectives", metavar="accuracy,COST[,COST]",
                    help="accuracy, then one or two of power (eq 6.3, default), energy (J per inference), latency "
                         "(s per inference); e.g. accuracy,energy,latency")
    na.add_argument("--profile", metavar="NAME",
                    help="hardware profile of the energy and latency objectives: isaac (default) or survey-frontier")
    na.set_defaults(func=cmd_nas)

    fg = sub.add_parser("figure", parents=[common], help="render a thesis figure from the store (PDF, PNG, SVG)")
    fg.add_argument("name", nargs="?", help="the figure's name (see --list), e.g. fig4.4")
    fg.add_argument("--out", help="the file to write; its suffix picks the format (.pdf, .png, .svg)")
    fg.add_argument("--dpi", type=int, default=150, help="resolution of a PNG (default 150)")
    fg.add_argument("--list", action="store_true", help="one line per figure: name, thesis figure, data command")
    fg.set_defaults(func=cmd_figure)

    ls = sub.add_parser("lesson", parents=[common], help="lessons in lessons/ (see lessons/README.md)")
    ls_sub = ls.add_subparsers(dest="lesson_command", required=True)
    lc = ls_sub.add_parser("check", help="check lesson files: pages, link keys, value ranges, questions' answers")
    lc.add_argument("files", nargs="+", metavar="FILE", help="lesson files (.yaml)")
    lc.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the summary as JSON")
    lc.set_defaults(func=cmd_lesson)

    pc = sub.add_parser("precompute", parents=[common], help="regenerate the results shipped in data/store")
    pc.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "store"))
    pc.set_defaults(func=cmd_precompute)
    return p


def cmd_lesson(args) -> dict:
    """``lesson check FILE...``: every step of every lesson applied to its page as a link would be."""
    from .lessons import LessonError, check_files, load_lesson
    from .ui.app import PAGES, checking_page

    # ``lesson check lessons/*`` also names the folder's README: only .yaml files are lessons
    files = [f for f in args.files if Path(f).suffix in (".yaml", ".yml")]
    skipped = [f for f in args.files if f not in files]
    if not files:
        raise LessonError(f"no lesson file among {', '.join(args.files)}: a lesson is a .yaml file "
                          "(see lessons/README.md)")
    pages = {key: (lambda key=key: checking_page(key)) for key in PAGES}
    problems = check_files(files, pages)
    if problems:
        raise LessonError(f"{len(problems)} problem(s) in the lessons:\n" + "\n".join(f"  {p}" for p in problems))
    steps = sum(len(load_lesson(f).steps) for f in files)
    return {"lessons": len(files), "steps": steps, "ok": True,
            **({"skipped (not .yaml)": ", ".join(skipped)} if skipped else {})}


def _print_human(result: dict) -> None:
    for k, v in result.items():
        if k == "figures":
            print("\n".join(v))
        elif k == "entries":
            for r in v:
                state = "ok " if r["ok"] else "BAD"
                shipped = " (shipped)" if r["shipped"] else ""
                print(f"  {state} {r['kind']:10s} {r['key']} {r['bytes']:>10d} B{shipped}")
        elif k != "config":
            print(f"{k}: {v}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "draws", None) is not None:
            check_int("draws", args.draws, 1, 100_000)
        result = args.func(args)
    except KnobError as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return 2
    except (
        FileNotFoundError,
        ValueError,
        KeyError,
        FloatingPointError,
    ) as exc:  # FloatingPointError: diverged training
        print(f"workbench: error: {exc}", file=sys.stderr)
        return 2
    except Cancelled as exc:
        print(f"workbench: {exc}", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, default=float))
    else:
        _print_human(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Declarative sweeps: a JSON spec names experiments and their grids; ``run_spec`` computes every
missing cell into the store (``workbench sweep SPEC``).  Pages read the same results by the same
spec, so a shipped sweep opens instantly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import xarray as xr

from ..knobs import KnobError, check_choice
from .store import Store, spec_key

SPEC_DIR = Path(__file__).resolve().parents[2] / "specs"
SRAM_SPEC = SPEC_DIR / "sram_digits.json"
SHARPNESS_SPEC = SPEC_DIR / "sharpness_digits.json"
CROSSBAR_SPEC = SPEC_DIR / "crossbar_digits.json"
ACCELERATOR_SPEC = SPEC_DIR / "accelerator_digits.json"


def _uniform_ber(params, store, device, progress, cancel):
    from .sram import uniform_ber_study
    return uniform_ber_study(params["p_train"], params["p_test"], params["seeds"], draws=params["draws"], store=store,
                             device=device, train=params.get("train"), progress=progress, cancel=cancel)


def _sensitivity(params, store, device, progress, cancel):
    from ..analysis.sensitivity import layer_sensitivity
    from .core import test_tensors, train_model
    from .sram import bc_config, bc_networks
    parts = []
    for i, (p_train, seed) in enumerate(bc_networks(params["p_train"], params["seeds"])):
        cfg = bc_config(p_train, seed, **(params.get("train") or {}))
        net = train_model(cfg, store, device=device, cancel=cancel)
        x, y = test_tensors(cfg)
        ds = layer_sensitivity(net.model, x, y, base_p=params["base_p"], high_p=params["high_p"], draws=params["draws"],
                               seed=seed, device=device, cancel=cancel)
        parts.append(ds.expand_dims(seed=[seed]))
        if progress is not None:
            progress({"cell": i + 1, "cells": len(params["seeds"])})
    out = xr.concat(parts, dim="seed", combine_attrs="override")
    out["seed"].attrs.update(long_name="training seed", units="1")
    if "param_count" in out and "seed" in out.param_count.dims:
        out["param_count"] = out.param_count.isel(seed=0, drop=True)
    return out


def _spectra(params, store, device, progress, cancel):
    from ..analysis.spectra import spectra_dataset
    from .core import train_model
    from .sram import bc_config, bc_networks
    models = {}
    cells = bc_networks(params["p_train"], params["seeds"])
    for i, (pt, seed) in enumerate(cells):
        models[(pt, seed)] = train_model(bc_config(pt, seed, **(params.get("train") or {})), store, device=device,
                                         cancel=cancel).model
        if progress is not None:
            progress({"cell": i + 1, "cells": len(cells)})
    return spectra_dataset(models, None, mode=params.get("mode", 0), k=params.get("k", 10))


def _energy_accuracy(params, store, device, progress, cancel):
    from .sram import energy_accuracy

    return energy_accuracy(
        params["widths"],
        params["p_uniform"],
        params["alphas"],
        params["seeds"],
        draws=params["draws"],
        lanmax=params.get("lanmax"),
        store=store,
        device=device,
        progress=progress,
        cancel=cancel,
    )


def _lanmax_study(params, store, device, progress, cancel):
    from .lanmax_study import lanmax_study
    return lanmax_study(store=store, device=device, progress=progress, cancel=cancel, **params)


def _ch5(fn_name: str, **fixed):
    """A chapter-5 study of :mod:`.sharpness`; the spec's params are its keyword arguments."""
    def run(params, store, device, progress, cancel):
        from . import sharpness
        kw = {**fixed, **params}
        if fn_name == "sharpness_study" and (rob := sharpness.sharpness_robustness_args(kw)):
            kw["robustness"] = sharpness.robustness_study(**rob, store=store, device=device, cancel=cancel)
        return getattr(sharpness, fn_name)(store=store, device=device, progress=progress, cancel=cancel, **kw)
    return run


def _nas(params, store, device, progress, cancel):
    from .crossbar import nas_study
    return nas_study(params.get("nas"), params.get("supernet"), store, device=device, progress=progress, cancel=cancel)


def _nas_select(params, store, device, progress, cancel):
    from .crossbar import select_study
    kw = {k: v for k, v in params.items() if k != "supernet"}
    return select_study(params.get("supernet"), store, device=device, progress=progress, cancel=cancel, **kw)


def _accelerator(params, store, device, progress, cancel):
    from .accelerator import accelerator_study
    return accelerator_study(store=store, device=device, progress=progress, cancel=cancel, **params)


EXPERIMENTS: dict[str, Callable[..., xr.Dataset]] = {
    "uniform_ber": _uniform_ber, "sensitivity": _sensitivity, "spectra": _spectra, "energy_accuracy": _energy_accuracy,
    "robustness": _ch5("robustness_study"), "robustness_additive": _ch5("robustness_study", noise="additive"),
    "sharpness": _ch5("sharpness_study"), "quantization": _ch5("quantization_study"), "ood": _ch5("ood_study"),
    "pcm_drift": _ch5("drift_study"), "rho": _ch5("rho_study"), "nas": _nas, "nas_select": _nas_select,
    "lanmax_study": _lanmax_study, "accelerator": _accelerator,
}

#: the parameters each experiment cannot do without (the others have defaults)
REQUIRED: dict[str, tuple[str, ...]] = {
    "uniform_ber": ("p_train", "p_test", "seeds", "draws"),
    "sensitivity": ("p_train", "seeds", "base_p", "high_p", "draws"),
    "spectra": ("p_train", "seeds"),
    "energy_accuracy": ("widths", "p_uniform", "alphas", "seeds", "draws"),
    "lanmax_study": ("variants", "alphas", "p_uniform", "widths", "seeds", "epochs", "draws"),
    "accelerator": ("adc_bits", "draws"),
}


#: a spec's top-level keys naming the user's network and data -> the training knob each sets
USER_KEYS = {"model": "user_model", "model_args": "model_args", "weights": "init_weights", "digital": "digital",
             "data": "data"}
#: the experiments that train their networks from a recipe (its ``train`` overrides), so a spec's
#: top-level ``model``/``data`` replaces their network; the others (width-scaled WRNs, the LaNMax
#: study, the supernet) are built around one architecture and refuse it
USER_MODEL_EXPERIMENTS = ("uniform_ber", "sensitivity", "spectra", "robustness", "robustness_additive", "sharpness",
                          "quantization", "ood", "pcm_drift", "rho")


def apply_user_keys(spec: dict[str, Any], source: str = "sweep spec") -> dict[str, Any]:
    """``spec`` with its top-level ``model``, ``model_args``, ``weights``, ``digital`` and ``data``
    moved into every experiment's ``train`` overrides (an experiment's own ``train`` wins), so the
    cells, the store keys and a Dask run see them like any other training knob.  A spec without
    them is returned unchanged (the shipped studies keep their keys)."""
    top = {k: spec[k] for k in USER_KEYS if k in spec}
    if not top:
        return spec
    if "model" not in top and any(k in top for k in ("model_args", "weights", "digital")):
        raise KnobError(f"{source}: model_args, weights and digital apply to a top-level \"model\": add it")
    types = {"model": (str, "string"), "model_args": (dict, "object"), "weights": (str, "string"),
             "digital": (list, "array"), "data": (str, "string")}
    for k, v in top.items():
        if not isinstance(v, types[k][0]):
            raise KnobError(f"{source}: \"{k}\" must be a JSON {types[k][1]}, got {type(v).__name__}")
    refused = [name for name in spec["experiments"] if name not in USER_MODEL_EXPERIMENTS]
    if refused:
        raise KnobError(f"{source}: a top-level \"model\" or \"data\" applies to the experiments that train from a "
                        f"recipe ({', '.join(USER_MODEL_EXPERIMENTS)}); {', '.join(refused)} "
                        f"{'is built around its' if len(refused) == 1 else 'are built around their'} own architecture")
    overrides = {USER_KEYS[k]: v for k, v in top.items()}
    # the files' digests enter every experiment's key (a sweep result is keyed by its params, not
    # by the configs it builds): an edited model file or data set is another study
    from ..nn.external import model_digest
    from ..userdata import data_digest
    try:
        sources = {**({"model": model_digest(top["model"], top.get("weights"))} if "model" in top else {}),
                   **({"data": data_digest(top["data"])} if "data" in top else {})}
    except OSError as exc:
        raise KnobError(f"{source}: cannot read {exc.filename}: {exc.strerror}") from None
    overrides["sources"] = sources
    experiments = {name: {**params, "train": {**overrides, **(params.get("train") or {})}}
                   for name, params in spec["experiments"].items()}
    return {**{k: v for k, v in spec.items() if k not in USER_KEYS}, "user": top, "experiments": experiments}


def check_params(name: str, params: dict[str, Any], source: str = "sweep spec") -> None:
    """A :class:`KnobError` naming the experiment and its missing parameters, if any are missing."""
    required = REQUIRED.get(name, ())
    missing = [k for k in required if k not in params]
    if missing:
        raise KnobError(f"{source}: experiment {name!r} is missing the parameter{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(map(repr, missing))}; {name} requires {', '.join(required)}")


def load_spec(path: str | Path = SRAM_SPEC) -> dict[str, Any]:
    """Read and check a sweep spec (JSON: ``{"name": ..., "experiments": {name: params}}``, and
    optionally your network and data for every experiment: ``"model"``, ``"model_args"``,
    ``"weights"``, ``"digital"``, ``"data"``, as the CLI's flags; see :func:`apply_user_keys`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KnobError(f"sweep spec {str(path)!r} does not exist") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise KnobError(f"sweep spec {str(path)!r} is not a readable JSON file ({type(exc).__name__})") from None
    return parse_spec(text, f"sweep spec {str(path)!r}")


def parse_spec(text: str, source: str = "sweep spec") -> dict[str, Any]:
    """Parse and check the JSON text of a sweep spec (a page's spec editor, a file)."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KnobError(f"{source} is not valid JSON: {exc}") from None
    return check_spec(spec, source)


def check_spec(spec: Any, source: str = "sweep spec") -> dict[str, Any]:
    """``spec`` if it is a JSON object naming known experiments, else a :class:`KnobError`."""
    if not isinstance(spec, dict) or not isinstance(spec.get("experiments", {}), dict):
        raise KnobError(f"{source} must be a JSON object "
                        '{"name": ..., "experiments": {name: params}}, got ' + type(spec).__name__)
    unknown = set(spec.get("experiments", {})) - set(EXPERIMENTS)
    if unknown or not spec.get("experiments"):
        raise KnobError(f"{source}: experiments must be among {sorted(EXPERIMENTS)}; got {sorted(unknown) or 'none'}")
    bad = [k for k, v in spec["experiments"].items() if not isinstance(v, dict)]
    if bad:
        raise KnobError(f"{source}: the parameters of {bad} must be JSON objects")
    for name, params in spec["experiments"].items():
        check_params(name, params, source)
    return apply_user_keys(spec, source)


def run_experiment(name: str, params: dict[str, Any], store: Store | None = None, *, device: str = "auto",
                   progress=None, cancel=None) -> xr.Dataset:
    """One experiment of a spec, cached under its parameters."""
    check_choice("experiment", name, sorted(EXPERIMENTS))
    check_params(name, params)
    store = store or Store()
    return store.get_or_compute(f"sweep-{name}", params,
                                lambda: EXPERIMENTS[name](params, store, device, progress, cancel))


def stored_experiment(name: str, params: dict[str, Any], store: Store | None = None) -> xr.Dataset | None:
    """The stored result of one experiment of a spec, or None when the store lacks it (nothing is computed)."""
    check_choice("experiment", name, sorted(EXPERIMENTS))
    check_params(name, params)
    kind = f"sweep-{name}"
    key = spec_key(kind, params)
    ds = (store or Store()).load_dataset(kind, key)
    if ds is not None:
        ds.attrs.update(cache="hit", cache_key=key)
    return ds


def run_spec(spec: dict[str, Any], store: Store | None = None, *, device: str = "auto",
             progress: Callable[[dict], None] | None = None, only: list[str] | None = None) -> dict[str, xr.Dataset]:
    """Every experiment of ``spec`` (or those named in ``only``)."""
    out = {}
    for name, params in spec["experiments"].items():
        if only and name not in only:
            continue
        out[name] = run_experiment(
            name,
            params,
            store,
            device=device,
            progress=(lambda info, name=name: progress({**info, "experiment": name})) if progress else None,
        )
    return out

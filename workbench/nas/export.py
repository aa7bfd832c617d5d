"""A searched network out of the NAS: one re-simulated point of a strategy's front, written as a
standalone network (:mod:`workbench.nn.exported`) that loads without the supernet.

The point's subnet is built exactly as the re-simulation of §6.4 built it
(:func:`~workbench.nas.search.resimulate`): sliced from the supernet, batch norm recalibrated on
the same calibration images (no other fine-tuning, §6.1) and folded into the convs (§3.3.2).
Its state dict, its layout and its per-layer ``g_u = r · g_u^d`` (µS, ``g_u^d = ‖W_l‖∞`` of the
folded weight, one weight unit ↦ 1 µS, eq 6.1) are written, with its accuracy and crossbar power
measured again over the study's Monte-Carlo draws (mean and Student-t 95 % interval) beside the
values the study stored.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import xarray as xr

from ..analysis.montecarlo import mc_evaluate, summarize
from ..datasets import as_tensors, load_dataset
from ..knobs import KnobError, check_choice
from ..nn.exported import (
    ARCHITECTURE_FILE,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    METADATA_FILE,
    WEIGHTS_FILE,
    BottleneckNet,
    load_exported,
)
from ..nn.layers import noisy_layers
from .estimator import memory_map
from .search import STRATEGIES
from .supernet import Supernet, calibration_tensor

__all__ = ["DEFAULT_STRATEGY", "default_point", "export_subnet", "load_exported", "subnet_of"]

#: the joint architecture + g_u search (§6.2.2), whose front the export takes by default
DEFAULT_STRATEGY = "M2"
#: the calibration set of the re-simulation (:func:`~workbench.nas.search.resimulate`'s default)
CALIB_SIZE = 256


def _strategies(ds: xr.Dataset) -> list[str]:
    return [str(s) for s in ds.strategy.values]


def default_point(ds: xr.Dataset, strategy: str = DEFAULT_STRATEGY) -> int:
    """The most accurate point of ``strategy``'s re-simulated front (the lower power on a tie)."""
    check_choice("strategy", strategy, _strategies(ds))
    sub = ds.sel(strategy=strategy)
    front = np.flatnonzero(sub.on_front.values)
    if front.size == 0:
        raise KnobError(f"strategy {strategy} has no re-simulated front in this study")
    acc, pw = sub.accuracy.values[front], sub.power.values[front]
    return int(front[np.lexsort((pw, -acc))[0]])


def _check_point(ds: xr.Dataset, strategy: str, point: int) -> np.ndarray:
    check_choice("strategy", strategy, _strategies(ds))
    sub = ds.sel(strategy=strategy)
    ok = np.flatnonzero(np.isfinite(sub.accuracy.values))
    if isinstance(point, bool) or not isinstance(point, (int, np.integer)) or int(point) not in set(ok.tolist()):
        raise KnobError(f"point={point!r} is out of range: {strategy} has re-simulated points "
                        f"{int(ok.min())}..{int(ok.max())}" if ok.size else f"{strategy} has no re-simulated point")
    return np.asarray(sub.state_vector.isel(point=int(point)).values, dtype=float)


def subnet_of(supernet: Supernet, state: Sequence[float], seed: int = 0, fold_bn: bool = True):
    """The standalone subnet of ``state`` as the re-simulation builds it: BN recalibrated on
    :data:`CALIB_SIZE` training images drawn with ``seed``, then (``fold_bn``) folded."""
    data = load_dataset(supernet.config.dataset)
    return supernet.subnet(np.asarray(state, float), calibration_tensor(data, CALIB_SIZE, seed), fold_bn=fold_bn)


def architecture_of(subnet, in_channels: int, num_classes: int, image_size: int) -> dict[str, Any]:
    """The ``architecture.json`` of a folded subnet (:class:`~workbench.nas.elastic.SubNet`)."""
    def unit(cu):
        return cu.conv

    stem = unit(subnet.stem)
    stages = []
    for blocks in subnet.stages:
        out = []
        for b in blocks:
            c1, c2, c3 = unit(b.conv1), unit(b.conv2), unit(b.conv3)
            out.append({"in": int(c1.in_channels), "mid": int(c1.out_channels), "out": int(c3.out_channels),
                        "stride": int(c2.stride[0]), "shortcut": b.shortcut is not None})
        stages.append(out)
    return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "in_channels": int(in_channels),
            "num_classes": int(num_classes), "image_size": int(image_size),
            "stem": {"out": int(stem.out_channels), "kernel": int(stem.kernel_size[0]), "stride": int(stem.stride[0])},
            "stages": stages, "head": {"in": int(subnet.head.in_features)},
            "batch_norm": "folded into the preceding conv (thesis §3.3.2)"}


def _interval(values) -> dict[str, float]:
    s = summarize(np.asarray(values, float))
    return {"mean": s["accuracy_mean"], "std": s["accuracy_std"], "ci95": [s["ci95_low"], s["ci95_high"]],
            "draws": int(s["draws"])}


def _study_knobs(ds: xr.Dataset) -> dict[str, Any]:
    spec = ds.attrs.get("spec_json")
    try:
        return dict(json.loads(spec).get("nas") or {}) if isinstance(spec, str) else {}
    except (json.JSONDecodeError, AttributeError):
        return {}


def export_subnet(directory: str | os.PathLike, supernet: Supernet, nas: xr.Dataset, *,
                  strategy: str = DEFAULT_STRATEGY, point: int | None = None,
                  provenance: dict[str, Any] | None = None, draws: int | None = None, seed: int | None = None,
                  cancel=None) -> dict[str, Any]:
    """Write the point ``point`` of ``strategy`` in the NAS study ``nas`` (a :func:`nas_study`
    Dataset of ``supernet``) to ``directory`` as a standalone network; returns the metadata.

    ``point`` defaults to :func:`default_point` (the most accurate point of the front).  The
    accuracy and power are measured again with the study's draws, seed and noise ``σ`` (power
    per input sample on the whole test split, eq 3.39–3.44, as the re-simulation).
    ``provenance``: extra entries for ``metadata.json`` (store keys, the command)."""
    check_choice("strategy", strategy, list(STRATEGIES) + ["dataset"])
    point = default_point(nas, strategy) if point is None else point
    state = _check_point(nas, strategy, point)
    knobs = _study_knobs(nas)
    seed = int(knobs.get("seed", 0) if seed is None else seed)
    draws = int(knobs.get("draws", 5) if draws is None else draws)
    sigma = float(nas.attrs.get("sigma", knobs.get("sigma", 0.0)))
    space = supernet.space
    if state.shape == (space.with_adc([8]).n_var,) and "adc_choices" in nas.attrs:
        raise KnobError("this study searched ADC bits per layer (--adc-bits): an export writes the architecture, "
                        "the folded weights and the per-layer g_u, which an exported network is read back with; "
                        "per-layer ADC bits are not part of the export format")
    if state.shape != (space.n_var,):
        raise KnobError(f"the study's states have {state.size} entries, this supernet's {space.n_var}: "
                        "the study was run on another supernet")
    data = load_dataset(supernet.config.dataset)
    sub = subnet_of(supernet, state, seed)
    names = space.layer_names()
    mmap = memory_map(sub, names, state[space.gu_slice], sigma)
    x, y = as_tensors(data.test)
    r = mc_evaluate(sub, x, y, mmap, draws=draws, seed=seed, device="cpu", power_batch=len(y), cancel=cancel)
    clean = mc_evaluate(sub, x, y, None, draws=1, device="cpu")
    layers = list(noisy_layers(sub))
    g_u = {n: float(mmap[n].g_u) for n in layers}
    stored = nas.sel(strategy=strategy).isel(point=int(point))
    n_stored = int(knobs.get("draws", draws))
    acc_std = float(stored.accuracy_std)
    half = float(_t95(n_stored)) * acc_std / math.sqrt(n_stored) if n_stored > 1 else math.nan
    arch = space.decode(state)
    meta = {
        "g_u": g_u,
        "g_u_units": "µS (one weight unit = 1 µS; g_u^d = ||W_l||_inf of the folded weight, eq 6.1)",
        "g_u_rel": {n: float(v) for n, v in zip(names, state[space.gu_slice]) if n in g_u},
        "memory": {n: mmap[n].knobs() for n in layers},
        "accuracy": {**_interval(r.accuracy.values), "units": "1", "n_test": int(len(y)), "seed": seed},
        "power": {**_interval(r.power.values), "units": "a.u. per input sample (µS × input², eq 3.39–3.44)",
                  "power_batch": int(len(y)), "seed": seed},
        "clean_accuracy": float(clean.accuracy.values[0]),
        "stored": {"accuracy": float(stored.accuracy), "accuracy_std": acc_std,
                   "accuracy_ci95": [float(stored.accuracy) - half, float(stored.accuracy) + half],
                   "power": float(stored.power), "draws": n_stored},
        "noise": {"kind": "additive", "sigma": sigma, "units": "µS (eq 3.36)"},
        "architecture": {"depth": [int(v) for v in arch.depth], "width": [float(v) for v in arch.width],
                         "expand": [[float(e) for e in row[:d]] for row, d in zip(arch.expand, arch.depth)]},
        "provenance": {"strategy": strategy, "point": int(point), "state_vector": [float(v) for v in state],
                       "supernet_key": nas.attrs.get("supernet_key"), "nas_key": nas.attrs.get("cache_key"),
                       "dataset": supernet.config.dataset, **(provenance or {})},
    }
    architecture = architecture_of(sub, data.in_channels, data.num_classes, data.image_size)
    weights = {k: v.detach().cpu().clone().contiguous() for k, v in sub.state_dict().items()}
    BottleneckNet(architecture).load_state_dict(weights)      # the layout and the tensors fit, before writing
    _write(Path(directory).expanduser(), architecture, weights, meta)
    return meta


def _t95(n: int) -> float:
    from scipy import stats
    return float(stats.t.ppf(0.975, n - 1))


def _write(directory: Path, architecture: dict, weights: dict, meta: dict) -> None:
    """Write the three files, each atomically (temporary file, then rename)."""
    if directory.exists() and not directory.is_dir():
        raise KnobError(f"--export {directory}: a file is in the way (give a directory)")
    directory.mkdir(parents=True, exist_ok=True)
    for name, write in ((WEIGHTS_FILE, lambda f: torch.save(weights, f)),
                        (ARCHITECTURE_FILE, lambda f: f.write(json.dumps(architecture, indent=1).encode())),
                        (METADATA_FILE, lambda f: f.write(json.dumps(meta, indent=1, default=float).encode()))):
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, directory / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

"""Experiments: pure functions ``spec -> Dataset`` (and trained weights), cached in a :class:`Store`."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import xarray as xr

from ..analysis.montecarlo import mc_evaluate, summarize
from ..datasets import as_tensors, load_dataset
from ..hardware import KnobError, memory_map_from_dict
from ..nn import layer_param_counts
from ..training import TrainConfig, make_model, train
from .store import Store, spec_key

#: named training recipes; ``digits-cnn`` is the default everywhere
PRESETS: dict[str, dict[str, Any]] = {
    "digits-cnn": {"dataset": "digits", "model": "small_cnn", "epochs": 20, "batch_size": 64, "lr": 0.05},
    "digits-bc": {"dataset": "digits", "model": "small_cnn", "binary": True, "epochs": 20, "batch_size": 64, "lr": 0.05},
}
# Chapter 4 on digits: the thesis' WideResNet family at its smallest (WRN-10-1). A plain
# feed-forward net has no path around a layer, so at p = 0.5 every layer is fatal; residual
# connections are what make most layers robust (Fig 4.3), hence this family for the SRAM study.
PRESETS["digits-wrn-bc"] = {"dataset": "digits", "model": "wrn", "depth": 10, "k": 1.0, "binary": True, "epochs": 20,
                            "batch_size": 64, "lr": 0.05}
PRESETS["digits-wrn"] = {**PRESETS["digits-wrn-bc"], "binary": False}
PRESETS["wrn28-10-bc-cifar10"] = {
    # thesis §4.2: WideResNet-28-10 BinaryConnect on CIFAR-10, SGD Nesterov, lr 0.1 ÷10 every 60
    # epochs, weight decay 5e-4, batch 128, 200 epochs, random crop + flip (a GPU run)
    "dataset": "cifar10", "model": "wrn", "depth": 28, "k": 10.0, "binary": True, "optimizer": "sgd", "nesterov": True,
    "momentum": 0.9, "lr": 0.1, "schedule": "step", "step_every": 60, "gamma": 0.1, "weight_decay": 5e-4,
    "batch_size": 128, "epochs": 200, "augment": True,
}
DEFAULT_PRESET = "digits-cnn"
#: the network each memory technology is evaluated on by default: BinaryConnect for SRAM (ζ = 1,
#: thesis ch. 4), full precision for crossbars (ch. 5–6) and for the ideal memory
PRESET_FOR_TECHNOLOGY = {"sram": "digits-bc", "memristor": "digits-cnn", "ideal": "digits-cnn"}


def preset_config(name: str = DEFAULT_PRESET, **overrides: Any) -> TrainConfig:
    if name not in PRESETS:
        raise KnobError(f"preset={name!r} must be one of {', '.join(sorted(PRESETS))}")
    return TrainConfig.from_dict({**PRESETS[name], **overrides})


@dataclass
class Trained:
    model: nn.Module
    config: TrainConfig
    history: xr.Dataset
    test_accuracy: float
    train_seconds: float
    device: str
    cache_key: str
    cached: bool


def _history_dataset(hist: dict[str, list[float]]) -> xr.Dataset:
    ep = np.arange(1, len(hist["loss"]) + 1)
    return xr.Dataset(
        {"loss": ("epoch", hist["loss"], {"long_name": "training loss", "units": "nats"}),
         "train_accuracy": ("epoch", hist["train_accuracy"], {"long_name": "training accuracy", "units": "1"}),
         "test_accuracy": ("epoch", hist["test_accuracy"], {"long_name": "test accuracy", "units": "1"})},
        coords={"epoch": ("epoch", ep, {"long_name": "epoch", "units": "1"})})


def train_model(cfg: TrainConfig, store: Store | None = None, *, device: str = "auto", data_root: str | None = None,
                progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
                recompute: bool = False) -> Trained:
    """Train ``cfg`` or load its cached weights (keyed by the full config + code version)."""
    store = store or Store()
    spec = cfg.to_dict()
    key = spec_key("weights", spec)
    obj = None if recompute else store.load_object("weights", key)
    if obj is None:
        with store.lock("weights", key):
            obj = None if recompute else store.load_object("weights", key, repair=True)
            if obj is None:
                res = train(cfg, device=device, progress=progress, cancel=cancel, data_root=data_root)
                obj = {"state_dict": res.model.state_dict(), "history": res.history, "test_accuracy": res.test_accuracy,
                       "train_seconds": res.train_seconds, "device": res.device}
                store.save_object("weights", key, obj, spec)
                cached = False
            else:
                cached = True
    else:
        cached = True
    data = load_dataset(cfg.dataset, data_root)
    model = make_model(cfg, data)
    model.load_state_dict(obj["state_dict"])
    return Trained(model.eval(), cfg, _history_dataset(obj["history"]), float(obj["test_accuracy"]),
                   float(obj["train_seconds"]), obj["device"], key, cached)


def test_tensors(cfg: TrainConfig, data_root: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    return as_tensors(load_dataset(cfg.dataset, data_root).test)


#: AdaBS calibration: this many training minibatches of 128 (at most)
ADABS_BATCHES = 20


def evaluate(cfg: TrainConfig, memory: dict, *, draws: int = 30, seed: int = 0, target_ci_width: float | None = None,
             adabs: bool = False, store: Store | None = None, device: str = "auto", data_root: str | None = None,
             progress=None, cancel=None) -> xr.Dataset:
    """Monte-Carlo accuracy (and energy/power) of the trained ``cfg`` under ``memory``.

    ``memory`` is a :meth:`MemoryMap.to_dict` dict (validated here).  Dims: ``draw``.
    ``adabs``: re-estimate the batch-norm statistics under that memory's noise on (up to
    :data:`ADABS_BATCHES` minibatches of) the training set first (§5.4.1).
    """
    store = store or Store()
    mmap = memory_map_from_dict(memory)
    spec = {"train": cfg.to_dict(), "memory": mmap.to_dict(), "draws": draws, "seed": seed, "target_ci_width": target_ci_width,
            "adabs": bool(adabs)}

    def compute():
        trained = train_model(cfg, store, device=device, data_root=data_root, cancel=cancel)
        x, y = test_tensors(cfg, data_root)
        model = trained.model
        if adabs:
            from ..analysis.adabs import adabs as recalibrate
            x_train, _ = as_tensors(load_dataset(cfg.dataset, data_root).train)
            model = recalibrate(model, mmap, x_train, max_batches=ADABS_BATCHES, seed=seed + 7919)
        ds = mc_evaluate(model, x, y, mmap, draws, seed=seed, device=device, target_ci_width=target_ci_width,
                         progress=progress, cancel=cancel)
        ds.attrs["adabs"] = int(bool(adabs))
        ds.attrs["clean_accuracy"] = trained.test_accuracy
        ds.attrs["weights_key"] = trained.cache_key
        return ds

    return store.get_or_compute("evaluate", spec, compute)


#: default grids of the accuracy-vs-noise curves
CURVE_GRIDS = {
    "p": [0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5],
    "sigma_c": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5],
    "sigma": [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0],
    "g_u": [2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0, 25.0],
}
KNOB_META = {
    "p": ("bit error rate p", "1"), "sigma_c": ("multiplicative noise σ_c", "1"),
    "sigma": ("additive noise σ", "µS"), "g_u": ("conductance scale g_u", "µS"),
}


def noise_curve(cfg: TrainConfig, memory: dict, knob: str, values: list[float] | None = None, *, draws: int = 20,
                seed: int = 0, adabs: bool = False, store: Store | None = None, device: str = "auto",
                data_root: str | None = None, progress=None, cancel=None) -> xr.Dataset:
    """Accuracy over Monte-Carlo draws as one knob of the default memory sweeps a grid.

    Dims ``(knob, draw)``; every cell is itself a cached :func:`evaluate` result, so a curve
    shares its points with single evaluations.
    """
    if knob not in CURVE_GRIDS:
        raise KnobError(f"knob={knob!r} must be one of {', '.join(CURVE_GRIDS)}")
    values = list(CURVE_GRIDS[knob] if values is None else values)
    mems = [{"default": {**memory.get("default", {}), knob: v}, "overrides": memory.get("overrides", {})} for v in values]
    for mem in mems:        # refuse an out-of-range value before computing any cell
        memory_map_from_dict(mem)
    cells = []
    for i, mem in enumerate(mems):
        cells.append(evaluate(cfg, mem, draws=draws, seed=seed, adabs=adabs, store=store, device=device,
                              data_root=data_root, cancel=cancel))
        if progress is not None:
            progress({"cell": i + 1, "cells": len(values)})
    long_name, units = KNOB_META[knob]
    # per-layer power (and its ``layer`` coordinate) is not part of a curve; variable attrs
    # (long_name, units) are kept, the cells' Dataset attrs (cache keys, summaries) are not
    ds = xr.concat([c.drop_vars([v for v in ("layer_power", "layer") if v in c.variables]) for c in cells], dim=knob,
                   combine_attrs="override")
    ds.attrs = {}
    ds = ds.assign_coords({knob: (knob, np.asarray(values, dtype=float), {"long_name": long_name, "units": units})})
    for name in ("accuracy_mean", "accuracy_std", "ci95_low", "ci95_high"):
        ds[name] = (knob, [c.attrs[name] for c in cells], {"long_name": name.replace("_", " "), "units": "1"})
    ds.attrs["clean_accuracy"] = cells[0].attrs.get("clean_accuracy", float("nan"))
    ds.attrs["knob"] = knob
    return ds


def param_counts(cfg: TrainConfig, data_root: str | None = None) -> dict[str, int]:
    return layer_param_counts(make_model(cfg, load_dataset(cfg.dataset, data_root)))


__all__ = ["CURVE_GRIDS", "DEFAULT_PRESET", "PRESETS", "PRESET_FOR_TECHNOLOGY", "Trained", "evaluate", "noise_curve",
           "param_counts", "preset_config", "summarize", "test_tensors", "train_model"]

"""Experiments: pure functions ``spec -> Dataset`` (and trained weights), cached in a :class:`Store`."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn as nn
import xarray as xr
from torch.utils.data import Subset, TensorDataset

from ..analysis.montecarlo import check_draw_args, clean_accuracy, mc_evaluate, summarize
from ..datasets import DataBundle, as_tensors
from ..hardware import ENERGY_REFERENCES, HardwareProfile, MemoryMap, memory_map_from_dict, profile_from_dict
from ..hardware.sram import storage_bits
from ..knobs import KnobError, check_choice
from ..nn import layer_param_counts, set_memory
from ..nn.external import exported_dir
from ..training import TrainConfig, data_for, make_model, train
from .store import Store, spec_key

#: named training recipes; ``digits-cnn`` is the default everywhere
PRESETS: dict[str, dict[str, Any]] = {
    "digits-cnn": {"dataset": "digits", "model": "small_cnn", "epochs": 20, "batch_size": 64, "lr": 0.05},
    "digits-bc": {
        "dataset": "digits",
        "model": "small_cnn",
        "binary": True,
        "epochs": 20,
        "batch_size": 64,
        "lr": 0.05,
    },
}
# Chapter 4 on digits: the thesis' WideResNet family at its smallest (WRN-10-1). A plain
# feed-forward net has no path around a layer, so at p = 0.5 every layer is fatal; residual
# connections are what make most layers robust (Fig 4.3), hence this family for the SRAM study.
PRESETS["digits-wrn-bc"] = {"dataset": "digits", "model": "wrn", "depth": 10, "k": 1.0, "binary": True, "epochs": 20,
                            "batch_size": 64, "lr": 0.05}
PRESETS["digits-wrn"] = {**PRESETS["digits-wrn-bc"], "binary": False}
# Chapter 5 on digits: the small CNN at a quarter width. At full width σ_c = 0.4 costs the net
# only ~3 points and the methods' differences drown in the Monte-Carlo spread; at width 0.25 the
# conductance noise bites (≈ 0.7 at σ_c = 0.4 after SGD) as it does for the thesis' CIFAR nets.
PRESETS["digits-cnn-small"] = {**PRESETS["digits-cnn"], "width": 0.25}
PRESETS["wrn28-10-bc-cifar10"] = {
    # thesis §4.2: WideResNet-28-10 BinaryConnect on CIFAR-10, SGD Nesterov, lr 0.1 ÷10 every 60
    # epochs, weight decay 5e-4, batch 128, 200 epochs, random crop + flip (a GPU run)
    "dataset": "cifar10", "model": "wrn", "depth": 28, "k": 10.0, "binary": True, "optimizer": "sgd", "nesterov": True,
    "momentum": 0.9, "lr": 0.1, "schedule": "step", "step_every": 60, "gamma": 0.1, "weight_decay": 5e-4,
    "batch_size": 128, "epochs": 200, "augment": True,
}
# Chapter 5 (thesis §5.3): the recipe of the CIFAR experiments (after [150], ASAM), plain SGD
# momentum 0.9, weight decay 5e-4, batch 128, 200 epochs, lr 0.1 ÷10 every 50 epochs, pad-4 random
# crop + flip; VGG-13 on CIFAR-10 and MobileNetV2 on CIFAR-100 are the networks of §5.4 (GPU runs).
# The sharpness method (sam, rho, clip, noise injection) is chosen per run on top: see CH5_BEST.
PRESETS["vgg13-cifar10"] = {
    "dataset": "cifar10", "model": "vgg13", "optimizer": "sgd", "nesterov": False, "momentum": 0.9, "lr": 0.1,
    "weight_decay": 5e-4, "schedule": "step", "step_every": 50, "gamma": 0.1, "batch_size": 128, "epochs": 200,
    "augment": True,
}
PRESETS["mobilenetv2-cifar100"] = {**PRESETS["vgg13-cifar10"], "dataset": "cifar100", "model": "mobilenet_v2"}
PRESETS["resnet18-imagenet-finetune"] = {
    # thesis §5.3.2: fine-tune torchvision's ImageNet-pretrained ResNet-18 for 10 epochs, batch 400,
    # SGD lr 0.001 (constant) momentum 0.9 weight decay 1e-4, RandomResizedCrop(224) + flip; the
    # pretrained weights are the user's local file, passed as init_weights (never downloaded)
    "dataset": "imagenet", "model": "resnet18_imagenet", "optimizer": "sgd", "nesterov": False, "momentum": 0.9,
    "lr": 0.001, "weight_decay": 1e-4, "schedule": "constant", "batch_size": 400, "epochs": 10, "augment": True,
}
#: knobs a preset cannot run without: preset -> {knob: what to pass}
PRESET_REQUIRES: dict[str, dict[str, str]] = {
    "resnet18-imagenet-finetune": {
        "init_weights": "pass init_weights=PATH, a local torchvision ResNet-18 state dict (e.g. "
                        "torch.save(torchvision.models.resnet18(weights=...).state_dict(), PATH), made by you; "
                        "nothing is downloaded)"},
}
_INJECTION = {"default": {"technology": "injection", "sigma_g": 0.94, "g_u": 25.0}}    # eq 5.4, σ_g = 0.94, g_u = 25 µS


def _ch5_methods(*, alpha, c_sgd, sam, sam_c, asam, asam_c, samson2, samson2_c, samsoninf, samsoninf_c):
    """One table of best hyper-parameters (α of the noise baseline, c of SGD + clip, ρ of each
    sharpness-aware method alone and with clipping c = 0.2) as TrainConfig overrides."""
    return {
        "sgd+noise": {"clip_std": alpha, "train_memory": {"default": dict(_INJECTION["default"])}},
        "sgd+clip": {"clip": c_sgd},
        "sam": {"sam": "sam", "rho": sam},
        "sam+clip": {"sam": "sam", "rho": sam_c, "clip": 0.2},
        "asam": {"sam": "asam", "rho": asam},
        "asam+clip": {"sam": "asam", "rho": asam_c, "clip": 0.2},
        "samson2": {"sam": "samson2", "rho": samson2},
        "samson2+clip": {"sam": "samson2", "rho": samson2_c, "clip": 0.2},
        "samsoninf": {"sam": "samsoninf", "rho": samsoninf},
        "samsoninf+clip": {"sam": "samsoninf", "rho": samsoninf_c, "clip": 0.2},
    }


#: chapter-5 preset -> method -> TrainConfig overrides: the thesis' best hyper-parameters of each
#: method (Tables 5.7 VGG-13/CIFAR-10, 5.8 MobileNetV2/CIFAR-100, 5.9 ResNet-18/ImageNet-1K; noise
#: injection eq 5.4 with clipping to ±α·std(W_l), α = 2.0, 2.5 for the ImageNet fine-tuning).
#: Plain SGD is the preset itself.  Use: ``preset_config(name, **CH5_BEST[name][method])``.
#: (Table 5.9 is the robustness study; §5.3.2's clean-accuracy optimum differs: SAM ρ = 0.05,
#: ASAM 0.5, SAMSON 0.2.)
CH5_BEST: dict[str, dict[str, dict[str, Any]]] = {
    "vgg13-cifar10": _ch5_methods(alpha=2.0, c_sgd=0.15, sam=0.1, sam_c=0.1, asam=0.5, asam_c=0.5, samson2=0.2,
                                  samson2_c=0.5, samsoninf=1.0, samsoninf_c=0.5),                    # Table 5.7
    "mobilenetv2-cifar100": _ch5_methods(alpha=2.0, c_sgd=0.2, sam=0.2, sam_c=0.2, asam=1.0, asam_c=1.0, samson2=1.0,
                                         samson2_c=0.5, samsoninf=1.0, samsoninf_c=1.0),             # Table 5.8
    "resnet18-imagenet-finetune": _ch5_methods(alpha=2.5, c_sgd=0.2, sam=0.1, sam_c=0.1, asam=1.0, asam_c=1.0,
                                               samson2=0.2, samson2_c=0.5, samsoninf=0.5, samsoninf_c=1.0),  # Table 5.9
}
DEFAULT_PRESET = "digits-cnn"
#: the network each memory technology is evaluated on by default: BinaryConnect for SRAM (ζ = 1,
#: thesis ch. 4), full precision for crossbars (ch. 5–6) and for the ideal memory
PRESET_FOR_TECHNOLOGY = {"sram": "digits-bc", "memristor": "digits-cnn", "ideal": "digits-cnn"}


def preset_config(name: str = DEFAULT_PRESET, **overrides: Any) -> TrainConfig:
    check_choice("preset", name, sorted(PRESETS))
    for knob, how in PRESET_REQUIRES.get(name, {}).items():
        if overrides.get(knob) in (None, ""):
            raise KnobError(f"preset {name!r} needs {knob}: {how}")
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
                recompute: bool = False, data: DataBundle | None = None) -> Trained:
    """Train ``cfg`` or load its cached weights (keyed by the full config + code version).
    ``data``: ``cfg.dataset`` already loaded by the caller (else it is loaded when training)."""
    store = store or Store()
    spec = cfg.to_dict()
    key = spec_key("weights", spec)
    obj = None if recompute else store.load_object("weights", key)
    if obj is None:
        with store.lock("weights", key):
            obj = None if recompute else store.load_object("weights", key, repair=True)
            if obj is None and exported_dir(cfg.user_model) is not None:
                # a searched network (nas --export) is deployed as exported: its weights, never retrained
                data = data if data is not None else data_for(cfg, data_root, augment=False)
                model = make_model(cfg, data)
                obj = {"state_dict": model.state_dict(),
                       "history": {"loss": [], "train_accuracy": [], "test_accuracy": []},
                       "test_accuracy": clean_accuracy(model, *as_tensors(data.test), device="cpu"),
                       "train_seconds": 0.0, "device": "cpu"}
                store.save_object("weights", key, obj, spec)
                cached = False
            elif obj is None:
                res = train(cfg, data=data, device=device, progress=progress, cancel=cancel, data_root=data_root)
                obj = {"state_dict": res.model.state_dict(), "history": res.history, "test_accuracy": res.test_accuracy,
                       "train_seconds": res.train_seconds, "device": res.device}
                store.save_object("weights", key, obj, spec)
                cached = False
            else:
                cached = True
    else:
        cached = True
    data = data_for(cfg, data_root, augment=False)
    model = make_model(cfg, data)
    model.load_state_dict(obj["state_dict"])
    return Trained(model.eval(), cfg, _history_dataset(obj["history"]), float(obj["test_accuracy"]),
                   float(obj["train_seconds"]), obj["device"], key, cached)


def test_tensors(cfg: TrainConfig, data_root: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    return as_tensors(data_for(cfg, data_root, augment=False).test)


#: AdaBS calibration: this many training minibatches of 128 (at most)
ADABS_BATCHES = 20


def evaluate_spec(cfg: TrainConfig, memory: dict, *, draws: int, seed: int, target_ci_width: float | None = None,
                  adabs: bool = False, profile: HardwareProfile | Mapping | None = None) -> dict[str, Any]:
    """The complete config of :func:`evaluate`'s store entry (kind ``"evaluate"``): its cache key is
    ``spec_key("evaluate", evaluate_spec(...))``, with ``memory`` in its canonical (validated) form.
    A hardware ``profile`` enters the spec (all its knobs) only when given: without one, keys are
    those of evaluations made before profiles existed."""
    spec = {"train": cfg.to_dict(), "memory": memory_map_from_dict(memory).to_dict(), "draws": draws, "seed": seed,
            "target_ci_width": target_ci_width, "adabs": bool(adabs)}
    if profile is not None:
        spec["profile"] = as_profile(profile).to_dict()
    return spec


def as_profile(profile: HardwareProfile | Mapping | None) -> HardwareProfile | None:
    """A :class:`HardwareProfile` from itself or from its ``to_dict()`` (validated); ``None`` stays ``None``."""
    return profile if profile is None or isinstance(profile, HardwareProfile) else profile_from_dict(profile)


#: converter ranges are calibrated on this many (un-augmented) training samples
CALIBRATION_SAMPLES = 512


def evaluate(cfg: TrainConfig, memory: dict, *, draws: int = 30, seed: int = 0, target_ci_width: float | None = None,
             adabs: bool = False, store: Store | None = None, device: str = "auto", data_root: str | None = None,
             progress=None, cancel=None, energy_reference: str = "same-network",
             profile: HardwareProfile | Mapping | None = None) -> xr.Dataset:
    """Monte-Carlo accuracy (and energy/power) of the trained ``cfg`` under ``memory``.

    ``memory`` is a :meth:`MemoryMap.to_dict` dict (validated here).  Dims: ``draw``.  ``energy``
    is relative to ``energy_reference`` (:func:`restate_energy`; not part of the cache key).
    ``adabs``: re-estimate the batch-norm statistics under that memory's noise on (up to
    :data:`ADABS_BATCHES` minibatches of) the training set first (§5.4.1).
    ``profile``: a :class:`~workbench.hardware.HardwareProfile` (or its ``to_dict()``): the result
    gains ``energy_j``, ``layer_energy_j``, ``latency_s`` (:func:`~workbench.analysis.montecarlo.mc_evaluate`).
    Converter ranges of crossbar periphery (``dac_range``/``adc_range = "calibrated"``) are calibrated
    on the first :data:`CALIBRATION_SAMPLES` un-augmented training samples.
    """
    store = store or Store()
    check_draw_args(draws, seed, target_ci_width)      # before a training this call may start
    check_choice("energy_reference", energy_reference, list(ENERGY_REFERENCES))
    mmap = memory_map_from_dict(memory)
    profile = as_profile(profile)
    spec = evaluate_spec(cfg, memory, draws=draws, seed=seed, target_ci_width=target_ci_width, adabs=adabs,
                         profile=profile)

    def compute():
        # the memory map must fit the network (layer names, 1-bit SRAM on BinaryConnect layers only):
        # checked on the untrained network, before a training this call may start
        # loaded once, as the training loads it, for the check, the training and the (never augmented) test split
        data = data_for(cfg, data_root)
        set_memory(make_model(cfg, data), mmap)
        trained = train_model(cfg, store, device=device, data_root=data_root, cancel=cancel, data=data)
        # a test split in memory (TensorDataset) is read as its tensors (as_tensors shares, never copies,
        # them); any other (a factory's lazy StreamedTestSet) is streamed batch by batch, never
        # stacked.  Both give the same per-draw accuracies for one seed (tests/test_streaming.py).
        if isinstance(data.test, TensorDataset):
            x, y = as_tensors(data.test)
        else:
            x, y = data.test, None
        model = trained.model
        if adabs:
            from ..analysis.adabs import adabs as recalibrate
            x_train, _ = as_tensors(data_for(cfg, data_root, augment=False).train)    # un-augmented images
            model = recalibrate(model, mmap, x_train, max_batches=ADABS_BATCHES, seed=seed + 7919)
        calibration = None
        if profile is not None or any(getattr(m, "periphery_active", False)
                                      for m in (mmap.default, *mmap.overrides.values())):
            train_split = getattr(data_for(cfg, data_root, augment=False), "train", None)
            if train_split is not None and len(train_split):       # else: the test set's power minibatch
                calibration, _ = as_tensors(Subset(train_split, range(min(CALIBRATION_SAMPLES, len(train_split)))))
        ds = mc_evaluate(model, x, y, mmap, draws, seed=seed, device=device, target_ci_width=target_ci_width,
                         progress=progress, cancel=cancel, profile=profile, calibration=calibration)
        ds.attrs["adabs"] = int(bool(adabs))
        ds.attrs["clean_accuracy"] = trained.test_accuracy
        ds.attrs["weights_key"] = trained.cache_key
        if cfg.data and data.normalization is not None:       # the user's data: how its inputs were scaled
            mean, std = data.normalization
            ds.attrs["normalization_mean"], ds.attrs["normalization_std"] = np.asarray(mean), np.asarray(std)
        return ds

    ds = store.get_or_compute("evaluate", spec, compute)
    return restate_energy(ds, mmap, energy_reference, lambda: param_counts(cfg, data_root))


def restate_energy(ds: xr.Dataset, mmap: MemoryMap, reference: str, counts: Callable[[], Mapping[str, int]]):
    """``ds`` with its ``energy`` (stored relative to the 16-bit network, as
    :func:`workbench.analysis.montecarlo.memory_energy_of` writes it) relative to ``reference``
    (:data:`workbench.hardware.ENERGY_REFERENCES`); ``counts()`` (weights per layer) is called only
    when the layers store different numbers of bits.  Also sets ``ds.attrs["energy_reference"]``."""
    check_choice("energy_reference", reference, list(ENERGY_REFERENCES))
    if "energy" not in ds:
        return ds
    bits = {storage_bits(m) for m in (mmap.default, *mmap.overrides.values())}
    if reference == "fp16":
        scale = 1.0
    elif len(bits) == 1:
        scale = 16.0 / bits.pop()
    else:
        n = counts()
        scale = 16.0 * sum(n.values()) / sum(storage_bits(mmap[k]) * v for k, v in n.items())
    ds["energy"] = ((), float(ds.energy) * scale, {"long_name": f"memory energy {ENERGY_REFERENCES[reference]}",
                                                    "units": "1"})
    ds.attrs["energy_reference"] = reference
    return ds


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
                data_root: str | None = None, progress=None, cancel=None,
                evaluator: Callable[..., xr.Dataset] | None = None) -> xr.Dataset:
    """Accuracy over Monte-Carlo draws as one knob of the default memory sweeps a grid.

    Dims ``(knob, draw)``; every cell is itself a cached :func:`evaluate` result, so a curve
    shares its points with single evaluations.  ``evaluator(cfg, memory, draws=, seed=, cancel=)``
    replaces :func:`evaluate` for each point (a page's session-only network or test set, never stored).
    """
    check_choice("knob", knob, CURVE_GRIDS)
    check_draw_args(draws, seed)
    if not isinstance(memory, Mapping):
        raise KnobError(f"memory={memory!r} must be a dict {{'default': {{...}}, 'overrides': {{...}}}} "
                        "(MemoryMap.to_dict())")
    values = list(CURVE_GRIDS[knob] if values is None else values)
    if not values:
        raise KnobError(f"values=[] is empty: a {knob} curve needs at least one value")
    mems = [
        {"default": {**memory.get("default", {}), knob: v}, "overrides": memory.get("overrides", {})} for v in values
    ]
    for mem in mems:        # refuse an out-of-range value before computing any cell
        memory_map_from_dict(mem)
    cells = []
    for i, mem in enumerate(mems):
        if evaluator is not None:
            cells.append(evaluator(cfg, mem, draws=draws, seed=seed, cancel=cancel))
        else:
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
    return layer_param_counts(make_model(cfg, data_for(cfg, data_root, augment=False)))


__all__ = ["CURVE_GRIDS", "DEFAULT_PRESET", "PRESETS", "PRESET_FOR_TECHNOLOGY", "Trained", "evaluate", "evaluate_spec",
           "noise_curve", "param_counts", "preset_config", "restate_energy", "summarize", "test_tensors", "train_model"]

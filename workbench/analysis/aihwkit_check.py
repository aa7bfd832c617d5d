"""Cross-check of the crossbar periphery against IBM's aihwkit 1.1.0 (issue: the accelerator).

The workbench (:mod:`workbench.hardware.periphery`) and aihwkit's forward ``IOParameters`` model
the same effects of a crossbar's periphery: DAC resolution (``dac_bits`` ↔ ``inp_res``), ADC
resolution and range (``adc_bits``/``adc_bound`` ↔ ``out_res``/``out_bound``), Gaussian input
noise (``inp_noise``) and output noise (``out_noise``).  :func:`aihwkit_model` builds, from one
workbench network and its crossbar memories, the aihwkit network that implements the same
settings; :func:`crosscheck` evaluates both over independent Monte-Carlo draws and compares the
accuracy distributions (Student-t 95 % intervals of each mean and Welch's test of their
difference).

How the settings map (aihwkit 1.1.0, ``TorchInferenceRPUConfig``, one config per layer):

- ``dac_bits = b`` ↦ ``inp_res = 1/(2^b - 2)``, ``inp_bound = 1``: aihwkit's quantiser
  (``UniformQuantize``) uses the step ``inp_res · 2 · inp_bound = 2/(2^b - 2)`` and clamps to
  ``±inp_bound``; the workbench clips to ``[-1, 1]`` and rounds to the same grid, so both give
  ``2^b - 1`` levels; ``None`` ↦ ``inp_res = -1`` (no quantisation).  Rounding is half-to-even in
  both (``torch.round``).
- ``adc_bits = b`` ↦ ``out_res = 1/(2^b - 2)``, ``out_bound = y_b``, ``y_b`` the layer's ADC full
  scale (its calibrated ``y_max`` or the fixed ``adc_bound``), in the normalised units of
  ``(x/x_b)·(W/‖W‖∞)`` that both use; ``None`` ↦ ``out_res = -1``, ``out_bound = 0`` (unbounded).
- the DAC full scale ``x_b`` (one value per layer: calibrated ``x_max`` or fixed ``dac_bound``) ↦
  noise management ``CONSTANT`` with ``nm_thres = x_b`` (inputs divided by ``x_b`` before the DAC,
  outputs multiplied back).  aihwkit's default, ``ABS_MAX``, rescales *each input vector* by its
  own abs-max instead: a per-sample full scale the workbench does not model (a DAC whose range is
  set per sample needs a digital max over every input vector before each read).
- ``‖W‖∞`` ↦ ``mapping.weight_scaling_omega = 1`` (weights scaled so that their abs-max is 1 in
  the analog tile, the inverse applied digitally to the outputs; ``weight_scaling_columnwise =
  False``: one scale per layer, as the workbench's ``‖W‖∞``).
- ``inp_noise``/``out_noise`` ↦ the same names (std in the normalised units above; one sample per
  input element / per output element and read, in both).
- ``bound_management = NONE``: aihwkit's default (``ITERATIVE``) re-reads a saturated output with
  the input halved, up to ``max_bm_factor`` times — an adaptive read the workbench's single ADC
  conversion does not model.
- biases digital in both (``mapping.digital_bias = True``).

Not comparable, refused by :func:`aihwkit_model`: conductance noise (aihwkit's weight noise in the
forward pass, ``w_noise``, is not supported by its torch tiles; its programming noise models PCM,
:mod:`workbench.analysis.drift`), row tiles (aihwkit splits a layer over tiles of
``max_input_size`` rows but scales each tile's weights by *that tile's* abs-max, where the
workbench keeps one ``‖W‖∞`` per layer), stuck-at devices and activation-buffer faults (not in
aihwkit's ``IOParameters``).  ``max_input_size``/``max_output_size`` are set to the layer's own
size so that aihwkit keeps each layer in one tile, as the workbench's untiled layer.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
from scipy import stats

from ..hardware.base import MemoryMap
from ..hardware.periphery import PERIPHERY_DEFAULTS, input_bound
from ..knobs import KnobError
from ..nn.layers import calibrate_periphery, noisy_layers
from ..rng import private_draws
from .drift import to_torch_model
from .montecarlo import mc_evaluate, summarize

#: periphery knobs with an aihwkit counterpart (:func:`io_parameters`)
COMPARABLE = ("dac_bits", "dac_range", "dac_bound", "adc_bits", "adc_range", "adc_bound", "inp_noise", "out_noise")


def _check_comparable(name: str, memory) -> None:
    if getattr(memory, "technology", None) != "memristor":
        raise KnobError(f"layer {name}: the aihwkit cross-check compares crossbar periphery; its memory is "
                        f"{getattr(memory, 'technology', memory)!r}, give every layer technology 'memristor'")
    noisy = memory.sigma_c > 0 if memory.noise == "multiplicative" else memory.sigma > 0
    if noisy:
        raise KnobError(f"layer {name}: conductance noise ({memory.noise_knob} > 0) has no aihwkit counterpart in "
                        f"its torch tiles (w_noise is not supported there); set it to 0 for the cross-check")
    for knob in ("tile_rows", "tile_cols", "stuck_min", "stuck_max", "act_p"):
        if getattr(memory, knob) != PERIPHERY_DEFAULTS[knob]:
            raise KnobError(f"layer {name}: {knob}={getattr(memory, knob)!r} is not comparable with aihwkit "
                            f"(see workbench.analysis.aihwkit_check); leave it at {PERIPHERY_DEFAULTS[knob]!r}")


def io_parameters(memory, calibration: dict[str, Any], in_size: int, out_size: int):
    """The aihwkit ``TorchInferenceRPUConfig`` of one crossbar layer implementing ``memory``'s
    converters and noise with the layer's ``calibration`` (module docstring for the mapping)."""
    from aihwkit.simulator.configs import TorchInferenceRPUConfig
    from aihwkit.simulator.parameters.enums import BoundManagementType, NoiseManagementType

    cfg = TorchInferenceRPUConfig()
    f = cfg.forward
    f.is_perfect = False
    f.inp_bound = 1.0
    f.inp_res = -1.0 if memory.dac_bits is None else 1.0 / (2 ** memory.dac_bits - 2)
    f.inp_noise = float(memory.inp_noise)
    y_b = float(memory.adc_bound) if memory.adc_range == "fixed" else float(calibration["y_max"])
    f.out_res = -1.0 if memory.adc_bits is None else 1.0 / (2 ** memory.adc_bits - 2)
    f.out_bound = 0.0 if memory.adc_bits is None else y_b
    f.out_noise = float(memory.out_noise)
    f.noise_management = NoiseManagementType.CONSTANT
    f.nm_thres = input_bound(memory, calibration)
    f.bound_management = BoundManagementType.NONE
    f.w_noise = 0.0
    cfg.mapping.weight_scaling_omega = 1.0
    cfg.mapping.weight_scaling_columnwise = False
    cfg.mapping.digital_bias = True
    cfg.mapping.max_input_size = int(in_size)
    cfg.mapping.max_output_size = int(out_size)
    return cfg


def aihwkit_model(model: nn.Module, memory_map: MemoryMap, calibration: torch.Tensor) -> nn.Module:
    """The aihwkit network (CPU, eval mode) computing ``model`` through the periphery of
    ``memory_map``: every crossbar layer an ``AnalogLinear``/``AnalogConv2d`` with
    :func:`io_parameters`, converter ranges calibrated on ``calibration`` exactly as the workbench
    calibrates them (:func:`~workbench.nn.layers.calibrate_periphery`); other modules unchanged.
    A setting without an aihwkit counterpart raises a :class:`KnobError` naming the layer and knob."""
    from aihwkit.nn import AnalogConv2d, AnalogLinear

    work = copy.deepcopy(model).cpu().eval()
    layers = noisy_layers(work)
    for name, layer in layers.items():
        _check_comparable(name, memory_map[name])
        layer.memory = memory_map[name]
    cal = calibrate_periphery(work, calibration.cpu())
    plain = to_torch_model(work)
    modules = dict(plain.named_modules())
    for name in layers:
        digital = modules[name]
        if isinstance(digital, nn.Linear):
            in_size, out_size, cls = digital.in_features, digital.out_features, AnalogLinear
        elif isinstance(digital, nn.Conv2d):
            in_size = digital.in_channels // digital.groups * math.prod(digital.kernel_size)
            out_size, cls = digital.out_channels, AnalogConv2d
        else:
            raise KnobError(f"layer {name}: {type(digital).__name__} has no aihwkit conversion here "
                            f"(Linear and Conv2d are compared)")
        analog = cls.from_digital(digital, io_parameters(memory_map[name], cal[name], in_size, out_size))
        parent_name, _, child = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else plain, child, analog)
    return plain.eval()


def aihwkit_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, draws: int, seed: int = 0,
                     batch_size: int = 1024) -> np.ndarray:
    """Accuracy of an aihwkit network over ``draws`` passes of the whole set (one draw = one pass,
    fresh periphery noise at every read), seeded from ``seed`` through torch's global generator
    (aihwkit's torch tiles draw from it; held meanwhile and restored afterwards)."""
    out = np.empty(draws)
    with private_draws(), torch.no_grad():
        torch.manual_seed(seed)
        for d in range(draws):
            correct = 0
            for i in range(0, len(x), batch_size):
                correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
            out[d] = correct / len(y)
    return out


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the Student-t interval of the mean of ``values`` at ``confidence``
    (:func:`~workbench.analysis.montecarlo.summarize`)."""
    s = summarize(values, confidence)
    return s["accuracy_mean"], s["ci95_low"], s["ci95_high"]


def crosscheck(model: nn.Module, x: torch.Tensor, y: torch.Tensor, memory_map: MemoryMap, calibration: torch.Tensor,
               draws: int = 30, seed: int = 0, confidence: float = 0.95, reference_map: MemoryMap | None = None,
               progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Accuracy of ``model`` through the periphery of ``memory_map``, by the workbench
    (:func:`~workbench.analysis.montecarlo.mc_evaluate`) and by aihwkit (:func:`aihwkit_model`),
    ``draws`` independent draws each, on ``(x, y)``; converter ranges calibrated on
    ``calibration`` in both.  ``reference_map``: the settings given to aihwkit when they should
    differ from the workbench's (a control that the comparison detects a real difference).

    Returns ``workbench``/``aihwkit`` (per-draw accuracies), ``*_mean``/``*_ci`` (Student-t
    interval at ``confidence``), ``difference_ci`` (Welch interval of the difference of means),
    ``p_value`` (Welch's two-sided t-test; NaN when both are constant) and ``agree``: the
    difference interval contains 0 — or, when neither side varies, the accuracies are equal."""
    converted = aihwkit_model(model, memory_map if reference_map is None else reference_map, calibration)
    ours = mc_evaluate(model, x, y, memory_map, draws, seed=seed, device="cpu",
                       calibration=calibration).accuracy.values.astype(float)
    if progress is not None:
        progress({"done": 1, "total": 2})
    theirs = aihwkit_accuracy(converted, x.cpu(), y.cpu(), draws, seed=seed + 1)
    if progress is not None:
        progress({"done": 2, "total": 2})
    res: dict[str, Any] = {"workbench": ours, "aihwkit": theirs, "draws": int(draws), "confidence": confidence}
    for key, v in (("workbench", ours), ("aihwkit", theirs)):
        m, lo, hi = mean_ci(v, confidence)
        res[f"{key}_mean"], res[f"{key}_ci"] = m, (lo, hi)
    diff = res["workbench_mean"] - res["aihwkit_mean"]
    se = math.sqrt(ours.var(ddof=1) / len(ours) + theirs.var(ddof=1) / len(theirs)) if draws > 1 else math.inf
    if se == 0:
        res["difference_ci"], res["p_value"] = (diff, diff), float("nan")
        res["agree"] = diff == 0
        return res
    dof = se ** 4 / ((ours.var(ddof=1) / len(ours)) ** 2 / (len(ours) - 1)
                     + (theirs.var(ddof=1) / len(theirs)) ** 2 / (len(theirs) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
    res["difference_ci"] = (diff - half, diff + half)
    res["p_value"] = float(stats.ttest_ind(ours, theirs, equal_var=False).pvalue)
    res["agree"] = bool(diff - half <= 0 <= diff + half)
    return res


__all__ = ["COMPARABLE", "aihwkit_accuracy", "aihwkit_model", "crosscheck", "io_parameters", "mean_ci"]

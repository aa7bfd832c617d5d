"""Accuracy of a network programmed on phase-change memory (PCM) as its conductances drift.

Thesis §5.4.5, Fig 5.5: a trained network is evaluated on a realistic, measured model of PCM
crossbars (IBM's Analog Hardware Acceleration Kit, aihwkit) at a series of times after
programming (up to one year), ten noisy evaluations per time.  The PCM model of aihwkit is the
statistical model of Nandakumar et al. (ICECS 2019) fitted on a million measured PCM devices, as
used by Joshi et al. 2020 [109] (*Accurate deep neural network inference using computational
phase-change memory*, Nat. Commun. 11, 2473): programming noise, conductance drift
``g(t) = g_prog·((t + t_0)/t_0)^(-ν)`` with a conductance-dependent random drift exponent ``ν``
per device, and accumulated 1/f read noise; a global drift compensation rescales each tile's
output by a factor measured once per inference time.

Everything here runs on the CPU (aihwkit's torch-based inference tiles), whatever device the
network was trained on.
"""

from __future__ import annotations

import copy
import math
import threading
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import xarray as xr

from ..knobs import KnobError, check_int, check_number, check_numbers, check_seed
from ..nn.layers import NoisyConv2d, NoisyLinear
from ..rng import private_draws
from ..training.trainer import Cancelled

#: the inference times of Fig 5.5's axis (s): one second, one hour, one day, one year
DEFAULT_TIMES = (1.0, 3600.0, 86400.0, 31536000.0)
#: bounds of the Monte-Carlo draw count
DRAWS_RANGE = (1, 1000)
#: the analog weight abs-max per tile maps to this value (and so to ``g_max``), see :func:`rpu_config`
WEIGHT_SCALING_OMEGA = 1.0

_UNITS = (("year", 365 * 86400.0, True), ("day", 86400.0, True), ("h", 3600.0, False), ("min", 60.0, False),
          ("s", 1.0, False))


def time_label(t: float) -> str:
    """A short human label for ``t`` seconds: ``"1 s"``, ``"1 h"``, ``"1 day"``, ``"2 years"``."""
    for name, size, plural in _UNITS:
        if t >= size or size == 1.0:
            v = t / size
            text = f"{v:.3g}"
            return f"{text} {name}{'s' if plural and text != '1' else ''}"
    raise AssertionError("unreachable")


def to_torch_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every noisy layer replaced by its plain torch equivalent.

    Each :class:`~workbench.nn.layers.NoisyConv2d` / :class:`~workbench.nn.layers.NoisyLinear`
    becomes an ``nn.Conv2d`` / ``nn.Linear`` with the same hyper-parameters holding the stored
    value ``q(W)`` (``quantized_weight()``; sign(W) for BinaryConnect).  A binary layer computes
    ``(op(x, q(W)) + b)·s`` with its constant output scale ``s``; that scale is folded into the
    copy as ``W' = s·q(W)``, ``b' = s·b``, so outputs are unchanged.  The memory read of the noisy
    layers is dropped: the copy computes with the ideal weights.  Other modules (batch-norm,
    activations, pooling) are copied as they are; the copy's train/eval mode is the original's.
    """
    out = copy.deepcopy(model)
    with private_draws():   # the layers' throw-away initialisation draws from torch's RNG
        _replace_noisy_layers(out)
    return out


def _replace_noisy_layers(out: nn.Module) -> None:
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, NoisyConv2d):
                plain = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                                  padding=child.padding, dilation=child.dilation, groups=child.groups,
                                  bias=child.bias is not None, padding_mode="zeros")
            elif isinstance(child, NoisyLinear):
                plain = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
            else:
                continue
            w = child.weight
            plain = plain.to(device=w.device, dtype=w.dtype)
            scale = child.out_scale if child.binary else 1.0
            with torch.no_grad():
                plain.weight.copy_(child.quantized_weight() * scale)
                if child.bias is not None:
                    plain.bias.copy_(child.bias * scale)
            plain.train(child.training)
            setattr(parent, name, plain)


def rpu_config(g_max: float = 25.0):
    """The aihwkit tile configuration of :func:`pcm_drift` (aihwkit 1.1.0 API).

    ``TorchInferenceRPUConfig`` (tiles simulated in plain torch: reproducible from torch's seed,
    no compiled RPUCuda backend) with

    - ``noise_model = PCMLikeNoiseModel(g_max=g_max)``: each tile's weights map linearly onto a
      pair of PCM devices (``SinglePairConductanceConverter``, ``g_min = 0``, the tile's abs-max
      weight at ``g_max`` µS); programming noise polynomial ``[0.26348, 1.9650, -1.1731]`` (fitted
      at 25 µS and rescaled to ``g_max``), drift reference ``t_0 = 20 s``, 1/f read noise with
      ``t_read = 250 ns``; noise, read-noise and drift scales 1;
    - ``drift_compensation = GlobalDriftCompensation()``: after drifting, one factor per tile,
      the ratio of the mean |output| of a one-hot read-out right after programming to the same
      read-out now, rescales the tile's outputs;
    - forward (MVM) periphery at aihwkit's defaults (``IOParameters()``): inputs scaled per
      sample by their abs-max (noise management ``ABS_MAX``) and quantised to 7 bits
      (``inp_res = 1/126``, ``inp_bound = 1``); outputs with additive Gaussian noise
      ``out_noise = 0.06``, quantised to 9 bits (``out_res = 1/510``) and bounded at
      ``out_bound = 12`` with iterative bound management; no weight read noise, no IR drop;
    - tiles of at most 512 × 512 (``MappingParameter.max_input_size/max_output_size``): a layer
      with more inputs or outputs is split over several tiles, each mapped and programmed on
      its own; biases stay digital (``digital_bias = True``; the SmallCNN's convolutions have
      none, only its head has one);
    - weight clipping, remapping and the training-time weight modifier off (aihwkit's inference
      defaults): the trained weights are programmed as they are, so the network evaluated is
      exactly the trained one; clipping is a training method (eq 3.18), not a deployment step.

    One deliberate departure from aihwkit's defaults: ``mapping.weight_scaling_omega = 1`` (the
    default 0 leaves weights unscaled).  Each tile's weights are scaled in digital so that their
    abs-max is 1 (the full analog range), the inverse scale being applied digitally at the
    output, as the thesis maps ``‖W‖∞`` onto the top of the conductance range (eq 3.34–3.35).
    Without it the output noise ``out_noise = 0.06`` and the output bound would act on the raw
    weight scale, which is arbitrary in a network with batch-norm (conv weights here have
    abs-max ≈ 0.1, so the periphery noise, not the PCM, would dominate); the PCM noise itself
    does not depend on this choice, its converter always maps the abs-max to ``g_max``.
    """
    from aihwkit.inference.compensation.drift import GlobalDriftCompensation
    from aihwkit.inference.noise.pcm import PCMLikeNoiseModel
    from aihwkit.simulator.configs import TorchInferenceRPUConfig

    cfg = TorchInferenceRPUConfig()
    cfg.noise_model = PCMLikeNoiseModel(g_max=float(g_max))
    cfg.drift_compensation = GlobalDriftCompensation()
    cfg.mapping.weight_scaling_omega = WEIGHT_SCALING_OMEGA
    return cfg


def _check_times(times: Sequence[float]) -> np.ndarray:
    try:
        t = np.asarray(times, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise KnobError(f"times={times!r} must be a list of inference times in seconds, each in (0, inf)") from None
    if t.size == 0:
        raise KnobError("times=[] is empty: give at least one inference time in seconds, each in (0, inf)")
    check_numbers("times", t.tolist(), 0.0, math.inf, inclusive=(False, False),
                  note="seconds from the end of programming, shown on a log axis")
    return np.unique(t)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(y)


def pcm_drift(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              times: Sequence[float] = DEFAULT_TIMES, draws: int = 10, seed: int = 0, g_max: float = 25.0,
              batch_size: int = 1024, progress: Callable[[dict], None] | None = None,
              cancel: threading.Event | None = None) -> xr.Dataset:
    """Test accuracy of ``model`` on PCM hardware at times after programming, thesis §5.4.5, Fig 5.5.

    The network (noisy layers made plain by :func:`to_torch_model`) is converted with
    ``aihwkit.nn.conversion.convert_to_analog`` under :func:`rpu_config` (PCM model of
    Nandakumar et al. 2019 / Joshi et al. 2020 [109] with global drift compensation; every
    setting is listed there).  Only conv/linear weights go to PCM; batch-norm, activations and
    pooling stay digital and exact.  For each draw the weights are programmed once (programming
    noise and each device's drift exponent ``ν`` sampled), then drifted to every time ``t`` of
    ``times`` in turn (``drift_analog_weights(t)``: drift from the programmed state plus 1/f noise
    accumulated up to ``t``, resampled at every ``t``; the periphery's output noise is sampled at
    every forward) and the accuracy on ``(x, y)`` measured.  Runs on the CPU.

    Draw ``i`` seeds torch's global generator with ``seed + i`` (aihwkit samples from it) inside
    ``torch.random.fork_rng``, so the caller's random state is untouched and a result is
    reproducible bit for bit on one machine (the global generator is held meanwhile,
    :data:`workbench.rng.GLOBAL_RNG`).

    Args:
        model: a workbench network (any device, either mode; not modified).
        x, y: test inputs ``(N, C, H, W)`` and integer labels ``(N,)``.
        times: inference times in seconds after programming, each in ``(0, inf)`` (sorted and
            deduplicated); default 1 s, 1 h, 1 day, 1 year (365 days).
        draws: Monte-Carlo programmings, in ``[1, 1000]``; the thesis averages 10.
        seed: seed of draw 0.
        g_max: PCM maximal conductance (µS), ``(0, inf)``; 25 µS is the device of [109].
        batch_size: test minibatch size, ``[1, inf)``.
        progress: called with ``{"draw": done, "draws": draws}`` after every draw.
        cancel: when set, the run stops with :class:`~workbench.training.trainer.Cancelled`.

    Returns:
        Dataset with ``accuracy(t_inference, draw)`` and its mean and sample std over draws,
        ``accuracy_mean(t_inference)``, ``accuracy_std(t_inference)``; coordinates
        ``t_inference`` (s) with a ``label`` ("1 s", "1 h", "1 day", "1 year") and ``draw``;
        attrs describing the PCM model, the aihwkit version, the clean (digital) accuracy of
        the network on ``(x, y)``, ``n_test`` and ``seed``.

    Raises:
        KnobError: a knob out of its range.
    """
    t = _check_times(times)
    check_int("draws", draws, *DRAWS_RANGE)
    check_number("g_max", g_max, 0, None, inclusive=(False, False), note="µS")
    check_int("batch_size", batch_size, 1)
    check_seed("seed", seed)
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"x and y must hold the same, non-zero number of samples (got {len(x)} and {len(y)})")

    import aihwkit
    from aihwkit.nn.conversion import convert_to_analog

    draws = int(draws)
    plain = to_torch_model(model).cpu().float().eval()
    x, y = x.detach().cpu().float(), y.detach().cpu()
    clean = _accuracy(plain, x, y, batch_size)
    config = rpu_config(g_max)
    acc = np.empty((t.size, draws))
    for d in range(draws):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"PCM drift evaluation cancelled after {d} draws")
        with private_draws():
            torch.manual_seed(seed + d)
            analog = convert_to_analog(copy.deepcopy(plain), copy.deepcopy(config), inplace=True).eval()
            analog.program_analog_weights()
            for i, ti in enumerate(t):
                analog.drift_analog_weights(float(ti))
                acc[i, d] = _accuracy(analog, x, y, batch_size)
        if progress is not None:
            progress({"draw": d + 1, "draws": draws})

    std = acc.std(axis=1, ddof=1) if draws > 1 else np.zeros(t.size)
    ds = xr.Dataset(coords={
        "t_inference": ("t_inference", t, {"long_name": "time since programming", "units": "s"}),
        "label": ("t_inference", [time_label(v) for v in t], {"long_name": "time since programming", "units": ""}),
        "draw": ("draw", np.arange(draws), {"long_name": "Monte-Carlo draw", "units": "1"}),
    })
    ds["accuracy"] = (("t_inference", "draw"), acc, {"long_name": "test accuracy on PCM", "units": "1"})
    ds["accuracy_mean"] = ("t_inference", acc.mean(axis=1), {"long_name": "mean test accuracy on PCM", "units": "1"})
    ds["accuracy_std"] = ("t_inference", std, {"long_name": "std of test accuracy on PCM", "units": "1"})
    nm = config.noise_model
    ds.attrs.update({
        "noise_model": "aihwkit PCMLikeNoiseModel (Nandakumar et al. 2019; Joshi et al. 2020 [109])",
        "g_max": float(g_max), "g_max_units": "µS", "t_0": float(nm.t_0), "t_read": float(nm.t_read),
        "drift_compensation": type(config.drift_compensation).__name__,
        "rpu_config": type(config).__name__, "weight_scaling_omega": WEIGHT_SCALING_OMEGA,
        "max_tile_size": int(config.mapping.max_input_size), "out_noise": float(config.forward.out_noise),
        "aihwkit_version": str(aihwkit.__version__), "clean_accuracy": float(clean), "n_test": int(len(y)),
        "seed": int(seed), "device": "cpu",
    })
    return ds


__all__ = ["DEFAULT_TIMES", "pcm_drift", "rpu_config", "time_label", "to_torch_model"]

"""Accuracy/power estimator of the NAS (thesis §6.3, Annex C): data collection, choice of
``n_a``/``n_p`` (eq 6.7) and the MLP that the genetic algorithm queries.

Hardware model (§6.2.1): every crossbar layer of a subnet is a :class:`MemristorMemory` with
``g_min = 0``, additive conductance noise ``ε^v`` (``sigma``, default 0.001) and
``g_u = r · g_u^d``, ``g_u^d = ‖W_l‖∞`` of the subnet's (BN-folded) weight, so that ``g = |w|``
at ``r = 1`` (eq 6.1).  Units: conductances are in µS with one weight unit ↦ 1 µS at ``r = 1``
(i.e. ``g_u^d`` in µS equals ``‖W_l‖∞``); ``g_max`` of each layer is set to ``1.5·g_u^d``, the top
of the domain of eq 6.2.  Power is the crossbar power of eq 3.39–3.44 per input sample
(arbitrary units, µS × input²), summed over layers (:func:`workbench.analysis.montecarlo.layer_power`).

Accelerator search (issue 15): with ADC genes (``ArchSpace.with_adc``) each collected state also
draws ADC bits per kept layer (uniform over the choices) and its subnet is evaluated through the
real periphery model (``MemristorMemory(adc_bits=...)``, converter ranges calibrated on training
images); with a :class:`~workbench.hardware.profile.HardwareProfile` the collection also records the
energy per inference in joules by component (:func:`workbench.analysis.montecarlo.layer_energy`) and
the latency.  The estimator then learns the crossbar ``array`` energy (``targets`` of
:class:`Estimator`); the rest of the energy and the latency are exact (:mod:`workbench.nas.cost`).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import xarray as xr
from pymoo.operators.sampling.lhs import sampling_lhs
from torch.func import functional_call

from ..analysis.montecarlo import layer_energy, layer_geometry, layer_power, read_weights
from ..datasets import DataBundle, as_tensors, load_dataset
from ..hardware.base import MemoryMap
from ..hardware.memristor import MemristorMemory, weight_inf_norm
from ..hardware.profile import HardwareProfile
from ..knobs import check_choice, check_number
from ..nn.layers import calibrate_periphery, capture_layer_inputs, noisy_layers, set_memory, weights_as_given
from ..rng import private_draws
from ..training.trainer import Cancelled
from .space import STATE_DIM, ArchSpace
from .supernet import Supernet, calibration_tensor

#: conductance noise std ε^v of ch. 6 (µS, additive, eq 3.36)
SIGMA = 0.001
#: what the estimator learns by default (Annex C): accuracy and crossbar power
TARGETS = ("accuracy", "power")
#: with the energy objective it also learns the crossbar array read energy (J), the data-dependent part
ENERGY_TARGETS = ("accuracy", "power", "array_energy_j")


# --------------------------------------------------------------------------- programming a subnet
def memory_map(model: nn.Module, layer_names: Sequence[str], g_u_rel, sigma: float = SIGMA,
               adc_bits: dict[str, int] | None = None) -> MemoryMap:
    """Per-layer memristor memories for ``model`` from a state's ``g_u`` part.

    ``g_u_rel[i]`` is layer ``layer_names[i]``'s ``g_u`` as a multiple of ``g_u^d = ‖W‖∞`` of the
    model's own weight; layers of ``model`` must all have ``r > 0``.  ``g_min = 0`` and
    ``g_max = max(1.5, r)·g_u^d`` (µS, one weight unit ↦ 1 µS), additive noise ``sigma`` µS.
    ``adc_bits``: ``{layer: bits}`` of a state's ADC genes (:meth:`ArchSpace.adc_bits`), the
    layer's ``MemristorMemory.adc_bits`` (every layer of ``model`` must have one); None: ideal ADCs."""
    rel = dict(zip(layer_names, np.asarray(g_u_rel, dtype=float)))
    overrides = {}
    for name, layer in noisy_layers(model).items():
        r = rel.get(name, 0.0)
        if not r > 0:
            raise ValueError(f"layer {name} is in the subnet but its g_u is {r}: repair the state (eq 6.4)")
        gd = float(weight_inf_norm(layer.quantized_weight()))
        periphery = {}
        if adc_bits is not None:
            if name not in adc_bits:
                raise ValueError(f"layer {name} is in the subnet but has no ADC bits: repair the state")
            periphery["adc_bits"] = int(adc_bits[name])
        overrides[name] = MemristorMemory(noise="additive", sigma=float(sigma), g_min=0.0,
                                          g_max=gd * max(1.5, r), g_u=gd * r, **periphery)
    return MemoryMap(None, overrides)


def state_memory_map(model: nn.Module, space: ArchSpace, state, sigma: float = SIGMA) -> MemoryMap:
    """:func:`memory_map` of a state: its ``g_u`` part and, with ADC genes, its ADC bits."""
    s = np.asarray(state, dtype=float)
    return memory_map(model, space.layer_names(), s[space.gu_slice], sigma,
                      space.adc_bits(s) if space.has_adc else None)


def evaluate_draw(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_acc: int, n_pow: int,
                  generator: torch.Generator, batch_size: int = 1024) -> tuple[float, float]:
    """One Monte-Carlo draw (one read of every layer, shared by all inputs): accuracy on the
    first ``n_acc`` inputs and crossbar power (eq 3.39–3.44, per sample) on the first ``n_pow``
    (NaN when ``n_pow = 0``)."""
    acc, power, _ = _draw(model, x, y, n_acc, n_pow, generator, batch_size)
    return acc, power


def _draw(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_acc: int, n_pow: int, generator: torch.Generator,
          batch_size: int = 1024, profile: HardwareProfile | None = None):
    """:func:`evaluate_draw`, plus with a ``profile`` the draw's ``({layer: {component: J}},
    {layer: s})`` on the power inputs (:func:`~workbench.analysis.montecarlo.layer_energy`, as
    ``mc_evaluate(profile=...)`` computes them; the converter ranges must be calibrated)."""
    reads = read_weights(model, generator)
    params = {f"{n}.weight": w for n, (w, _) in reads.items()}
    correct = 0
    with weights_as_given(), torch.no_grad():
        for i in range(0, n_acc, batch_size):
            j = min(i + batch_size, n_acc)
            correct += (functional_call(model, params, (x[i:j],)).argmax(1) == y[i:j]).sum().item()
    power, cost = float("nan"), None
    if n_pow > 0:
        inputs = capture_layer_inputs(model, params, x[:n_pow])[1]
        power = float(sum(layer_power(model, reads, inputs).values()))
        if profile is not None:
            cost = layer_energy(model, reads, inputs, profile, layer_geometry(model, inputs))
    return correct / max(n_acc, 1), power, cost


class SubnetCache:
    """BN-recalibrated, BN-folded subnets by architecture (a few states share one)."""

    def __init__(self, supernet: Supernet, calib: torch.Tensor, fold_bn: bool, size: int = 64):
        self.supernet, self.calib, self.fold_bn, self.size = supernet, calib, fold_bn, size
        self.cache: dict[tuple, nn.Module] = {}

    def __call__(self, state) -> nn.Module:
        key = self.supernet.space.arch_key(state)
        net = self.cache.get(key)
        if net is None:
            if len(self.cache) >= self.size:
                self.cache.pop(next(iter(self.cache)))
            net = self.supernet.subnet(state, self.calib, fold_bn=self.fold_bn)
            self.cache[key] = net
        return net


def device_of(model: nn.Module) -> torch.device:
    """Subnets are sliced on the supernet's device and evaluated there."""
    return next(model.parameters()).device


def seeded_test_split(data: DataBundle, seed: int):
    """The test split in the seeded order of :func:`collect` and :func:`minibatch_curves`."""
    x, y = as_tensors(data.test)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    return x[perm], y[perm]


def lhs_gu(space: ArchSpace, arch_part, k_g: int, rng: np.random.Generator) -> np.ndarray:
    """``k_g`` states of one architecture with ``g_u = g_u^d ∘ LHS_i`` over ``[0.5, 1.5]``
    (eq 6.6; pymoo's Latin hypercube, maximin criterion), 0 on dropped layers."""
    r = sampling_lhs(k_g, space.n_layers, xl=space.gu_low, xu=space.gu_high, random_state=rng)
    base = space.default_states(arch_part)[0]
    out = np.repeat(base[None, :], k_g, axis=0)
    out[:, space.gu_slice] = base[space.gu_slice] * r
    return out


# --------------------------------------------------------------------------- collection (§6.3.1)
def collect(supernet: Supernet, k: int = 200, k_g: int = 5, n_a: int = 7, n_p: int = 1, *, d_a: int = 1,
            data: DataBundle | None = None, minibatch: int = 32, sigma: float = SIGMA, seed: int = 0,
            calib_size: int = 256, fold_bn: bool = True, supernet_key: str | None = None,
            progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
            space: ArchSpace | None = None, profile: HardwareProfile | None = None) -> xr.Dataset:
    """Collect ``K = k·k_g`` states with their accuracy and power (§6.3.1).

    ``k`` random architectures (uniform choices) × ``k_g`` Latin-hypercube ``g_u`` vectors each
    (eq 6.6).  Each state's subnet is sliced from the supernet, its BN recalibrated on
    ``calib_size`` training images and folded; then one Monte-Carlo draw of the conductance
    noise gives the accuracy on the first ``n_a`` minibatches (of ``minibatch`` images) and the
    power on the first ``n_p`` minibatches of a seeded permutation of the test split (the same
    minibatches for every state: common random numbers rank states more reliably).  ``d_a > 1``
    averages the accuracy over ``d_a`` independent draws (power stays on the first): eq 6.7's
    ``n_a`` only covers the image sampling of one draw, while on digits the draw-to-draw spread of
    a subnet's accuracy is as large as the spread between subnets (labels of one draw correlate
    0.37 with a second draw's), so averaging draws is what makes the accuracy learnable.

    Returns a Dataset: ``state(state, var)``, ``accuracy(state)``, ``power(state)``,
    ``arch(state)`` (which of the ``k`` architectures), provenance in ``attrs``.
    ``progress`` gets ``{"done", "total"}`` per state; ``cancel`` raises :class:`Cancelled`.

    ``space``: the supernet's space with ADC genes (:meth:`ArchSpace.with_adc`): each state then
    also gets ADC bits drawn uniformly from the choices per kept layer (after every other draw),
    and is evaluated through those converters, ranges calibrated on the ``calib_size`` training
    images.  ``profile``: also record, on the power minibatches of the first draw, the energy per
    inference ``energy_j`` (J) with its crossbar part ``array_energy_j`` and the latency ``latency_s``
    (s) (:func:`~workbench.analysis.montecarlo.layer_energy`).  Without either the collection is
    the chapter-6 one, draw for draw.
    """
    if min(k, k_g, n_a, n_p, d_a, minibatch) < 1:
        raise ValueError(f"k={k}, k_g={k_g}, n_a={n_a}, n_p={n_p}, d_a={d_a}, minibatch={minibatch} must all be ≥ 1")
    space = space or supernet.space
    data = data if data is not None else load_dataset(supernet.config.dataset)
    dev = device_of(supernet)
    x, y = (t.to(dev) for t in seeded_test_split(data, seed))
    n_acc, n_pow = min(n_a * minibatch, len(y)), min(n_p * minibatch, len(y))
    calib = calibration_tensor(data, calib_size, seed).to(dev)
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=dev).manual_seed(seed)
    archs = space.sample_arch(k, rng)
    states = np.concatenate([lhs_gu(space, a, k_g, rng) for a in archs])
    if space.has_adc:        # uniform ADC bits on kept layers, drawn after the chapter-6 draws
        kept = states[:, space.gu_slice] > 0
        bits = rng.choice(np.asarray(space.adc_choices, float), size=kept.shape)
        states[:, space.adc_slice] = np.where(kept, bits, 0.0)
    subnets = SubnetCache(supernet, calib, fold_bn, size=1)
    acc, pw = np.empty(len(states)), np.empty(len(states))
    energy, array_energy, latency = (np.full(len(states), np.nan) for _ in range(3))
    start = time.perf_counter()
    calibrate = space.has_adc or profile is not None
    for i, s in enumerate(states):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"collection cancelled after {i}/{len(states)} states")
        net = subnets(s)
        set_memory(net, state_memory_map(net, space, s, sigma))
        if calibrate:        # converter ranges and the DAC full scale of the energy model
            calibrate_periphery(net, calib)
        acc[i], pw[i], cost = _draw(net, x, y, n_acc, n_pow, gen, profile=profile)
        if cost is not None:
            e, t = cost
            array_energy[i] = sum(c["array"] for c in e.values())
            energy[i] = sum(sum(c.values()) for c in e.values())
            latency[i] = sum(t.values())
        for _ in range(d_a - 1):
            acc[i] += evaluate_draw(net, x, y, n_acc, 0, gen)[0]
        acc[i] /= d_a
        if progress is not None:
            progress({"done": i + 1, "total": len(states)})
    ds = xr.Dataset(coords={"state": ("state", np.arange(len(states)), {"long_name": "collected state", "units": "1"}),
                            **space.state_coords()})
    ds["state_vector"] = (("state", STATE_DIM), states, {"long_name": "state s = (m, g_u/g_u^d)", "units": "1"})
    ds["accuracy"] = ("state", acc, {"long_name": f"accuracy on {n_a} minibatches ({d_a} draws)", "units": "1"})
    ds["power"] = ("state", pw, {"long_name": f"crossbar power on {n_p} minibatches (1 draw)", "units": "a.u."})
    ds["arch"] = ("state", np.repeat(np.arange(k), k_g), {"long_name": "architecture index", "units": "1"})
    if profile is not None:
        ds["energy_j"] = ("state", energy, {"long_name": f"energy per inference on {n_p} minibatches (1 draw)",
                                            "units": "J"})
        ds["array_energy_j"] = ("state", array_energy,
                                {"long_name": f"crossbar array read energy on {n_p} minibatches (1 draw)",
                                 "units": "J"})
        ds["latency_s"] = ("state", latency, {"long_name": "latency per inference", "units": "s"})
        ds.attrs["hardware_profile"] = json.dumps(profile.to_dict(), sort_keys=True)
    if space.has_adc:
        ds.attrs["adc_choices"] = [int(b) for b in space.adc_choices]
    ds.attrs.update(supernet_key=supernet_key or supernet.config.cache_key(), supernet_seed=int(supernet.config.seed),
                    dataset=data.name, k=int(k), k_g=int(k_g), n_a=int(n_a), n_p=int(n_p), d_a=int(d_a),
                    minibatch=int(minibatch),
                    sigma=float(sigma), noise="additive", g_min=0.0, gu_domain="[0.5, 1.5] x g_u^d",
                    gu_units="g_u / g_u^d, g_u^d = ||W_l||_inf (µS, one weight unit = 1 µS)", seed=int(seed),
                    calib_size=int(calib_size), fold_bn=int(fold_bn), seconds=time.perf_counter() - start)
    return ds


def minibatch_curves(supernet: Supernet, n_arch: int = 100, *, data: DataBundle | None = None, minibatch: int = 32,
                     sigma: float = SIGMA, seed: int = 0, random_gu: bool = True, calib_size: int = 256,
                     fold_bn: bool = True, progress: Callable[[dict], None] | None = None,
                     cancel: threading.Event | None = None) -> xr.Dataset:
    """The experiment of §6.3.2: ``n_arch`` random states, one noise draw each, accuracy and
    power on every full minibatch of the (seeded, permuted) test split.

    Returns ``accuracy_batch``/``power_batch`` ``(arch, n)`` and their running means over the first
    ``n`` minibatches, ``accuracy``/``power`` ``(arch, n)`` = ``a_{n,j}`` of eq 6.7.  ``random_gu``:
    LHS ``g_u`` per state like :func:`collect` (else ``g_u = g_u^d``)."""
    space = supernet.space
    data = data if data is not None else load_dataset(supernet.config.dataset)
    dev = device_of(supernet)
    x, y = (t.to(dev) for t in seeded_test_split(data, seed))
    N = len(y) // minibatch
    if N < 1:
        raise ValueError(f"minibatch={minibatch} is larger than the test split ({len(y)})")
    calib = calibration_tensor(data, calib_size, seed).to(dev)
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=dev).manual_seed(seed)
    archs = space.sample_arch(n_arch, rng)
    states = (np.concatenate([lhs_gu(space, a, 1, rng) for a in archs]) if random_gu else space.default_states(archs))
    names = space.layer_names()
    acc, pw = np.empty((n_arch, N)), np.empty((n_arch, N))
    for j, s in enumerate(states):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"curves cancelled after {j}/{n_arch} architectures")
        net = supernet.subnet(s, calib, fold_bn=fold_bn)
        set_memory(net, memory_map(net, names, s[space.gu_slice], sigma))
        reads = read_weights(net, gen)
        params = {f"{n}.weight": w for n, (w, _) in reads.items()}
        for b in range(N):
            xb, yb = x[b * minibatch:(b + 1) * minibatch], y[b * minibatch:(b + 1) * minibatch]
            out, inputs = capture_layer_inputs(net, params, xb)
            acc[j, b] = (out.argmax(1) == yb).float().mean().item()
            pw[j, b] = sum(layer_power(net, reads, inputs).values())
        if progress is not None:
            progress({"done": j + 1, "total": n_arch})
    n = np.arange(1, N + 1)
    ds = xr.Dataset(coords={"arch": ("arch", np.arange(n_arch), {"long_name": "architecture", "units": "1"}),
                            "n": ("n", n, {"long_name": "number of minibatches", "units": "1"}),
                            **space.state_coords()})
    ds["state_vector"] = (("arch", STATE_DIM), states, {"long_name": "state s = (m, g_u/g_u^d)", "units": "1"})
    ds["accuracy_batch"] = (("arch", "n"), acc, {"long_name": "accuracy on minibatch n", "units": "1"})
    ds["power_batch"] = (("arch", "n"), pw, {"long_name": "crossbar power on minibatch n", "units": "a.u."})
    ds["accuracy"] = (("arch", "n"), np.cumsum(acc, 1) / n,
                      {"long_name": "mean accuracy over the first n minibatches", "units": "1"})
    ds["power"] = (("arch", "n"), np.cumsum(pw, 1) / n,
                   {"long_name": "mean power over the first n minibatches", "units": "a.u."})
    ds.attrs.update(minibatch=int(minibatch), sigma=float(sigma), seed=int(seed), random_gu=int(random_gu),
                    supernet_key=supernet.config.cache_key(), dataset=data.name)
    return ds


# --------------------------------------------------------------------------- n_a, n_p (eq 6.7)
def _prob_correct(a: np.ndarray, pairs: np.ndarray, n: int) -> float:
    return float(np.mean(a[pairs[:, 0], n - 1] > a[pairs[:, 1], n - 1]))


def select_n(curves, delta, epsilon: float = 0.05, *, n_pairs: int = 4000, seed: int = 0,
             envelope: str = "upper") -> xr.Dataset:
    """Smallest number of minibatches ``n`` ranking two networks correctly, eq 6.7 (§6.3.2).

    ``curves[j, n-1] = a_{n,j}``: mean metric (accuracy or power) of network ``j`` over its first
    ``n`` minibatches, ``n = 1..N``.  For each tolerance ``δ``, pairs ``(j, l)`` with
    ``a_{N,j} > a_{N,l} + δ`` are drawn at random (``n_pairs``, seeded; all of them when fewer)
    and ``Pr(A_j(n) > A_l(n))`` is their fraction still ranked right at ``n``.  Bisection on
    ``n ∈ [1, N]`` finds the smallest ``n`` with ``Pr > 1 − ε`` (``Pr(N) = 1`` by construction);
    the results are made monotone in ``δ`` by their upper envelope ``n(δ) = max_{δ' ≥ δ} n_bisect(δ')``
    (``envelope="upper"``, the default).  The thesis (``envelope="front"``) interpolates the Pareto
    front of ``(δ, n)`` linearly; that lower envelope reports fewer minibatches than the bisection
    found at that ``δ`` (e.g. 4.75 where 5 are needed), so the default is the smallest monotone
    curve that never falls below ``n_bisect``.

    Returns a Dataset over ``delta``: ``n_bisect`` (raw, NaN where no pair is ``δ`` apart),
    ``n`` (monotone non-increasing; upper: ``≥ n_bisect``, whole minibatches), ``pairs``
    (eligible pairs), ``prob`` (at ``n_bisect``)."""
    a = np.asarray(curves, dtype=float)
    if a.ndim != 2 or a.shape[1] < 1:
        raise ValueError("curves must be 2-D (network, n)")
    deltas = np.atleast_1d(np.asarray(delta, dtype=float))
    check_number("epsilon", epsilon, 0.0, 1.0, inclusive=(False, False))
    check_choice("envelope", envelope, ["upper", "front"])
    N = a.shape[1]
    final = a[:, -1]
    rng = np.random.default_rng(seed)
    raw, count, prob = np.full(len(deltas), np.nan), np.zeros(len(deltas), int), np.full(len(deltas), np.nan)
    for i, d in enumerate(deltas):
        pairs = np.argwhere(final[:, None] > final[None, :] + d)
        count[i] = len(pairs)
        if len(pairs) == 0:
            continue
        if len(pairs) > n_pairs:
            pairs = pairs[rng.choice(len(pairs), n_pairs, replace=False)]
        ok = lambda n, pairs=pairs: _prob_correct(a, pairs, n) > 1 - epsilon  # noqa: E731
        if ok(1):
            hi = 1
        else:
            lo, hi = 1, N           # invariant: not ok(lo), ok(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if ok(mid):
                    hi = mid
                else:
                    lo = mid
        raw[i], prob[i] = hi, _prob_correct(a, pairs, hi)
    order = np.argsort(deltas, kind="stable")
    mono = np.empty(len(deltas))
    if envelope == "upper":
        mono[order] = np.fmax.accumulate(raw[order][::-1])[::-1]     # NaN (no pair) ignored by fmax
    elif (valid := order[~np.isnan(raw[order])]).size:
        front = valid[raw[valid] < np.fmin.accumulate(np.r_[np.inf, raw[valid]])[:-1]]   # Pareto front, both minimised
        mono = np.interp(deltas, deltas[front], raw[front])
    mono[count == 0] = np.nan            # no pair that far apart: no n to report
    ds = xr.Dataset(coords={"delta": ("delta", deltas, {"long_name": "tolerance δ", "units": "metric units"})})
    ds["n_bisect"] = ("delta", raw, {"long_name": "smallest n by bisection (eq 6.7)", "units": "minibatches"})
    ds["n"] = ("delta", mono, {"long_name": "smallest n, monotone in δ", "units": "minibatches"})
    ds["pairs"] = ("delta", count, {"long_name": "pairs δ apart at N", "units": "1"})
    ds["prob"] = ("delta", prob, {"long_name": "Pr(ranked right) at n_bisect", "units": "1"})
    ds.attrs.update(epsilon=float(epsilon), N=int(N), n_pairs=int(n_pairs), seed=int(seed), envelope=envelope)
    return ds


# --------------------------------------------------------------------------- the estimator (Annex C)
def r2(y_true, y_pred) -> float:
    """Coefficient of determination ``1 − SS_res / SS_tot``."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    ss_res = np.sum((y_true - y_pred) ** 2)
    ss_tot = np.sum((y_true - y_true.mean()) ** 2)
    return float(1 - ss_res / ss_tot) if ss_tot > 0 else float("nan")


class Estimator:
    """The MLP of Annex C predicting ``(accuracy, power)`` of a state.

    Input: the state's features (one-hot architecture choices, expand choices of dropped blocks
    zeroed, then ``g_u/g_u^d`` per layer, 0 where dropped; with ADC genes, then one-hot ADC bits per
    layer, all 0 where dropped).  Network: three linear layers of
    ``hidden = 400`` units with ReLU, then a linear head of 2 outputs (accuracy, power scaled to
    [0, 1] by eq C.1 with the training set's min/max).  ``targets``: what it learns, one output each
    (default :data:`TARGETS`; :data:`ENERGY_TARGETS` adds the crossbar array energy in J, the part of
    the energy per inference that depends on the data, for the energy objective).
    ``scale_accuracy`` (default on) applies eq C.1 to the accuracy as well: Annex C leaves it in its
    natural [0, 1] domain, which on ImageNet it spans, but on a narrow spread (digits subnets:
    0.92–0.99) the power term would dominate the loss — scaling both restores the "equal weight" Annex C
    asks for. Held-out R² of accuracy on digits (1 200 states, 3 seeds), scaled vs Annex C: 0.20 vs 0.11
    with one-draw labels on 7 minibatches, 0.67 vs 0.28 with labels averaged over 8 draws on the whole
    split (power 0.94 either way). MSE loss (eq C.2), SGD ``lr = 0.01``, momentum 0.9,
    :class:`~torch.optim.lr_scheduler.ReduceLROnPlateau` (PyTorch defaults: ×0.1 after 10 epochs without
    improvement of the epoch's training loss), minibatches of 256, 20 % of the states held out (random
    split, seeded) for the reported R².
    """

    def __init__(self, space: ArchSpace, hidden: int = 400, epochs: int = 200, lr: float = 0.01, momentum: float = 0.9,
                 batch_size: int = 256, holdout: float = 0.2, seed: int = 0, scale_accuracy: bool = True,
                 targets: Sequence[str] = TARGETS):
        check_number("holdout", holdout, 0.0, 1.0, inclusive=(False, False))
        targets = tuple(targets)
        if targets[:2] != TARGETS or len(set(targets)) != len(targets):
            raise ValueError(f"targets={targets!r} must start with {TARGETS} (then other collected quantities)")
        self.space, self.hidden, self.epochs, self.lr, self.momentum = space, hidden, epochs, lr, momentum
        self.batch_size, self.holdout, self.seed, self.scale_accuracy = batch_size, holdout, seed, scale_accuracy
        self.targets = targets
        self.net: nn.Module | None = None
        self.y_min = self.y_max = None          # per output (accuracy, power, ...), eq C.1
        self.r2_: dict[str, float] = {}
        self.history: list[float] = []

    # ----- features
    def features(self, states) -> np.ndarray:
        sp = self.space
        X = np.atleast_2d(np.asarray(states, dtype=float))
        A = np.rint(X[:, : sp.n_arch]).astype(int)
        n = len(X)
        D = A[:, sp.depth_slice]
        parts = [(D[..., None] == np.asarray(sp.depth_choices)).reshape(n, -1)]
        W = A[:, sp.width_slice]
        parts.append((W[..., None] == np.arange(len(sp.width_choices))).reshape(n, -1))
        E = A[:, sp.expand_slice].reshape(n, sp.n_stages, sp.max_depth)
        kept = np.arange(sp.max_depth)[None, None, :] < D[:, :, None]
        oh = (E[..., None] == np.arange(len(sp.expand_choices))) & kept[..., None]
        parts.append(oh.reshape(n, -1))
        parts.append(X[:, sp.gu_slice])
        if sp.has_adc:          # one-hot ADC bits per layer (all 0 on a dropped layer, whose bits are 0)
            b = np.rint(X[:, sp.adc_slice])
            parts.append((b[..., None] == np.asarray(sp.adc_choices, float)).reshape(n, -1))
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _build(self, n_in: int) -> nn.Module:
        h = self.hidden
        return nn.Sequential(nn.Linear(n_in, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                             nn.Linear(h, len(self.targets)))

    # ----- training
    def fit(self, ds: xr.Dataset | None = None, *, states=None, accuracy=None, power=None,
            progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
            **more) -> dict[str, float]:
        """Train on a :func:`collect` Dataset (or arrays: ``states``, ``accuracy``, ``power`` and one
        keyword per further target); returns the held-out R² of each target
        (``{"accuracy": .., "power": ..}``, also in ``self.r2_``)."""
        if ds is not None:
            missing = [t for t in self.targets if t not in ds]
            if missing:
                raise ValueError(f"the collected Dataset has no {', '.join(missing)}: collect with a hardware profile")
            states, accuracy, power = ds["state_vector"].values, ds["accuracy"].values, ds["power"].values
            more = {t: ds[t].values for t in self.targets[2:]}
        S = np.asarray(states, float)
        acc, pw = np.asarray(accuracy, float), np.asarray(power, float)
        extra = [np.asarray(more[t], float) for t in self.targets[2:]]
        n = len(S)
        if n < 5:
            raise ValueError(f"need at least 5 states to fit the estimator, got {n}")
        rng = np.random.default_rng(self.seed)
        perm = rng.permutation(n)
        n_ho = max(1, int(round(self.holdout * n)))
        self.holdout_index_, self.train_index_ = np.sort(perm[:n_ho]), np.sort(perm[n_ho:])
        tr = self.train_index_
        Y = np.stack([acc, pw, *extra], 1)
        self.y_min, self.y_max = Y[tr].min(0), Y[tr].max(0)
        if not self.scale_accuracy:
            self.y_min[0], self.y_max[0] = 0.0, 1.0
        feats = torch.from_numpy(self.features(S))
        target = torch.from_numpy(self._scale(Y).astype(np.float32))
        with private_draws():
            torch.manual_seed(self.seed)
            self.net = self._build(feats.shape[1])
        opt = torch.optim.SGD(self.net.parameters(), lr=self.lr, momentum=self.momentum)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
        gen = torch.Generator().manual_seed(self.seed)
        xt, yt = feats[tr], target[tr]
        self.history = []
        for epoch in range(self.epochs):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"estimator training cancelled at epoch {epoch + 1}/{self.epochs}")
            self.net.train()
            order = torch.randperm(len(tr), generator=gen)
            tot = 0.0
            for i in range(0, len(tr), self.batch_size):
                j = order[i:i + self.batch_size]
                loss = torch.nn.functional.mse_loss(self.net(xt[j]), yt[j], reduction="sum") / len(j)  # eq C.2
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += loss.item() * len(j)
            tot /= len(tr)
            sched.step(tot)
            self.history.append(tot)
            if progress is not None:
                progress({"epoch": epoch + 1, "epochs": self.epochs, "loss": tot})
        ho = self.holdout_index_
        pred = self.predict(S[ho])
        self.r2_ = {t: r2(Y[ho, j], pred[j]) for j, t in enumerate(self.targets)}
        return dict(self.r2_)

    def _span(self):
        span = self.y_max - self.y_min
        return np.where(span > 0, span, 1.0)

    def _scale(self, Y):
        return (np.asarray(Y, float) - self.y_min) / self._span()        # eq C.1

    def _unscale(self, Q):
        return np.asarray(Q, float) * self._span() + self.y_min

    @torch.no_grad()
    def predict(self, states) -> tuple[np.ndarray, ...]:
        """Predicted ``(accuracy, power)`` of each state, in the collected units (1, a.u.), then
        the further :attr:`targets` (e.g. the array energy in J)."""
        if self.net is None:
            raise RuntimeError("the estimator is not fitted: call fit() first")
        self.net.eval()
        out = self._unscale(self.net(torch.from_numpy(self.features(states))).numpy().astype(float))
        return tuple(out[:, j] for j in range(out.shape[1]))

    # ----- persistence
    def state_dict(self) -> dict:
        return {"hidden": self.hidden, "epochs": self.epochs, "lr": self.lr, "momentum": self.momentum,
                "batch_size": self.batch_size, "holdout": self.holdout, "seed": self.seed,
                "scale_accuracy": self.scale_accuracy, "targets": list(self.targets),
                "y_min": None if self.y_min is None else [float(v) for v in self.y_min],
                "y_max": None if self.y_max is None else [float(v) for v in self.y_max],
                "r2": dict(self.r2_), "history": list(self.history),
                "net": None if self.net is None else self.net.state_dict()}

    @classmethod
    def from_state_dict(cls, space: ArchSpace, d: dict) -> "Estimator":
        est = cls(space, d["hidden"], d["epochs"], d["lr"], d["momentum"], d["batch_size"], d["holdout"], d["seed"],
                  d["scale_accuracy"], d.get("targets", TARGETS))
        est.y_min = None if d["y_min"] is None else np.asarray(d["y_min"], float)
        est.y_max = None if d["y_max"] is None else np.asarray(d["y_max"], float)
        est.r2_, est.history = dict(d["r2"]), list(d["history"])
        if d["net"] is not None:
            est.net = est._build(est.features(np.zeros((1, space.n_var))).shape[1])
            est.net.load_state_dict(d["net"])
        return est

"""Monte-Carlo evaluation of a network whose weights are read through unreliable memories.

One *draw* is one read of every layer's weights (fresh noise), used for the whole test set.
Accuracy under noise is reported as mean, std and the 95 % Student-t confidence interval of the
mean; optionally draws continue until that interval is narrower than a target (thesis §4.4).
"""

from __future__ import annotations

import json
import math
import threading
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import xarray as xr
from scipy import stats
from torch.func import functional_call
from torch.utils.data import DataLoader, Dataset

from ..device import resolve_device
from ..hardware import Memory, MemoryMap
from ..hardware.memristor import crossbar_power
from ..hardware.periphery import input_bound
from ..hardware.profile import COMPONENTS, HardwareProfile, layer_cost
from ..hardware.sram import normalised_energy
from ..knobs import KnobError, check_choice, check_int, check_number, check_probability, check_seed
from ..nn import capture_layer_inputs, layer_param_counts, noisy_layers, set_memory, weights_as_given
from ..nn.layers import calibrate_periphery, forward_generator
from ..training.trainer import Cancelled


def check_draw_args(draws, seed, target_ci_width=None) -> int:
    """Refuse bad Monte-Carlo arguments (a :class:`KnobError` naming each) before any work is
    done; returns ``draws`` as an int.  Callers that train first check here, not after training."""
    draws = check_int("draws", draws, 1, 100_000)
    if target_ci_width is not None:
        check_probability("target_ci_width", target_ci_width, open_low=True)
    check_seed("seed", seed)
    return draws


def summarize(acc: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample std and Student-t confidence interval of the mean of ``acc``.

    ``acc`` is flattened.  No draw (empty): every statistic is NaN and ``draws`` is 0.  A NaN
    draw (a cell not computed) makes every statistic NaN: never a number that ignores it.
    One draw: its value, std 0 and an infinite interval.  ``confidence`` must be in (0, 1).
    """
    check_number("confidence", confidence, 0.0, 1.0, inclusive=(False, False))
    try:
        acc = np.asarray(acc, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"acc={acc!r} must be an array of accuracies") from None
    n = acc.size
    if n == 0 or np.isnan(acc).any():
        nan = float("nan")
        return {"accuracy_mean": nan, "accuracy_std": nan, "ci95_low": nan, "ci95_high": nan, "draws": n}
    constant = np.ptp(acc) == 0
    # every draw equal (a noise-free memory): the mean is that value exactly, not a rounded sum
    mean = float(acc[0]) if constant else float(acc.mean())
    std = float(acc.std(ddof=1)) if n > 1 and not constant else 0.0
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)) if n > 1 else float("inf")
    if n > 1 and std == 0:
        half = 0.0
    return {"accuracy_mean": mean, "accuracy_std": std, "ci95_low": mean - half, "ci95_high": mean + half, "draws": n}


def read_weights(model: nn.Module, generator: torch.Generator | None):
    """One draw: read every noisy layer's (quantised) weight through its memory."""
    out = {}
    for name, layer in noisy_layers(model).items():
        with torch.no_grad():
            w, r = layer.read_weight(generator)
        out[name] = (w.detach(), r)
    return out


def _params(reads) -> dict[str, torch.Tensor]:
    return {f"{name}.weight": w for name, (w, _) in reads.items()}


def _forward_gens(seeds, dev):
    """One generator per draw for the periphery's forward-pass noise (``None`` entries when the
    memories draw none: nothing is then drawn and today's streams are untouched)."""
    return [None if s is None else torch.Generator(device=dev).manual_seed(s) for s in seeds]


def _correct_loop(model, reads_list, x, y, batch_size, seeds=None):
    res = []
    gens = _forward_gens(seeds or [None] * len(reads_list), x.device)
    with weights_as_given():
        for reads, g in zip(reads_list, gens):
            params = _params(reads)
            c = 0
            with forward_generator(g):
                for i in range(0, len(x), batch_size):
                    out = functional_call(model, params, (x[i:i + batch_size],))
                    c += (out.argmax(1) == y[i:i + batch_size]).sum().item()
            res.append(c)
    return res


def _correct_streamed(model, reads_list, test, dev, seeds=None):
    """Correct predictions of each draw of ``reads_list`` on the streamed ``test`` (an iterable of
    ``(x, y)`` batches, read once for the whole chunk of draws: each batch is scored under every
    draw before the next is fetched).  Counts are integers, so the order of the sum does not change
    them: equal to :func:`_correct_loop` when the batches are the same slices."""
    res = [0] * len(reads_list)
    params = [_params(reads) for reads in reads_list]
    gens = _forward_gens(seeds or [None] * len(reads_list), dev)
    with weights_as_given():
        for xb, yb in test:
            xb, yb = xb.to(dev), yb.to(dev)
            for k, p in enumerate(params):
                with forward_generator(gens[k]):
                    res[k] += (functional_call(model, p, (xb,)).argmax(1) == yb).sum().item()
    return res


def _correct_vmap(model, reads_list, x, y, batch_size):
    names = list(_params(reads_list[0]))
    stacked = {k: torch.stack([_params(r)[k] for r in reads_list]) for k in names}

    def f(params, xb):
        return functional_call(model, params, (xb,))

    batched = torch.vmap(f, in_dims=(0, None))
    correct = torch.zeros(len(reads_list), dtype=torch.long, device=x.device)
    with weights_as_given():
        for i in range(0, len(x), batch_size):
            correct += (batched(stacked, x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum(-1)
    return correct.tolist()


def layer_power(model: nn.Module, reads, inputs) -> dict[str, float]:
    """Crossbar power of each memristor layer for one draw, eq 3.41–3.44, per input sample
    (the minibatch sum divided by its size; 0 for layers in other memories)."""
    out = {}
    for name, layer in noisy_layers(model).items():
        _, r = reads[name]
        if layer.memory.technology != "memristor":
            out[name] = 0.0
            continue
        if r is None:  # noise-free crossbar
            gp, gm, _ = layer.memory.program(layer.quantized_weight().detach())
        else:
            gp, gm = r.extra["g_plus"], r.extra["g_minus"]
        x = inputs[name]
        out[name] = float(crossbar_power(layer.crossbar_op(), x, gp, gm)) / len(x)
    return out


def draw_power(model: nn.Module, reads, x: torch.Tensor) -> dict[str, float]:
    """:func:`layer_power` of the draw ``reads`` on the inputs ``x`` (each layer's input taken from
    the noisy forward pass of that draw)."""
    return layer_power(model, reads, capture_layer_inputs(model, _params(reads), x)[1])


def layer_geometry(model: nn.Module, inputs) -> dict[str, dict[str, int]]:
    """Per layer: crossbar ``rows`` (fan-in of one output), ``cols`` (outputs), output ``positions``
    and input activations (``inputs``) per sample, stored ``weights``; from each layer's input."""
    out = {}
    for name, layer in noisy_layers(model).items():
        x = inputs[name][:1]
        w = layer.quantized_weight().detach()
        with torch.no_grad():
            y = layer.crossbar_op()(x, w)
        out[name] = {"rows": w[0].numel(), "cols": w.shape[0], "positions": y.numel() // w.shape[0],
                     "inputs": x.numel(), "weights": w.numel()}
    return out


def layer_energy(model: nn.Module, reads, inputs, profile: HardwareProfile,
                 geometry: dict[str, dict[str, int]]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Energy per inference (J) by layer and component (:data:`workbench.hardware.profile.COMPONENTS`)
    and latency (s) by layer, for the draw ``reads`` (:func:`workbench.hardware.profile.layer_cost`).

    A crossbar layer's array energy is the power model of eq 3.41–3.44 on its inputs of this draw in
    volts (``x / x_b · V_read``, ``x_b`` its DAC full scale) with the draw's noisy conductances, times
    ``read_time_s``; ``inputs``: each layer's input on the power minibatch."""
    energy, latency = {}, {}
    for name, layer in noisy_layers(model).items():
        mem = layer.memory
        power_uw = 0.0
        if mem.technology == "memristor":
            _, r = reads[name]
            if r is None:  # noise-free crossbar
                gp, gm, _ = mem.program(layer.quantized_weight().detach())
            else:
                gp, gm = r.extra["g_plus"], r.extra["g_minus"]
            x = inputs[name]
            volts = x * (profile.read_voltage_v / input_bound(mem, layer.periphery_calibration))
            power_uw = float(crossbar_power(layer.crossbar_op(), volts, gp, gm)) / len(x)
        energy[name], latency[name] = layer_cost(profile, mem, array_power_uw=power_uw, **geometry[name])
    return energy, latency


def memory_energy_of(model: nn.Module, memory_map: MemoryMap) -> float:
    """Normalised memory energy (eq 3.30 ÷ reliable 16-bit reference) of the SRAM-held layers.

    Layers in a non-SRAM memory count as reliable 16-bit storage (η = 1)."""
    counts = layer_param_counts(model)
    total = 0.0
    for name, n in counts.items():
        mem = memory_map[name]
        if mem.technology == "sram":
            total += normalised_energy([mem.p], [n], mem.bits, mem.a, reference_counts=[1]) * 16
        else:
            total += 16 * n
    return total / (16 * sum(counts.values()))


def is_streamed(x) -> bool:
    """Whether ``x`` is a test set :func:`mc_evaluate` streams (a Dataset or DataLoader) rather than
    a tensor of inputs."""
    return isinstance(x, (Dataset, DataLoader))


def test_loader(test: Dataset | DataLoader, batch_size: int) -> DataLoader:
    """``test`` as a DataLoader of ``batch_size`` consecutive samples, in order (a DataLoader is
    used as given).  Same batches as the tensor slices ``x[i:i + batch_size]``, hence the same
    per-draw counts."""
    if isinstance(test, DataLoader):
        return test
    return DataLoader(test, batch_size=batch_size, shuffle=False, num_workers=0)


def test_length(test: Dataset | DataLoader) -> int:
    """Number of samples in the streamed ``test``."""
    ds = test.dataset if isinstance(test, DataLoader) else test
    try:
        return len(ds)
    except TypeError:
        raise KnobError("test set: a streamed test set must be a map-style Dataset with a length") from None


def first_samples(test: Dataset | DataLoader, n: int) -> torch.Tensor:
    """The inputs of the first ``n`` samples of ``test`` (the power minibatch), read item by item."""
    ds = test.dataset if isinstance(test, DataLoader) else test
    return torch.stack([torch.as_tensor(ds[i][0]) for i in range(min(n, len(ds)))])


def mc_evaluate(model: nn.Module, x: torch.Tensor | Dataset | DataLoader, y: torch.Tensor | None,
                memory: MemoryMap | Memory,
                draws: int = 30, *, seed: int = 0, device: str | torch.device = "auto",
                target_ci_width: float | None = None, max_draws: int = 1000, chunk: int = 16,
                mode: str = "auto", batch_size: int = 2048, power_batch: int = 128,
                progress: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
                profile: HardwareProfile | None = None, calibration: torch.Tensor | None = None) -> xr.Dataset:
    """Accuracy of ``model`` on ``(x, y)`` over Monte-Carlo draws of the memory noise.

    ``x`` may instead be a streamed test set, a map-style ``Dataset`` of ``(input, label)`` items
    or a ``DataLoader`` of such batches, with ``y=None``: it is never materialised; each chunk of
    ``chunk`` draws reads it once, batch by batch (``batch_size`` consecutive samples per batch
    for a Dataset), scoring every draw of the chunk on a batch before fetching the next.  Peak
    memory is then the model, ``chunk`` weight reads and one batch.  With the same seed the
    per-draw accuracies equal the tensor path's exactly (integer counts over the same samples).

    Returns a Dataset with ``accuracy(draw)`` and, for memristor layers, ``power(draw)`` and
    ``layer_power(draw, layer)`` (eq 3.39–3.44 on a minibatch of ``power_batch`` inputs, as in
    the thesis, with the activations of that draw's noisy forward pass); ``energy`` (eq 3.30,
    normalised); summary statistics in ``attrs``.  The model's own memories (and converter
    calibrations) are restored after.
    ``target_ci_width``: keep drawing (in chunks) until ``ci95_high - ci95_low ≤`` it or
    ``max_draws``.  ``mode``: ``"vectorised"`` (``torch.vmap`` over draws), ``"loop"`` (one draw
    at a time) or ``"auto"`` (whichever ``benchmarks/bench_montecarlo.py`` measured faster on the
    device type: the loop on CPU, vmap on CUDA).
    Draw ``i`` depends only on ``seed``, so results are reproducible bit for bit on one device.

    Accelerator (:mod:`workbench.hardware.periphery`, :mod:`workbench.hardware.profile`): crossbar
    memories with converters or tiles have their ranges calibrated first on ``calibration`` (inputs,
    e.g. training samples; default: the power minibatch of the test set).  Periphery noise of the
    forward pass (input/output noise, activation-buffer flips) draws from a generator seeded per
    draw from the draw's generator (and forces the loop mode).  With a ``profile``
    (:class:`~workbench.hardware.profile.HardwareProfile`) the Dataset gains ``energy_j(draw)`` (J per
    inference), ``layer_energy_j(draw, layer, component)``, ``latency_s`` and
    ``layer_latency_s(layer)``, computed on the power minibatch where the power is, and the profile
    in ``attrs["hardware_profile"]`` (JSON).
    """
    draws = check_draw_args(draws, seed, target_ci_width)
    if profile is not None and not isinstance(profile, HardwareProfile):
        raise KnobError(f"profile={profile!r} must be a HardwareProfile (workbench.hardware.make_profile)")
    check_choice("mode", mode, ("auto", "vectorised", "loop"))
    max_draws = check_int("max_draws", max_draws, 1, 100_000)
    chunk = check_int("chunk", chunk, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    power_batch = check_int("power_batch", power_batch, 1)
    if memory is None or isinstance(memory, Memory):
        memory = MemoryMap(memory)
    elif not isinstance(memory, MemoryMap):
        raise KnobError(f"memory={memory!r} must be a Memory or a MemoryMap (build one with memory_from_dict "
                        "or memory_map_from_dict)")
    if is_streamed(x):
        if y is not None:
            raise KnobError("y: pass y=None with a streamed test set (a Dataset or DataLoader yields its labels)")
        if test_length(x) == 0:
            raise ValueError("the streamed test set holds no sample")
    elif y is None or len(x) != len(y) or len(y) == 0:
        raise ValueError(f"x and y must hold the same, non-zero number of samples (got {len(x)} and "
                         f"{None if y is None else len(y)})")
    dev = resolve_device(device)
    mmap = memory
    previous = {name: (layer.memory, layer.periphery_calibration) for name, layer in noisy_layers(model).items()}
    model = set_memory(model.to(dev).eval(), mmap)
    try:
        return _mc_evaluate(model, x, y, mmap, draws, seed, dev, target_ci_width, max_draws, chunk, mode, batch_size,
                            power_batch, progress, cancel, profile, calibration)
    finally:
        for name, layer in noisy_layers(model).items():      # memories and converter ranges as they were
            layer.memory, layer.periphery_calibration = previous[name]


def _mc_evaluate(model, x, y, mmap, draws, seed, dev, target_ci_width, max_draws, chunk, mode, batch_size, power_batch,
                 progress, cancel, profile=None, calibration=None) -> xr.Dataset:
    gen = torch.Generator(device=dev).manual_seed(seed)
    layers = noisy_layers(model)
    noisy = any(layer.memory.is_noisy for layer in layers.values())
    has_crossbar = any(layer.memory.technology == "memristor" for layer in layers.values())
    periphery = any(getattr(layer.memory, "periphery_active", False) for layer in layers.values())
    fwd_random = any(getattr(layer.memory, "forward_random", False) for layer in layers.values())
    streamed = is_streamed(x)
    if streamed:
        test = test_loader(x, batch_size)
        n_test = test_length(x)
        # the power minibatch (read only when a crossbar or the energy needs it): the set's first samples
        xp = first_samples(x, power_batch).to(dev) if has_crossbar or profile is not None else None
    else:
        x, y = x.to(dev), y.to(dev)
        n_test = len(y)
        xp = x[:power_batch]
    if periphery or (profile is not None and has_crossbar):
        # converter ranges (and the DAC full scale of the energy model) from noise-free weights
        calibrate_periphery(model, (xp if calibration is None else calibration).to(dev))

    def count(reads_list, seeds):
        if streamed:          # the set is read once per chunk of draws, batch by batch
            return _correct_streamed(model, reads_list, test, dev, seeds)
        if use_vmap and len(reads_list) > 1:
            return _correct_vmap(model, reads_list, x, y, batch_size)
        return _correct_loop(model, reads_list, x, y, batch_size, seeds)

    def draw():
        """One draw's reads and the seed of its forward-pass noise (``None`` when none is drawn)."""
        reads = read_weights(model, gen)
        fseed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item()) if fwd_random else None
        return reads, fseed

    costs = []

    def measure(reads, fseed):
        """Power (and energy, latency with a profile) of one draw on the power minibatch."""
        g = _forward_gens([fseed], dev)[0]
        with forward_generator(g):
            inputs = capture_layer_inputs(model, _params(reads), xp)[1]
        if profile is not None:
            if not costs:
                costs.append(layer_geometry(model, inputs))
            costs.append(layer_energy(model, reads, inputs, profile, costs[0]))
        return layer_power(model, reads, inputs)

    # measured by benchmarks/bench_montecarlo.py: one-draw-at-a-time wins on CPU, vmap on CUDA; the
    # periphery's forward noise needs one generator per draw, hence the loop
    use_vmap = (mode == "vectorised" or (mode == "auto" and dev.type == "cuda")) and not fwd_random
    limit = max(max_draws, draws) if target_ci_width is not None else draws   # draws is the minimum
    correct, powers = [], []
    total = draws if not noisy else limit
    while len(correct) < total:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"evaluation cancelled after {len(correct)} draws")
        n = min(chunk, total - len(correct))
        if len(correct) < draws:       # reach the minimum exactly before testing the CI width
            n = min(n, draws - len(correct))
        if not noisy:  # an ideal memory: one pass is every draw
            reads, fseed = draw()
            c = count([reads], [fseed])[0]
            correct += [c] * (total - len(correct))
            if has_crossbar or profile is not None:
                powers += [measure(reads, fseed)] * (total - len(powers))
                if profile is not None:          # [geometry, the one draw's cost] -> every draw
                    costs[1:] = costs[1:] * total
            break
        drawn = [draw() for _ in range(n)]
        correct += count([r for r, _ in drawn], [s for _, s in drawn])
        if has_crossbar or profile is not None:
            powers += [measure(r, s) for r, s in drawn]
        if progress is not None:
            progress({"draw": len(correct), "draws": total})
        if target_ci_width is not None and len(correct) >= max(draws, 2):
            s = summarize(np.array(correct) / n_test)
            if s["ci95_high"] - s["ci95_low"] <= target_ci_width:
                break
    acc = np.array(correct, dtype=float) / n_test
    ds = xr.Dataset(coords={"draw": np.arange(acc.size)})
    ds["accuracy"] = ("draw", acc, {"long_name": "test accuracy", "units": "1"})
    ds["draw"].attrs.update(long_name="Monte-Carlo draw", units="1")
    if has_crossbar:
        names = list(powers[0])
        lp = np.array([[p[n] for n in names] for p in powers])
        ds = ds.assign_coords(layer=("layer", names, {"long_name": "layer", "units": ""}))
        ds["layer_power"] = (("draw", "layer"), lp, {"long_name": "crossbar power per layer", "units": "a.u."})
        ds["power"] = ("draw", lp.sum(1), {"long_name": "crossbar power", "units": "a.u."})
    if profile is not None:
        ds = _with_costs(ds, costs[1:], profile)
    ds["energy"] = ((), memory_energy_of(model, mmap), {"long_name": "memory energy (÷ reliable 16-bit)", "units": "1"})
    ds.attrs.update(summarize(acc))
    ds.attrs["n_test"] = int(n_test)
    ds.attrs["seed"] = int(seed)
    return ds


def _with_costs(ds: xr.Dataset, costs, profile: HardwareProfile) -> xr.Dataset:
    """``ds`` with the energy (J per inference, by draw, layer and component) and latency (s) of
    :func:`layer_energy` for each draw's ``(energy, latency)`` in ``costs``."""
    names = list(costs[0][0])
    e = np.array([[[en[n][c] for c in COMPONENTS] for n in names] for en, _ in costs])
    if "layer" not in ds.coords:
        ds = ds.assign_coords(layer=("layer", names, {"long_name": "layer", "units": ""}))
    ds = ds.assign_coords(component=("component", list(COMPONENTS), {"long_name": "energy component", "units": ""}))
    ds["layer_energy_j"] = (("draw", "layer", "component"), e,
                            {"long_name": "energy per inference by layer and component", "units": "J"})
    ds["energy_j"] = ("draw", e.sum((1, 2)), {"long_name": "energy per inference", "units": "J"})
    lat = costs[0][1]            # latency does not depend on the draw
    ds["layer_latency_s"] = ("layer", [lat[n] for n in names], {"long_name": "latency per layer", "units": "s"})
    ds["latency_s"] = ((), float(sum(lat.values())), {"long_name": "latency per inference", "units": "s"})
    ds.attrs["hardware_profile"] = json.dumps(profile.to_dict(), sort_keys=True)
    ds.attrs["energy_j_mean"] = float(ds["energy_j"].mean())
    return ds


def clean_accuracy(model: nn.Module, x: torch.Tensor | Dataset | DataLoader, y: torch.Tensor | None,
                   device="auto") -> float:
    """Accuracy of the stored weights read from an ideal memory (``x`` a streamed test set and
    ``y=None`` as in :func:`mc_evaluate`)."""
    ds = mc_evaluate(model, x, y, MemoryMap(), draws=1, device=device)
    return float(ds.accuracy.values[0])

"""Analytic output MSE and crossbar power of a trained network on a memristor memory (``workbench
estimate``), optionally checked against Monte Carlo run to a target confidence."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch
import xarray as xr
from scipy import stats

from ..analysis.memse import mc_output_mse, memse, memse_fast
from ..datasets import as_tensors, load_dataset
from ..hardware import MemoryMap, memory_map_from_dict
from ..knobs import KnobError, check_choice, check_int, check_number, check_seed
from ..nas.estimator import memory_map
from ..nas.supernet import Supernet, calibration_tensor
from ..training import TrainConfig
from .core import test_tensors, train_model
from .store import Store

#: ``fast``: first order in the weight noise (:func:`memse_fast`); ``full``: mean and full
#: covariance propagation (:func:`memse`, no residual nets)
MODES = ("fast", "full")
#: the first this many test inputs are the batch the output MSE averages over
INPUTS = 64
#: Monte-Carlo draws per round of the check; it stops at the first round whose CI is narrow enough
CHECK_ROUND = 32
MAX_CHECK_DRAWS = 20_000


def check_estimate_knobs(memory: dict | MemoryMap, mode: str, check_ci: float | None, inputs: int) -> MemoryMap:
    """The memory map of an estimate, every knob checked (KnobError names the one refused)."""
    check_choice("mode", mode, MODES)
    check_int("inputs", inputs, 2, 10_000)
    if check_ci is not None:
        check_number("check_ci", check_ci, 0.0, 1.0, inclusive=(False, True))
    mmap = memory if isinstance(memory, MemoryMap) else memory_map_from_dict(memory)
    for mem in (mmap.default, *mmap.overrides.values()):
        check_choice("memory", mem.technology, ("memristor",))
    return mmap


def monte_carlo_to_ci(model, x: torch.Tensor, mmap: MemoryMap, rel_half_width: float, *, seed: int = 0,
                      max_draws: int = MAX_CHECK_DRAWS, cancel=None) -> dict[str, Any]:
    """Monte-Carlo output MSE (:func:`mc_output_mse`) in rounds of :data:`CHECK_ROUND` draws (round
    ``k`` seeded ``seed + k``) until the Student-t 95 % half-width of its mean is at most
    ``rel_half_width`` × the mean (or ``max_draws``)."""
    mse, power = [], []
    t0 = time.perf_counter()
    k, half, mean = 0, math.inf, math.nan
    while len(mse) < max_draws and (cancel is None or not cancel.is_set()):
        ds = mc_output_mse(model, x, mmap, draws=min(CHECK_ROUND, max(2, max_draws - len(mse))), seed=seed + k)
        mse += ds.mse.values.tolist()
        power += ds.power.values.tolist()
        k += 1
        mean = float(np.mean(mse))
        half = float(stats.t.ppf(0.975, len(mse) - 1) * np.std(mse, ddof=1) / math.sqrt(len(mse)))
        if half <= rel_half_width * mean:
            break
    return {"mc_output_mse": mean, "mc_ci95_low": mean - half, "mc_ci95_high": mean + half, "mc_draws": len(mse),
            "mc_power": float(np.mean(power)), "mc_seconds": time.perf_counter() - t0}


def estimate(cfg: TrainConfig, memory: dict | MemoryMap, *, mode: str = "fast", check_ci: float | None = None,
             inputs: int = INPUTS, seed: int = 0, store: Store | None = None, device: str = "auto",
             data_root: str | None = None, progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Output MSE ``E[(ỹ − y)²]`` (mean over the first ``inputs`` test inputs and the outputs) and
    expected crossbar power (per input sample, eq 3.39–3.44) of ``cfg``'s network (trained, or
    loaded from the store, as ``workbench evaluate`` uses it) on ``memory``, in ``mode``
    (:data:`MODES`); ``estimate_seconds`` times the estimate alone.  With ``check_ci`` = W, Monte
    Carlo too, until its 95 % CI half-width is W × its mean (:func:`monte_carlo_to_ci`)."""
    mmap = check_estimate_knobs(memory, mode, check_ci, inputs)
    check_seed("seed", seed)
    trained = train_model(cfg, store, device=device, data_root=data_root, progress=progress)
    model = trained.model.eval()
    x = test_tensors(cfg, data_root)[0][:inputs].to(next(model.parameters()).device)
    t0 = time.perf_counter()
    try:
        ds = memse_fast(model, x, mmap) if mode == "fast" else memse(model, x, mmap)
    except NotImplementedError as exc:
        raise KnobError(f"mode={mode}: {exc}; mode=fast handles any differentiable network") from None
    seconds = time.perf_counter() - t0
    out = {"mode": mode, "inputs": len(x), "output_mse": float(ds.mse), "power": float(ds.power),
           "power_units": "a.u. per input sample", "estimate_seconds": seconds,
           "approximations": ds.attrs["approximations"]}
    if check_ci is not None:
        out.update(monte_carlo_to_ci(model, x, mmap, check_ci, seed=seed))
        out["relative_error"] = out["output_mse"] / out["mc_output_mse"] - 1
    return out


def estimate_state(net: Supernet, state, *, sigma: float, inputs: int = INPUTS, seed: int = 0) -> xr.Dataset:
    """:func:`memse_fast` of one state's subnet as :func:`~workbench.experiments.crossbar.evaluate_state`
    builds it (its ``g_u`` per layer, BN recalibrated and folded, additive noise ``sigma``) on the
    first ``inputs`` test inputs: the output MSE and expected power in a fraction of a Monte-Carlo
    evaluation's time."""
    space = net.space
    s = np.asarray(state, dtype=float)
    data = load_dataset(net.config.dataset)
    x = as_tensors(data.test)[0][:check_int("inputs", inputs, 2, 10_000)]
    sub = net.subnet(s, calibration_tensor(data, 256, seed), fold_bn=True)
    return memse_fast(sub, x, memory_map(sub, space.layer_names(), s[space.gu_slice], sigma))


__all__ = ["INPUTS", "MODES", "check_estimate_knobs", "estimate", "estimate_state", "monte_carlo_to_ci"]

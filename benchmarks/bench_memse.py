"""Analytic output MSE and power (``memse_fast``, ``memse``) vs Monte Carlo at equal confidence, per σ_c.

Digits nets trained 3 epochs and deployed (batch norm folded, bias in the crossbar): SmallCNN at
width 0.25 and 1, and WRN-10-1 (residual: only the fast mode and Monte Carlo handle it); the first
64 test images; multiplicative conductance noise σ_c ∈ SIGMAS.

Error: the estimate ÷ the Monte-Carlo MSE of a reference run of REFERENCE draws, with the 95 %
interval of that ratio from the Student-t interval of the Monte-Carlo mean.  Speed at equal
confidence: Monte Carlo (``mc_output_mse``, one draw shared by the batch, MSE and power per draw)
needs ``n = ⌈(t_{0.975, n-1}·s / (r·m))²⌉`` draws for the 95 % half-width of its mean to reach
``r`` = 10 % of the MSE (``m``, ``s``: mean and std of the reference's per-draw MSE).  Timed
interleaved in one run: ``memse_fast``, ``memse`` (full covariance, the small CNN only) and Monte
Carlo with ``n`` draws.  "speed" = Monte-Carlo time ÷ the estimate's time (> 1: the estimate is
faster).

    python benchmarks/bench_memse.py [--device cuda] [--repeats N]
"""

from __future__ import annotations

import math

import torch
from scipy import stats

from workbench.analysis.memse import mc_output_mse, memse, memse_fast
from workbench.datasets import as_tensors, load_dataset
from workbench.experiments import preset_config
from workbench.hardware import MemristorMemory, make
from workbench.nn.deploy import deploy
from workbench.training import train

from _common import interleaved_medians, main_for

EPOCHS = 3
N_INPUTS = 64
REFERENCE = 400
SIGMAS = (0.02, 0.05, 0.1, 0.2, 0.3)
NETS = {"SmallCNN w=0.25": ("digits-cnn", {"width": 0.25}, True),
        "SmallCNN w=1": ("digits-cnn", {}, False),
        "WRN-10-1": ("digits-wrn", {}, False)}
TARGET_SPEED, TARGET_ERROR, TARGET_SIGMA = 10.0, 0.10, 0.1


def draws_for(rel_half_width: float, mean: float, std: float) -> int:
    """Draws for the Student-t 95 % half-width of the mean to be ``rel_half_width·mean``."""
    n = max(2, math.ceil((1.96 * std / (rel_half_width * mean)) ** 2))
    for _ in range(5):
        n = max(2, math.ceil((stats.t.ppf(0.975, n - 1) * std / (rel_half_width * mean)) ** 2))
    return n


def run(device: torch.device, repeats: int | None = None) -> dict:
    data = load_dataset("digits")
    x, _ = as_tensors(data.test)
    x = x[:N_INPUTS].to(device)
    rows, summary, checks, notes = [], [], [], []
    for label, (preset, overrides, with_full) in NETS.items():
        net = deploy(train(preset_config(preset, epochs=EPOCHS, **overrides), data, device=device).model).to(device)
        for sigma_c in SIGMAS:
            mem = make(MemristorMemory, noise="multiplicative", sigma_c=sigma_c)
            ref = mc_output_mse(net, x, mem, draws=REFERENCE, seed=123).attrs
            m = ref["mse_mean"]
            n10 = draws_for(0.10, m, ref["mse_std"])
            out = {}
            cases = {"fast": lambda mem=mem, out=out, net=net: out.__setitem__("fast", memse_fast(net, x, mem)),
                     "mc": lambda mem=mem, n10=n10, net=net: mc_output_mse(net, x, mem, draws=n10, seed=0)}
            if with_full:
                cases["full"] = lambda mem=mem, out=out, net=net: out.__setitem__("full", memse(net, x, mem))
            t = interleaved_medians(cases, repeats or 3, device)
            ref_ci = f"[{m / ref['mse_ci95_high']:.3f}, {m / ref['mse_ci95_low']:.3f}]"
            rows.append([label, sigma_c, "Monte Carlo, ±10 % CI", f"{m:.4g}", ref_ci, n10, t["mc"] * 1e3, 1.0])
            for key, name in (("fast", "memse_fast (first order)"), ("full", "memse (full covariance)")):
                if key not in out:
                    continue
                est = float(out[key].mse)
                lo, hi = est / ref["mse_ci95_high"], est / ref["mse_ci95_low"]
                speed = t["mc"] / t[key]
                power_gap = float(out[key].power) / ref["power_mean"] - 1
                rows.append([label, sigma_c, name, f"{est:.4g}", f"{est / m:.3f} [{lo:.3f}, {hi:.3f}]", "",
                             t[key] * 1e3, speed])
                if key == "fast":
                    ok = (speed >= TARGET_SPEED and 1 - TARGET_ERROR <= lo and hi <= 1 + TARGET_ERROR
                          if sigma_c <= TARGET_SIGMA else None)
                    summary.append(("memse", f"MC at ±10 % CI / memse_fast, {label}, σ_c={sigma_c} (error "
                                    f"{est / m - 1:+.1%})", speed, ok))
                    notes.append(f"{label} σ_c={sigma_c}: memse_fast power {power_gap:+.2%} vs Monte Carlo "
                                 f"(95 % CI ±{(ref['power_ci95_high'] - ref['power_mean']) / ref['power_mean']:.2%})")
                    if ok is not None:
                        checks.append((f"{label} σ_c={sigma_c}: memse_fast ≥ {TARGET_SPEED:.0f}× faster than MC at "
                                       f"±10 % ({speed:.1f}×) and |error| ≤ {TARGET_ERROR:.0%} at 95 % confidence "
                                       f"(ratio in [{lo:.3f}, {hi:.3f}])", ok))
    return {"title": f"bench_memse: analytic output MSE vs Monte Carlo at equal confidence, digits nets, "
                     f"{N_INPUTS} inputs",
            "columns": ["net", "sigma_c", "estimator", "MSE", f"÷ MC ({REFERENCE} draws) [95 % CI]", "draws", "ms",
                        "speed (MC ÷ it)"],
            "rows": rows, "checks": checks, "notes": notes, "summary": summary}


if __name__ == "__main__":
    main_for(run, __doc__.split("\n")[0])

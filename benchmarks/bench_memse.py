"""Analytic output MSE and power (``memse``, MemSE moment propagation) vs Monte Carlo at equal confidence.

SmallCNN width 0.25 trained 3 epochs on the digits, deployed (batch norm folded, bias in the
crossbar), the first 64 test images, multiplicative conductance noise σ_c ∈ {0.05, 0.1}.

Equal confidence: Monte Carlo (``mc_output_mse``, one draw shared by the batch, MSE and power per
draw) needs ``n = ⌈(t_{0.975, n-1}·s / (r·m))²⌉`` draws for the 95 % confidence half-width of its
mean to reach ``r`` of the MSE, where ``m`` and ``s`` are the mean and std of the per-draw MSE
measured on a pilot of 200 draws.  ``memse`` gives the same two numbers in one pass (full
covariance) with no sampling error, only its approximation error (the "MSE" column shows both
values).  Timed interleaved: ``memse`` vs Monte Carlo with ``n`` draws for r = 10 %; the
r = 1 % row is extrapolated from it (draws are independent, so the cost is linear in ``n``).
"ratio" = Monte-Carlo time ÷ memse time: > 1 means the analytic estimate is faster.

    python benchmarks/bench_memse.py [--device cuda] [--repeats N]
"""

from __future__ import annotations

import math

import torch
from scipy import stats

from workbench.analysis.memse import mc_output_mse, memse
from workbench.datasets import as_tensors, load_dataset
from workbench.experiments import preset_config
from workbench.hardware import MemristorMemory, make
from workbench.nn.deploy import deploy
from workbench.training import train

from _common import interleaved_medians, main_for

EPOCHS = 3
N_INPUTS = 64
PILOT = 200
SIGMAS = (0.05, 0.1)


def draws_for(rel_half_width: float, mean: float, std: float) -> int:
    """Draws for the Student-t 95 % half-width of the mean to be ``rel_half_width·mean``."""
    n = max(2, math.ceil((1.96 * std / (rel_half_width * mean)) ** 2))
    for _ in range(5):
        n = max(2, math.ceil((stats.t.ppf(0.975, n - 1) * std / (rel_half_width * mean)) ** 2))
    return n


def run(device: torch.device, repeats: int | None = None) -> dict:
    data = load_dataset("digits")
    x, _ = as_tensors(data.test)
    cfg = preset_config("digits-cnn", epochs=EPOCHS, width=0.25)
    net = deploy(train(cfg, data, device=device).model).to(device)
    x = x[:N_INPUTS].to(device)
    rows, summary, notes = [], [], []
    for sigma_c in SIGMAS:
        mem = make(MemristorMemory, noise="multiplicative", sigma_c=sigma_c)
        pilot = mc_output_mse(net, x, mem, draws=PILOT, seed=123)
        m, s = pilot.attrs["mse_mean"], pilot.attrs["mse_std"]
        n10, n1 = draws_for(0.10, m, s), draws_for(0.01, m, s)
        out = {}

        def analytic(mem=mem, out=out):
            out["memse"] = memse(net, x, mem)

        def diagonal(mem=mem, out=out):
            out["diag"] = memse(net, x, mem, covariance="diagonal")

        def monte_carlo(mem=mem, out=out, n10=n10):
            out["mc"] = mc_output_mse(net, x, mem, draws=n10, seed=0)

        t = interleaved_medians({"memse": analytic, "mc": monte_carlo, "diag": diagonal}, repeats or 3, device)
        a, mc, dg = out["memse"], out["mc"].attrs, out["diag"]
        half = (mc["mse_ci95_high"] - mc["mse_ci95_low"]) / 2
        r10 = t["mc"] / t["memse"]
        r1 = r10 * n1 / n10
        rows += [[sigma_c, "memse (full covariance)", f"{float(a.mse):.4g}", "", t["memse"] * 1e3, 1.0],
                 [sigma_c, "Monte Carlo, ±10 % CI", f"{mc['mse_mean']:.4g} ± {half:.2g}", n10, t["mc"] * 1e3, r10],
                 [sigma_c, "Monte Carlo, ±1 % CI (extrapolated)", "", n1, t["mc"] * 1e3 * n1 / n10, r1],
                 [sigma_c, "memse diagonal (rough, ignores UR correlations)", f"{float(dg.mse):.4g}", "",
                  t["diag"] * 1e3, t["diag"] / t["memse"]]]
        summary += [("memse", f"MC at ±10 % CI / memse, σ_c={sigma_c} (>1: analytic faster)", r10, None),
                    ("memse", f"MC at ±1 % CI / memse, σ_c={sigma_c} (extrapolated)", r1, None)]
        gap = float(a.mse) / mc["mse_mean"] - 1
        notes.append(f"σ_c={sigma_c}: memse MSE {gap:+.1%} vs Monte Carlo ({n10} draws, ±{half / mc['mse_mean']:.1%}); "
                     f"expected power {float(a.power):.6g} vs MC {mc['power_mean']:.6g} "
                     f"[{mc['power_ci95_low']:.6g}, {mc['power_ci95_high']:.6g}]")
        cross = t["memse"] / (t["mc"] / n10)
        notes.append(
            f"σ_c={sigma_c}: one memse pass costs as much as {cross:.0f} Monte-Carlo draws: the analytic estimate "
            f"wins once the target CI half-width is below ~{100 * 0.1 * math.sqrt(n10 / max(cross, 1)):.1f} % "
            f"of the MSE"
        )
    return {"title": f"bench_memse: analytic MSE (memse) vs Monte Carlo at equal confidence, SmallCNN w=0.25, "
                     f"{N_INPUTS} inputs",
            "columns": ["sigma_c", "estimator", "MSE", "draws", "ms", "ratio (÷ memse)"],
            "rows": rows, "notes": notes, "summary": summary}


if __name__ == "__main__":
    main_for(run, __doc__.split("\n")[0])

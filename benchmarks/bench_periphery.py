"""Cost of the accelerator's periphery in a Monte-Carlo evaluation: converters, tiles, faults on vs off.

The digits CNN (``digits-cnn``, trained 3 epochs) on a multiplicative crossbar (σ_c = 0.1), the
whole digits test split, timed interleaved in one run: the crossbar without periphery, then with
8-bit DACs and ADCs, with 256×256, 128×128 and 32×32 tiles on top, with stuck-at faults (1 %) and
with activation-buffer faults (BER 1e-3), and with a hardware profile (energy and latency per
inference).  "ratio" = its time ÷ the time without periphery (> 1: slower).  Small tiles cost the
most: every row tile is its own convolution and its partial sums are rounded one by one.

    python benchmarks/bench_periphery.py [--device cuda] [--repeats N]
"""

from __future__ import annotations

import torch

from workbench.analysis import mc_evaluate
from workbench.datasets import as_tensors, load_dataset
from workbench.experiments import preset_config
from workbench.hardware import MemristorMemory, make
from workbench.hardware.profile import make_profile
from workbench.nn.layers import calibrate_periphery
from workbench.training import train

from _common import interleaved_medians, main_for

DRAWS = 10
BASE = {"noise": "multiplicative", "sigma_c": 0.1}
CASES = {
    "no periphery": {},
    "ADC+DAC 8 bits": {"adc_bits": 8, "dac_bits": 8},
    "+ tiles 256x256": {"adc_bits": 8, "dac_bits": 8, "tile_rows": 256, "tile_cols": 256},
    "+ tiles 128x128": {"adc_bits": 8, "dac_bits": 8, "tile_rows": 128, "tile_cols": 128},
    "+ tiles 32x32": {"adc_bits": 8, "dac_bits": 8, "tile_rows": 32, "tile_cols": 32},
    "stuck-at 1 %": {"stuck_min": 0.005, "stuck_max": 0.005},
    "activation BER 1e-3": {"act_p": 1e-3},
}


def run(device: torch.device, repeats: int | None = None) -> dict:
    data = load_dataset("digits")
    net = train(preset_config("digits-cnn", epochs=3), data, device=device).model.to(device).eval()
    x, y = as_tensors(data.test)
    x_train, _ = as_tensors(data.train)
    calibrate_periphery(net, x_train[:512].to(device))
    mems = {name: make(MemristorMemory, **BASE, **knobs) for name, knobs in CASES.items()}
    profile = make_profile("isaac")
    acc: dict[str, float] = {}

    def case(name, mem, **kw):
        def go():
            acc[name] = mc_evaluate(net, x, y, mem, DRAWS, seed=0, device=device, **kw).attrs["accuracy_mean"]
        return go
    cases = {name: case(name, mem) for name, mem in mems.items()}
    cases["+ profile (energy, latency)"] = case("+ profile (energy, latency)", mems["no periphery"], profile=profile)
    t = interleaved_medians(cases, repeats or 3, device)
    base = t["no periphery"]
    rows = [[name, f"{acc[name]:.4f}", t[name] * 1e3, t[name] / base] for name in cases]
    checks = [("converters at 8 bits without tiles cost at most 1.5x the plain crossbar",
               t["ADC+DAC 8 bits"] / base <= 1.5),
              ("a profile (energy and latency) costs at most 1.5x", t["+ profile (energy, latency)"] / base <= 1.5)]
    return {"title": f"bench_periphery: Monte-Carlo evaluation with crossbar periphery, digits-cnn, {len(y)} test "
                     f"images, {DRAWS} draws",
            "columns": ["setting", "accuracy", "ms", "ratio (÷ no periphery)"], "rows": rows, "checks": checks,
            "notes": ["calibration of the converter ranges (512 training images) is done once, outside the timing"]}


if __name__ == "__main__":
    main_for(run, __doc__.split("\n")[0])

"""Monte-Carlo evaluation: ``mc_evaluate`` mode='vectorised' (torch.vmap over draws) vs mode='loop'.

The digits default networks (SmallCNN; BinaryConnect for SRAM, full precision for the crossbar,
as ``PRESET_FOR_TECHNOLOGY``), trained 3 epochs, 32 draws over the whole test set, SRAM
p = 1e-2 and memristor σ_c = 0.1.  Both modes use the same seed, so they draw the same noise.
``mc_evaluate(mode='auto')`` picks the loop on CPU and vmap on CUDA: this benchmark is what that
choice rests on.

    python benchmarks/bench_montecarlo.py [--device cuda] [--repeats N]
"""

from __future__ import annotations

import numpy as np
import torch

from workbench.analysis.montecarlo import mc_evaluate
from workbench.datasets import as_tensors, load_dataset
from workbench.experiments import PRESET_FOR_TECHNOLOGY, preset_config
from workbench.hardware import MemoryMap, memory_from_dict
from workbench.training import train

from _common import interleaved_medians, main_for

DRAWS = 32
EPOCHS = 3
MEMORIES = [("sram", {"technology": "sram", "p": 1e-2, "bits": 1}),
            ("memristor", {"technology": "memristor", "noise": "multiplicative", "sigma_c": 0.1})]


def run(device: torch.device, repeats: int | None = None) -> dict:
    data = load_dataset("digits")
    x, y = as_tensors(data.test)
    rows, summary = [], []
    for tech, knobs in MEMORIES:
        cfg = preset_config(PRESET_FOR_TECHNOLOGY[tech], epochs=EPOCHS)
        model = train(cfg, data, device=device).model
        mmap = MemoryMap(memory_from_dict(knobs))
        results = {}

        def case(mode, model=model, mmap=mmap, results=results):
            def fn():
                results[mode] = mc_evaluate(model, x, y, mmap, DRAWS, seed=0, device=device, mode=mode)
            return fn

        t = interleaved_medians({"vectorised": case("vectorised"), "loop": case("loop")}, repeats or 3, device)
        a_v, a_l = results["vectorised"].accuracy.values, results["loop"].accuracy.values
        same = "identical" if np.array_equal(a_v, a_l) else f"max |diff| {np.abs(a_v - a_l).max():.2g}"
        ratio = t["loop"] / t["vectorised"]
        faster = "vectorised" if ratio > 1 else "loop"
        knob = "p=1e-2" if tech == "sram" else "sigma_c=0.1"
        rows.append([f"{tech} {knob}", cfg.binary and "BinaryConnect" or "full precision", t["vectorised"] * 1e3,
                     t["loop"] * 1e3, ratio, faster, same])
        summary.append(("montecarlo", f"{tech}: loop / vectorised (>1: vmap faster)", ratio, None))
    auto = "vectorised" if device.type == "cuda" else "loop"
    agree = all(r[5] == auto for r in rows)
    notes = [f"mode='auto' picks '{auto}' on {device.type}: "
             + ("consistent with this measurement" if agree else "NOT what this measurement favours")]
    return {"title": f"bench_montecarlo: mc_evaluate, {DRAWS} draws x {len(y)} test images, SmallCNN {EPOCHS} epochs",
            "columns": ["memory", "network", "vectorised ms", "loop ms", "loop / vectorised", "faster", "accuracies"],
            "rows": rows, "notes": notes, "summary": summary}


if __name__ == "__main__":
    main_for(run, __doc__.split("\n")[0])

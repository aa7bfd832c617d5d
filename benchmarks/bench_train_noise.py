"""Noisy vs clean training step: the cost of reading every weight through an under-volted SRAM.

One step = forward, backward and SGD update of the BinaryConnect digits network (``digits-bc``,
batch 64) with the weights read through a binary symmetric channel at ``p`` (fresh flips every
forward, eq 3.13–3.16) vs read from a reliable memory.  Cases timed interleaved.

    python benchmarks/bench_train_noise.py [--device cuda] [--repeats N]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.datasets import as_tensors, load_dataset
from workbench.experiments import preset_config
from workbench.hardware import MemoryMap, SRAMMemory
from workbench.nn import set_generator, set_memory
from workbench.training import make_model
from workbench.training.trainer import make_optimizer

from _common import interleaved_medians, main_for

PS = (1e-6, 1e-3)
STEPS = 10


def run(device: torch.device, repeats: int | None = None) -> dict:
    cfg = preset_config("digits-bc")
    data = load_dataset("digits")
    x, y = (t.to(device) for t in as_tensors(data.train))
    xb, yb = x[:cfg.batch_size], y[:cfg.batch_size]
    cases = {}
    for p in (0.0, *PS):
        torch.manual_seed(0)
        model = make_model(cfg, data).to(device).train()
        if p > 0:
            set_memory(model, MemoryMap(SRAMMemory(p=p, bits=1)))
            set_generator(model, torch.Generator(device=device).manual_seed(1))
        opt = make_optimizer(cfg, model.parameters())

        def step(model=model, opt=opt):
            for _ in range(STEPS):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(xb), yb).backward()
                opt.step()
        cases["clean" if p == 0 else f"p={p:g}"] = step
    t = interleaved_medians(cases, repeats or 7, device)
    rows = [[k, v / STEPS * 1e3, v / t["clean"]] for k, v in t.items()]
    return {"title": f"bench_train_noise: one training step, digits-bc (BinaryConnect), batch {cfg.batch_size}",
            "columns": ["memory", "ms / step", "÷ clean"], "rows": rows,
            "summary": [("train_noise", f"noisy (p={p:g}) / clean step", t[f"p={p:g}"] / t["clean"], None) for p in PS]}


if __name__ == "__main__":
    main_for(run, __doc__.split("\n")[0])

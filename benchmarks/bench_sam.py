"""SAM-family optimizers vs plain SGD: wall time of one training step on the default model.

One step = forward, backward and the optimizer update on a minibatch of 64 digits images, the
default network (``digits-cnn``: SmallCNN, full width, batch norm) in train mode.  SGD does one
forward-backward pass; SAM, ASAM and SAMSON do two (at ``W`` and at ``W + ε*``) plus the
perturbation, so the expected ratio is near 2.  Cases are timed interleaved.

    python benchmarks/bench_sam.py [--device cuda] [--repeats N]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.datasets import as_tensors, load_dataset
from workbench.experiments import preset_config
from workbench.training import make_model
from workbench.training.sam import make_sam_optimizer

from _common import interleaved_medians, main_for

METHODS = ["sgd", "sam", "asam", "samson2", "samsoninf"]
STEPS = 10          # steps per timed case


def run(device: torch.device, repeats: int | None = None) -> dict:
    cfg = preset_config("digits-cnn")
    data = load_dataset("digits")
    x, y = (t.to(device) for t in as_tensors(data.train))
    xb, yb = x[:cfg.batch_size], y[:cfg.batch_size]
    cases = {}
    for name in METHODS:
        torch.manual_seed(0)
        model = make_model(cfg, data).to(device).train()
        opt = make_sam_optimizer(name, model, "sgd", lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

        def step(model=model, opt=opt, sharp=name != "sgd"):
            for _ in range(STEPS):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(xb), yb).backward()
                if sharp:
                    opt.step(lambda: F.cross_entropy(model(xb), yb).backward())
                else:
                    opt.step()
        cases[name] = step
    t = interleaved_medians(cases, repeats or 7, device)
    rows = [[m, t[m] / STEPS * 1e3, t[m] / t["sgd"]] for m in METHODS]
    summary = [("sam", f"{m} step / SGD step", t[m] / t["sgd"], None) for m in METHODS[1:]]
    return {"title": f"bench_sam: one training step, digits-cnn, batch {cfg.batch_size}",
            "columns": ["optimizer", "ms / step", "÷ SGD"], "rows": rows, "summary": summary,
            "notes": ["two forward-backward passes per SAM-family step: a ratio near 2 is the expected cost"]}


if __name__ == "__main__":
    main_for(run, __doc__.split("\n")[0])

"""Time to a target test accuracy: the wall time (and epochs) a preset's training needs until its
test accuracy first reaches ``--target``, clean and hardware-aware (weights read through an
SRAM at p = 1e-3 every step: 1-bit words for a BinaryConnect preset, else 8-bit fixed point),
trained one after the other in this run after an untimed one-epoch warm-up (data loading,
first kernels).

    python benchmarks/bench_time_to_accuracy.py                       # digits-cnn to 94 %, CPU
    python benchmarks/bench_time_to_accuracy.py --device cuda --preset vgg13-cifar10 \\
        --data-root ~/data --target 0.94 --max-epochs 200              # CIFAR-10 on a GPU

Test accuracy is measured after every epoch (the trainer's own evaluation, included in the
time); training stops at the first epoch that reaches the target, or after ``--max-epochs``
(then "not reached").  Nothing is cached: every run trains from scratch with seed 0.  CIFAR-10
must already be in ``--data-root`` (torchvision's on-disk format); nothing is downloaded.
"""

from __future__ import annotations

import threading
import time

import torch

from workbench.experiments.core import preset_config
from workbench.hardware import SRAMMemory
from workbench.training import Cancelled, train

from _common import command_line, device_from, parser, report

P_NOISY = 1e-3


def time_to(cfg, target: float, device: torch.device, data_root: str | None) -> dict:
    """Train ``cfg`` until its test accuracy reaches ``target``: seconds, epochs, accuracy."""
    cancel, t0, hit = threading.Event(), time.perf_counter(), {}
    best = [0.0]

    def progress(info):
        best[0] = max(best[0], info["test_accuracy"])
        if info["test_accuracy"] >= target and not hit:
            hit.update(seconds=time.perf_counter() - t0, epoch=info["epoch"], accuracy=info["test_accuracy"])
            cancel.set()
    try:
        train(cfg, device=str(device), progress=progress, cancel=cancel, data_root=data_root)
    except Cancelled:
        pass
    total = time.perf_counter() - t0
    return hit or {"seconds": None, "epoch": None, "accuracy": best[0], "total": total}


def run(device: torch.device, repeats: int | None = None, preset: str = "digits-cnn", target: float = 0.94,
        max_epochs: int = 20, data_root: str | None = None) -> dict:
    base = {"epochs": max_epochs, "seed": 0}
    warm = preset_config(preset, epochs=1, seed=0)
    train(warm, device=str(device), data_root=data_root)          # untimed: data loading, first kernels
    clean = time_to(preset_config(preset, **base), target, device, data_root)
    bits = 1 if warm.binary else 8
    noisy_mem = {"default": SRAMMemory(p=P_NOISY, bits=bits).knobs(), "overrides": {}}
    noisy = time_to(preset_config(preset, train_memory=noisy_mem, **base), target, device, data_root)
    rows = []
    for name, r in (("clean", clean), (f"SRAM p={P_NOISY:g}, {bits}-bit (hardware-aware)", noisy)):
        rows.append([name, "not reached" if r["seconds"] is None else r["seconds"],
                     "—" if r["epoch"] is None else r["epoch"], r["accuracy"]])
    ratio = (noisy["seconds"] / clean["seconds"]) if clean["seconds"] and noisy["seconds"] else None
    return {"title": f"bench_time_to_accuracy: {preset} to {target:.0%} test accuracy (≤ {max_epochs} epochs)",
            "columns": ["training", "seconds to target", "epochs", "test accuracy"], "rows": rows,
            "notes": [f"clean time to {target:.0%}: "
                      + ("not reached" if clean["seconds"] is None else f"{clean['seconds']:.1f} s")],
            "summary": [("time_to_accuracy", f"{preset} to {target:.0%}: hardware-aware / clean time",
                         float("nan") if ratio is None else ratio, None)]}


if __name__ == "__main__":
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--preset", default="digits-cnn", help="training preset (default digits-cnn)")
    p.add_argument("--target", type=float, default=0.94, help="target test accuracy (default 0.94)")
    p.add_argument("--max-epochs", type=int, default=20, help="stop after this many epochs (default 20)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset (torchvision format)")
    args = p.parse_args()
    if not 0 < args.target <= 1:
        raise SystemExit(f"benchmark: --target={args.target} must be in (0, 1]")
    if args.max_epochs < 1:
        raise SystemExit(f"benchmark: --max-epochs={args.max_epochs} must be ≥ 1")
    device = device_from(args.device)
    t0 = time.perf_counter()
    result = run(device, preset=args.preset, target=args.target, max_epochs=args.max_epochs, data_root=args.data_root)
    print(report(result, device, command_line()))
    print(f"(ran in {time.perf_counter() - t0:.1f} s)")

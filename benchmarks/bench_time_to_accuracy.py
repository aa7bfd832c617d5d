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
``--generated N`` trains instead on N generated images of the preset's dataset shape
(:func:`generated_like`: a seeded, learnable stand-in, e.g. for a GPU check without the files).
"""

from __future__ import annotations

import threading
import time

import torch
from torch.utils.data import TensorDataset

from workbench.datasets import DataBundle, dataset_shape
from workbench.experiments.core import preset_config
from workbench.hardware import SRAMMemory
from workbench.training import Cancelled, train

from _common import command_line, device_from, parser, report

P_NOISY = 1e-3


def generated_like(dataset: str, n_train: int, seed: int = 0) -> DataBundle:
    """``n_train`` training and ``n_train // 5`` test images shaped like ``dataset`` (e.g. CIFAR-10:
    3×32×32, 10 classes): each class is a fixed random smooth pattern, each image that pattern,
    shifted by up to 4 pixels, plus Gaussian noise of half the patterns' scale.  Learnable to high
    accuracy but not at once, so a time-to-accuracy curve has a shape; a timing stand-in only."""
    classes, channels, size = dataset_shape(dataset)
    gen = torch.Generator().manual_seed(seed)
    low = torch.randn(classes, channels, size // 4, size // 4, generator=gen)
    patterns = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)

    def split(n):
        y = torch.randint(classes, (n,), generator=gen)
        shift = torch.randint(-4, 5, (n, 2), generator=gen)
        x = torch.stack([torch.roll(patterns[c], (int(s[0]), int(s[1])), dims=(1, 2)) for c, s in zip(y, shift)])
        return TensorDataset(x + 0.5 * patterns.std() * torch.randn(x.shape, generator=gen), y)
    return DataBundle(dataset, split(n_train), split(max(n_train // 5, classes)), classes, channels, size)


def time_to(cfg, target: float, device: torch.device, data_root: str | None, data: DataBundle | None = None) -> dict:
    """Train ``cfg`` until its test accuracy reaches ``target``: seconds, epochs, accuracy."""
    cancel, t0, hit = threading.Event(), time.perf_counter(), {}
    best = [0.0]

    def progress(info):
        best[0] = max(best[0], info["test_accuracy"])
        if info["test_accuracy"] >= target and not hit:
            hit.update(seconds=time.perf_counter() - t0, epoch=info["epoch"], accuracy=info["test_accuracy"])
            cancel.set()
    try:
        train(cfg, data, device=str(device), progress=progress, cancel=cancel, data_root=data_root)
    except Cancelled:
        pass
    total = time.perf_counter() - t0
    return hit or {"seconds": None, "epoch": None, "accuracy": best[0], "total": total}


def run(device: torch.device, repeats: int | None = None, preset: str = "digits-cnn", target: float = 0.94,
        max_epochs: int = 20, data_root: str | None = None, generated: int | None = None) -> dict:
    base = {"epochs": max_epochs, "seed": 0}
    warm = preset_config(preset, epochs=1, seed=0)
    data = generated_like(warm.dataset, generated) if generated else None
    train(warm, data, device=str(device), data_root=data_root)    # untimed: data loading, first kernels
    clean = time_to(preset_config(preset, **base), target, device, data_root, data)
    bits = 1 if warm.binary else 8
    noisy_mem = {"default": SRAMMemory(p=P_NOISY, bits=bits).knobs(), "overrides": {}}
    noisy = time_to(preset_config(preset, train_memory=noisy_mem, **base), target, device, data_root, data)
    rows = []
    for name, r in (("clean", clean), (f"SRAM p={P_NOISY:g}, {bits}-bit (hardware-aware)", noisy)):
        rows.append([name, "not reached" if r["seconds"] is None else r["seconds"],
                     "—" if r["epoch"] is None else r["epoch"], r["accuracy"]])
    ratio = (noisy["seconds"] / clean["seconds"]) if clean["seconds"] and noisy["seconds"] else None
    on = f" on {generated} generated {warm.dataset}-shaped images" if generated else ""
    return {"title": f"bench_time_to_accuracy: {preset}{on} to {target:.0%} test accuracy (≤ {max_epochs} epochs)",
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
    p.add_argument("--generated", type=int, default=None, metavar="N",
                   help="train on N generated images shaped like the preset's dataset instead of its files")
    args = p.parse_args()
    if args.generated is not None and args.generated < 10:
        raise SystemExit(f"benchmark: --generated={args.generated} must be ≥ 10 images")
    if not 0 < args.target <= 1:
        raise SystemExit(f"benchmark: --target={args.target} must be in (0, 1]")
    if args.max_epochs < 1:
        raise SystemExit(f"benchmark: --max-epochs={args.max_epochs} must be ≥ 1")
    device = device_from(args.device)
    t0 = time.perf_counter()
    result = run(device, preset=args.preset, target=args.target, max_epochs=args.max_epochs, data_root=args.data_root,
                 generated=args.generated)
    print(report(result, device, command_line()))
    print(f"(ran in {time.perf_counter() - t0:.1f} s)")

"""Peak memory of a Monte-Carlo evaluation: a streamed 50 000-image test set vs the same set materialised.

A lazy test set of 50 000 seeded 3×32×32 float32 images (each generated on access from its
index: a class template plus noise) is evaluated by ``mc_evaluate`` (SmallCNN w = 0.25 trained
2 epochs on 2 000 other images of the generator, memristor σ_c = 0.1, 3 draws, batches of 256):
once streamed (``mc_evaluate(model, dataset, None, ...)``), once materialised first
(``as_tensors`` of the same set, then the tensor path), and streamed over a tenth of the set.
Each case runs in its own fresh Python process so that its baseline is clean; the peak is the
growth of the resident-set high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``
on Linux; ``ru_maxrss`` elsewhere) from just before the evaluation (model, dataset object and
libraries already loaded) to its end.  It is
printed against the model's size plus one batch (what streaming should need, plus the
activations of one batch) and against the size of the whole test set.

    python benchmarks/bench_streaming_memory.py [--device cuda] [--n 50000] [--draws 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import command_line, device_from, parser, report

N_IMAGES = 50_000
DRAWS = 3
BATCH = 256
SHAPE = (3, 32, 32)
MIB = 2 ** 20


#: one seeded 3×32×32 pattern per class, added to each image's noise: a learnable label
TEMPLATES = torch.randn((10, *SHAPE), generator=torch.Generator().manual_seed(12345)) * 0.5
TRAIN_IMAGES, TRAIN_EPOCHS = 2000, 2


class GeneratedImages(torch.utils.data.Dataset):
    """``n`` seeded 3×32×32 images, each made when it is read (class ``i mod 10``: its template
    plus unit Gaussian noise seeded by ``offset + i``): nothing is held but ``n``."""

    def __init__(self, n: int, offset: int = 0):
        self.n, self.offset = n, offset

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        c = int(i) % 10
        g = torch.Generator().manual_seed(self.offset + int(i))
        return torch.randn(SHAPE, generator=g) + TEMPLATES[c], c


def _train(path: Path) -> float:
    """A SmallCNN (w = 0.25) trained briefly on other images of the same generator, saved at
    ``path``; returns its clean accuracy on 1 000 of them (so the draws vary: not a constant)."""
    from workbench.nn import SmallCNN
    torch.manual_seed(0)
    model = SmallCNN(in_channels=3, num_classes=10, width=0.25)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loader = torch.utils.data.DataLoader(GeneratedImages(TRAIN_IMAGES, offset=10 ** 7), batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    model.train()
    for _ in range(TRAIN_EPOCHS):
        for xb, yb in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    model.eval()
    torch.save(model.state_dict(), path)
    xb, yb = next(iter(torch.utils.data.DataLoader(GeneratedImages(1000, offset=2 * 10 ** 7), batch_size=1000)))
    with torch.no_grad():
        return float((model(xb).argmax(1) == yb).float().mean())


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024          # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_high_water() -> int:
    """Reset the resident-set high-water mark to the current RSS (Linux: ``5`` written to
    ``/proc/self/clear_refs``) and return that RSS in bytes; elsewhere the ``ru_maxrss`` so far,
    which cannot be reset (a transient peak before the evaluation then hides part of it)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_bytes("VmRSS")
    except OSError:
        return _high_water()


def _high_water() -> int:
    """The resident-set high-water mark in bytes (``VmHWM``, or ``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    try:
        return _status_bytes("VmHWM")
    except OSError:
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if sys.platform == "darwin" else r * 1024


def _case(mode: str, n: int, draws: int, device: str, weights: str) -> dict:
    """One evaluation in this (fresh) process; the high-water growth it caused, in bytes."""
    from workbench.analysis.montecarlo import mc_evaluate
    from workbench.datasets import as_tensors
    from workbench.hardware import MemoryMap, MemristorMemory, make
    from workbench.nn import SmallCNN, noisy_layers

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = SmallCNN(in_channels=3, num_classes=10, width=0.25)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    test = GeneratedImages(n)
    mem = MemoryMap(make(MemristorMemory, sigma_c=0.1))
    # warm-up on 2 batches: allocator pools, lazy imports and kernels are outside the measurement
    mc_evaluate(model, torch.utils.data.Subset(test, range(2 * BATCH)), None, mem, draws=1, device=device,
                batch_size=BATCH)
    cuda = torch.device(device).type == "cuda"
    if cuda:              # the accelerator's own high-water mark, beside the host's
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_base = torch.cuda.memory_allocated()
    base = _reset_high_water()
    t0 = time.perf_counter()
    if mode == "streamed":
        ds = mc_evaluate(model, test, None, mem, draws=draws, device=device, batch_size=BATCH, seed=0)
    else:
        x, y = as_tensors(test)
        ds = mc_evaluate(model, x, y, mem, draws=draws, device=device, batch_size=BATCH, seed=0)
    seconds = time.perf_counter() - t0
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    model_bytes += sum(b.numel() * b.element_size() for b in model.buffers())
    peak = _high_water() - base
    cuda_peak = torch.cuda.max_memory_allocated() - cuda_base if cuda else None
    return {"peak": peak, "cuda_peak": cuda_peak, "seconds": seconds, "model": model_bytes,
            "accuracy": ds.accuracy.values.tolist(), "layers": len(noisy_layers(model))}


def run(device: torch.device, repeats: int | None = None, n: int = N_IMAGES, draws: int = DRAWS) -> dict:
    del repeats       # a memory high-water mark is measured once per fresh process
    here = Path(__file__).resolve()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "smallcnn.pt"
        clean = _train(weights)
        # a streamed run over a tenth of the set too: its peak should not scale with the set's size
        for label, mode, size in (("streamed", "streamed", n), (f"streamed, {n // 10} images", "streamed", n // 10),
                                  ("materialised", "materialised", n)):
            proc = subprocess.run([sys.executable, str(here), "--case", mode, "--n", str(size), "--draws", str(draws),
                                   "--device", str(device), "--weights", str(weights)], capture_output=True, text=True,
                                  check=False, cwd=here.parent)
            if proc.returncode != 0:
                raise RuntimeError(f"the {label} case failed:\n{proc.stderr[-2000:]}")
            out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    model_bytes = out["streamed"]["model"]
    batch_bytes = BATCH * 3 * 32 * 32 * 4
    set_bytes = n * 3 * 32 * 32 * 4
    rows = [[label, r["peak"] / MIB, r["peak"] / (model_bytes + batch_bytes), r["peak"] / set_bytes,
             "-" if r["cuda_peak"] is None else r["cuda_peak"] / MIB, r["seconds"]] for label, r in out.items()]
    acc = out["streamed"]["accuracy"]
    same = acc == out["materialised"]["accuracy"] and len(set(acc)) > 1       # and the draws differ
    s_peak, m_peak = out["streamed"]["peak"], out["materialised"]["peak"]
    checks = [(f"streamed peak ({s_peak / MIB:.1f} MiB) below half the whole test set ({set_bytes / MIB:.1f} MiB; "
               "holding the set would take all of it)", s_peak < set_bytes / 2),
              ("streamed and materialised per-draw accuracies identical (same seed), and not all equal", same)]
    notes = [f"model size {model_bytes / MIB:.3f} MiB ({model_bytes} B), one batch of {BATCH} inputs "
             f"{batch_bytes / MIB:.2f} MiB, model + one batch {(model_bytes + batch_bytes) / MIB:.2f} MiB; "
             f"whole test set {n} x 3x32x32 float32 = {set_bytes / MIB:.1f} MiB",
             "each case runs in a fresh process on 1 CPU thread (cpu) or the device named above",
             "peak = growth of the process's resident-set high-water mark (VmHWM, reset just before) during the "
             "evaluation, in a fresh process per case; it includes one batch's "
             "activations, the collation copy and what the allocator keeps",
             f"network trained {TRAIN_EPOCHS} epochs on {TRAIN_IMAGES} other generated images (clean accuracy "
             f"{clean:.3f} on 1 000 more); per-draw accuracies {acc}"]
    return {"title": f"bench_streaming_memory: mc_evaluate peak memory, {n} generated images, {draws} draws, "
                     f"SmallCNN w=0.25, memristor sigma_c=0.1",
            "columns": ["test set", "host peak MiB", "x (model + 1 batch)", "x whole set", "CUDA peak MiB", "seconds"],
            "rows": rows, "checks": checks, "notes": notes,
            "summary": [("streaming_memory", "streamed peak / whole test set", s_peak / set_bytes, None),
                        ("streaming_memory", "materialised peak / streamed peak", m_peak / max(s_peak, 1), None)]}


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=N_IMAGES, help="test images (default 50 000)")
    p.add_argument("--draws", type=int, default=DRAWS, help="Monte-Carlo draws (default 3)")
    p.add_argument("--case", choices=("streamed", "materialised"), help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        print(json.dumps(_case(args.case, args.n, args.draws, args.device or "cpu", args.weights)))
        return
    device = device_from(args.device)
    t0 = time.perf_counter()
    print(report(run(device, n=args.n, draws=args.draws), device, command_line()))
    print(f"(ran in {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()

"""Result store: a cached ``evaluate`` (store hit) vs computing it again.

digits-bc trained 3 epochs (its weights cached once), SRAM p = 1e-2, 32 draws.  "recompute" is
the Monte-Carlo cell computed afresh (weights loaded from the store; a new seed per repeat so
every repeat is a miss); "hit" reads the same cell back (checksum verified, netCDF parsed);
"cold" also trains the network (once).  The store is a temporary directory.

    python benchmarks/bench_store.py [--device cuda] [--repeats N]
"""

from __future__ import annotations

import itertools
import tempfile
import time

import torch

from workbench.experiments import Store, evaluate, preset_config

from _common import interleaved_medians, main_for

DRAWS = 32
MEMORY = {"default": {"technology": "sram", "p": 1e-2, "bits": 1}, "overrides": {}}


def run(device: torch.device, repeats: int | None = None) -> dict:
    cfg = preset_config("digits-bc", epochs=3)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as root:
        store = Store(root, read_only=[])
        t0 = time.perf_counter()
        first = evaluate(cfg, MEMORY, draws=DRAWS, seed=0, store=store, device=str(device))
        cold = time.perf_counter() - t0
        assert first.attrs["cache"] == "computed"
        seeds = itertools.count(1)
        caches = {"hit": set(), "recompute": set()}

        def hit():
            caches["hit"].add(
                evaluate(cfg, MEMORY, draws=DRAWS, seed=0, store=store, device=str(device)).attrs["cache"]
            )

        def recompute():
            ds = evaluate(cfg, MEMORY, draws=DRAWS, seed=next(seeds), store=store, device=str(device))
            caches["recompute"].add(ds.attrs["cache"])

        t = interleaved_medians({"hit": hit, "recompute": recompute}, repeats or 5, device)
        assert caches == {"hit": {"hit"}, "recompute": {"computed"}}, caches
        size = store.path("evaluate", first.attrs["cache_key"], "nc").stat().st_size
    ratio = t["recompute"] / t["hit"]
    rows = [["hit (same cell)", t["hit"] * 1e3, 1.0],
            ["recompute (Monte-Carlo cell, cached weights)", t["recompute"] * 1e3, ratio],
            ["cold (train 3 epochs + Monte-Carlo, once)", cold * 1e3, cold / t["hit"]]]
    return {"title": f"bench_store: evaluate digits-bc, SRAM p=1e-2, {DRAWS} draws ({size} B per cell)",
            "columns": ["case", "ms", "÷ hit"], "rows": rows,
            "summary": [("store", "evaluate recompute / hit", ratio, None),
                        ("store", "evaluate cold (train + MC) / hit", cold / t["hit"], None)]}


if __name__ == "__main__":
    main_for(run, __doc__.split("\n")[0])

"""Page callback latency: moving the playground's p slider to a setting already in the store vs
one that must be computed.

The page's state object (``NoiseExplorer``, the same one the served page drives) on a temporary
store: the latency is the time from setting ``p`` to the new result (accuracy over Monte-Carlo
draws) being in the page state.  "cached": a p whose evaluation is in the store (a hit: read
and checksum-verify one netCDF file); "computed": a fresh p (20 Monte-Carlo draws of the digits
BinaryConnect network).  Interleaved, median of repeats.

    python benchmarks/bench_page.py [--repeats N]
"""

from __future__ import annotations

import itertools
import tempfile

import torch

from _common import interleaved_medians, main_for
from workbench.experiments import Store
from workbench.ui.explorer import NoiseExplorer


def run(device: torch.device, repeats: int | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-page-") as root:
        ex = NoiseExplorer(store=Store(root, read_only=[]), device=str(device), autorun=False, technology="sram")
        ex.p = 0.01                       # trains the network once and caches this setting
        ex.wait(kinds=("eval", "curve"))
        fresh = (round(0.011 + 1e-4 * i, 6) for i in itertools.count())
        state = {"flip": False}

        def cached():
            state["flip"] = not state["flip"]
            ex.p = 0.01 if state["flip"] else 0.02
            ex.wait(kinds=("eval",))

        ex.p = 0.02
        ex.wait(kinds=("eval", "curve"))

        def computed():
            ex.p = next(fresh)
            ex.wait(kinds=("eval",))

        t = interleaved_medians({"cached": cached, "computed": computed}, repeats or 5, device)
        ex.runner.shutdown()
    return {"title": "bench_page: playground p slider → new result in the page state (digits-bc, SRAM)",
            "columns": ["setting", "ms", "÷ cached"],
            "rows": [["cached (store hit)", t["cached"] * 1e3, 1.0], ["computed (20 draws)", t["computed"] * 1e3,
                                                                      t["computed"] / t["cached"]]],
            "summary": [("page", f"computed / cached callback latency (cached: {t['cached'] * 1e3:.0f} ms)",
                         t["computed"] / t["cached"], None)]}


if __name__ == "__main__":
    main_for(run, __doc__.split("\n")[0])

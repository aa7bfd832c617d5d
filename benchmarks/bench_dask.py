"""Distributed sweep: a Dask LocalCluster of 2 single-threaded workers vs the in-process run.

Spec: ``robustness`` with SGD and SAM × seeds 0, 1 (digits-cnn-small, 2 epochs) at σ_c ∈ {0, 0.3},
3 draws each — 4 training cells, 8 Monte-Carlo cells and the assembly (13 cells).  Every repeat
starts from an empty store.  "in-process" is ``run_spec`` on one torch thread, as each worker
runs (on a shared 2-core CPU torch's 2-thread regions slow these tiny tensors down);
"LocalCluster(2)" is ``run_spec_distributed`` on one cluster started once (its start-up, workers
importing torch and the experiments, is reported apart).  The overhead is the cluster's wall time (submission to last
result) ÷ the ideal ``Σ cell times ÷ 2``: 1 is perfect scaling; the dependencies (training before
its evaluations) and Dask's per-task cost make it larger.

    python benchmarks/bench_dask.py [--device cuda] [--repeats N]
"""

from __future__ import annotations

import statistics
import tempfile
import time

import torch

from workbench.experiments import Store
from workbench.experiments.cluster import SweepReport, run_spec_distributed, warm_up
from workbench.experiments.sweep import run_spec

from _common import interleaved_medians, main_for

WORKERS = 2
SPEC = {"name": "bench-dask", "experiments": {"robustness": {
    "methods": ["sgd", "sam"], "seeds": [0, 1], "levels": [0.0, 0.3], "adabs": [False], "draws": 3,
    "train": {"epochs": 2}}}}


def run(device: torch.device, repeats: int | None = None) -> dict:
    from distributed import Client, LocalCluster
    reports: list[SweepReport] = []
    t0 = time.perf_counter()
    with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster, set_as_default=False) as client:
        warm_up(client)
        startup = time.perf_counter() - t0

        def in_process():
            threads = torch.get_num_threads()
            torch.set_num_threads(1)            # as each worker runs: torch's multi-threaded regions only
            try:                                # slow these tiny tensors down on a shared CPU
                with tempfile.TemporaryDirectory(prefix="bench-dask-") as root:
                    run_spec(SPEC, Store(root, read_only=[]), device=str(device))
            finally:
                torch.set_num_threads(threads)

        def on_cluster():
            with tempfile.TemporaryDirectory(prefix="bench-dask-") as root:
                reports.append(run_spec_distributed(SPEC, Store(root, read_only=[]), scheduler=client,
                                                    device=str(device))[1])

        t = interleaved_medians({"in-process": in_process, "cluster": on_cluster}, repeats or 2, torch.device("cpu"))
    runs = reports[1:]                                   # the warm-up run is not counted
    cells = statistics.median(r.cell_seconds for r in runs)
    wall = statistics.median(r.wall_seconds for r in runs)
    overhead = statistics.median(r.overhead for r in runs)
    n_cells = runs[0].submitted
    speedup = t["in-process"] / t["cluster"]
    rows = [["in-process (run_spec, 1 torch thread)", t["in-process"], "", ""],
            [f"LocalCluster({WORKERS}) total (run_spec_distributed)", t["cluster"], "", f"{speedup:.2f}× in-process"],
            ["  cells: submission → last result", wall, "", ""],
            [f"  Σ cell times ({n_cells} cells, in the workers)", cells, "", ""],
            [f"  ideal = Σ ÷ {WORKERS}", cells / WORKERS, f"{overhead:.3f}", "overhead = wall ÷ ideal"],
            ["cluster start-up + worker warm-up (once)", startup, "", ""]]
    return {"title": f"bench_dask: sweep of {n_cells} cells, in-process vs Dask LocalCluster({WORKERS} × 1 thread)",
            "columns": ["case", "s", "overhead", "note"], "rows": rows,
            "notes": ["overhead > 1: training cells gate their evaluations, and each cell pays Dask's scheduling "
                      "and a store round trip; Σ cell times also grow when both workers share a busy CPU"],
            "summary": [("dask", f"LocalCluster({WORKERS}) wall ÷ (Σ cell times ÷ {WORKERS})", overhead, None),
                        ("dask", f"in-process ÷ LocalCluster({WORKERS}) wall (speed-up)", speedup, None)]}


if __name__ == "__main__":
    main_for(run, __doc__.split("\n")[0])

"""Run every benchmark in one process and print their tables plus one combined table of ratios.

    python benchmarks/run_all.py [--device cuda] [--repeats N] [--strict]

``--strict``: exit with status 1 when an acceptance check FAILs.  About 6–7 minutes on a
quiet 2-core CPU (budget: 10 minutes) before ``bench_streaming_memory`` was added; it alone takes
about 2 minutes on a busy 2-core CPU (50 000 generated images, three evaluations).
"""

from __future__ import annotations

import sys
import time

import bench_bsc
import bench_dask
import bench_memse
import bench_montecarlo
import bench_page
import bench_periphery
import bench_sam
import bench_store
import bench_streaming_memory
import bench_time_to_accuracy
import bench_train_noise

from _common import command_line, device_from, device_line, parser, report, table

BENCHMARKS = [
    bench_bsc,
    bench_montecarlo,
    bench_train_noise,
    bench_sam,
    bench_memse,
    bench_store,
    bench_streaming_memory,
    bench_periphery,
    bench_page,
    bench_dask,
    bench_time_to_accuracy,
]


def main() -> int:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--strict", action="store_true", help="exit 1 when an acceptance check fails")
    args = p.parse_args()
    device = device_from(args.device)
    command = command_line()
    t_all = time.perf_counter()
    summary, seconds = [], []
    for mod in BENCHMARKS:
        t0 = time.perf_counter()
        result = mod.run(device, repeats=args.repeats)
        seconds.append((mod.__name__, time.perf_counter() - t0))
        print(report(result, device, command))
        print(f"({mod.__name__}: {seconds[-1][1]:.1f} s)\n", flush=True)
        summary += result["summary"]
    total = time.perf_counter() - t_all
    rows = [
        [bench, what, ratio, "" if ok is None else ("PASS" if ok else "FAIL")] for bench, what, ratio, ok in summary
    ]
    print("== all benchmarks: ratios measured side by side in this run")
    print(f"device:  {device_line(device)}")
    print(f"command: {command}")
    print()
    print(table(["benchmark", "measurement", "ratio", "acceptance"], rows))
    print()
    print("time: " + ", ".join(f"{name} {s:.1f} s" for name, s in seconds) + f"; total {total:.1f} s")
    failed = any(ok is False for *_, ok in summary)
    return 1 if (failed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Playground waiting times, before and after the page's feedback work: seconds from an action to
the first visible result and to the full accuracy-vs-noise curve.

The page's state object (``NoiseExplorer``, the one the served page drives), each case in a fresh
throw-away store (so every result is computed, not read):

(a) SRAM → crossbar: the memory switched to the memristor crossbar with an empty store (nothing
    shipped): its network must be trained, then evaluated, then its 9-point σ_c curve computed;
(b) layer override: one layer's p set on its own (features.3 at p = 0.3), the clean networks read
    from the shipped store: the readout and the 11-point p curve are computed.

"first result": the readout (accuracy over Monte-Carlo draws) in the page state; "first curve
point": the first curve point the page can draw (before: the whole curve at once); "full curve".
The code *before* is the playground as of commit 446caac, checked out with
``git worktree add /tmp/pg-before 446caac`` (``--before PATH``); both run here as child
processes, interleaved (before, after, before, …), median of ``--repeats`` (default 1).

    python benchmarks/bench_page.py [--before /tmp/pg-before] [--repeats N] [--device cpu]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
AFTER = HERE.parent
DEFAULT_BEFORE = Path("/tmp/pg-before")
CASES = {"xbar": "(a) SRAM → crossbar", "layer": "(b) layer override"}


def measure(case: str, device: str) -> dict:
    """One cold measurement in this process (the ``workbench`` on ``sys.path`` decides which code)."""
    import threading

    from workbench.experiments import CURVE_GRIDS, Store
    from workbench.ui.explorer import NoiseExplorer

    with tempfile.TemporaryDirectory(prefix="bench-page-") as root:
        store = Store(root, read_only=[] if case == "xbar" else None)
        ex = NoiseExplorer(store=store, device=device, autorun=False, technology="sram")
        ex.refresh()
        ex.wait()                       # the SRAM page as it opens (trained and computed here for case a)
        ex.wait()
        knob = "sigma_c" if case == "xbar" else "p"
        grid = len(CURVE_GRIDS[knob])
        times: dict[str, float] = {}
        full = threading.Event()

        def on_result(_):
            times.setdefault("first result", time.perf_counter() - t0)

        def on_curve(event):
            ds = event.new
            if ds is None or ds.attrs.get("knob") != knob:
                return
            times.setdefault("first curve point", time.perf_counter() - t0)
            if ds.sizes[knob] == grid:
                times.setdefault("full curve", time.perf_counter() - t0)
                full.set()
        ex.param.watch(on_result, "result")
        ex.param.watch(on_curve, "curve")
        t0 = time.perf_counter()
        if case == "xbar":
            ex.technology = "memristor"
        else:
            ex.param.update(layer="features.3", layer_value=0.3)
        if not full.wait(600):
            raise SystemExit(f"bench_page: the {case} curve did not arrive within 600 s (error: {ex.error!r})")
        ex.runner.shutdown()
    return times


def _child(tree: Path, case: str, device: str) -> dict:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure", case, "--tree", str(tree),
                          "--device", device], cwd=tempfile.gettempdir(), capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ""})
    if out.returncode != 0:
        raise SystemExit(f"bench_page: measuring {case} in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(device, repeats: int | None = None, before: Path | None = None) -> dict:
    before = Path(before or os.environ.get("BENCH_PAGE_BEFORE", DEFAULT_BEFORE))
    notes = []
    trees = {"before": before, "after": AFTER}
    if not (before / "workbench" / "ui" / "explorer.py").exists():      # e.g. run_all.py on a fresh clone
        del trees["before"]
        notes.append(f"no checkout of the earlier code at {before}: only 'after' measured "
                     f"(`git worktree add {before} 446caac`, or --before PATH, adds the comparison)")
    got: dict[tuple[str, str], list[dict]] = {}
    for _ in range(repeats or 1):
        for case in CASES:
            for name, tree in trees.items():           # interleaved: a slow patch hits both alike
                got.setdefault((case, name), []).append(_child(tree, case, str(device)))

    def med(case, name, what):
        vals = [t[what] for t in got.get((case, name), []) if what in t]
        return statistics.median(vals) if vals else float("nan")

    rows, summary = [], []
    for case, label in CASES.items():
        for what in ("first result", "first curve point", "full curve"):
            b, a = med(case, "before", what), med(case, "after", what)
            rows.append([label, what, b, a, b / a])
        summary.append(("page", f"{label}: first result, before / after", med(case, "before", "first result")
                        / med(case, "after", "first result"), None))
    return {
        "title": "bench_page: playground waiting times (s), before (446caac) and after, side by side",
        "columns": ["action", "until", "before s", "after s", "before ÷ after"],
        "rows": rows,
        "summary": summary,
        "notes": notes
        + [
            "(a) empty store: trains the crossbar's network, evaluates, computes the 9-point σ_c curve; "
            "(b) shipped clean networks, the override's readout and 11-point p curve computed",
            f"median of {repeats or 1} cold run(s) per cell, each in a fresh store, before/after interleaved",
        ],
    }


if __name__ == "__main__":
    if "--measure" in sys.argv:
        args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
        sys.path.insert(0, args["--tree"])              # this tree's ``workbench`` (before or after)
        print(json.dumps(measure(args["--measure"], args.get("--device", "cpu"))))
        sys.exit(0)
    from _common import command_line, device_from, parser, report
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--before", type=Path, default=None, help="checkout of the earlier code (default /tmp/pg-before)")
    args = p.parse_args()
    dev = device_from(args.device)
    t0 = time.perf_counter()
    print(report(run(dev, repeats=args.repeats, before=args.before), dev, command_line()))
    print(f"(ran in {time.perf_counter() - t0:.1f} s)")

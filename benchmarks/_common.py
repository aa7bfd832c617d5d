"""Shared helpers of the benchmarks: arguments, device line, interleaved timing, tables.

Timings are medians of repeats, and the cases of one benchmark are timed *interleaved* (case A,
case B, case A, ...) so that a slow patch of a shared machine hits every case alike: only the
ratios measured side by side in one run are reported as results.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from typing import Callable, Sequence

import torch

from workbench.device import describe_device, resolve_device


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, auto, ...")
    p.add_argument("--repeats", type=int, default=None, help="timing repeats per case (median is reported)")
    return p


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def device_line(device: torch.device) -> str:
    threads = f", {torch.get_num_threads()} CPU threads" if device.type == "cpu" else ""
    return f"{describe_device(device)}{threads}, torch {torch.__version__}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(cases: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                        warmup: int = 1) -> dict[str, float]:
    """Median wall time (s) of each case, the cases run round-robin ``repeats`` times."""
    for _ in range(warmup):
        for fn in cases.values():
            fn()
            sync(device)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def report(result: dict, device: torch.device, command: str) -> str:
    """The printed form of one benchmark's ``run()`` result."""
    lines = [f"== {result['title']}", f"device:  {device_line(device)}", f"command: {command}", "",
             table(result["columns"], result["rows"])]
    if result.get("checks"):
        lines.append("")
        for text, ok in result["checks"]:
            lines.append(f"{'PASS' if ok else 'FAIL'}  {text}")
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def device_from(name: str) -> torch.device:
    """``resolve_device`` with a one-line error (e.g. ``--device cuda`` on a machine without CUDA)."""
    try:
        return resolve_device(name)
    except (ValueError, RuntimeError) as exc:
        raise SystemExit(f"benchmark: {exc}") from None


def main_for(run: Callable[..., dict], description: str) -> None:
    args = parser(description).parse_args()
    device = device_from(args.device)
    t0 = time.perf_counter()
    result = run(device, repeats=args.repeats)
    print(report(result, device, command_line()))
    print(f"(ran in {time.perf_counter() - t0:.1f} s)")

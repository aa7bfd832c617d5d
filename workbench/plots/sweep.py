"""Plots of a sweep's cells (a Dataset along ``cell`` from the Sweeps page): when each cell ran
on which worker, and how many cells are in each state."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import xarray as xr

STATE_COLORS = {"stored": "#9e9e9e", "missing": "#e0e0e0", "done": "#2e7d32", "failed": "#c62828", "blocked": "#ef6c00"}
#: a cell's state as the page names it (the data keeps the short names)
STATE_LABELS = {"stored": "in the store", "missing": "to compute", "done": "computed", "failed": "failed",
                "blocked": "not run"}
STAGE_COLORS = {"train": "#1565c0", "evaluate": "#6a1b9a", "assemble": "#00838f"}
#: a cell's stage in words (the legend of the timeline)
STAGE_LABELS = {
    "train": "training a network",
    "evaluate": "a Monte-Carlo point",
    "assemble": "assembling an experiment",
}


def _worker_label(address: str) -> str:
    """``tcp://127.0.0.1:40123`` -> ``127.0.0.1:40123`` (the row label; the protocol says nothing)."""
    return address.split("://", 1)[-1]


def cell_timeline(ds: xr.Dataset) -> hv.Overlay | hv.Text:
    """One bar per computed cell from its start to its end, one row per Dask worker, coloured by
    stage (training, Monte-Carlo point, assembly): the gaps are the scheduler's and the
    dependencies' cost, the overlap the parallelism."""
    ran = ds.where(np.isfinite(ds.start), drop=True) if ds.sizes.get("cell") else ds
    if not ran.sizes.get("cell"):
        return hv.Text(0.5, 0.5, "no cell computed in this session yet").opts(
            xaxis=None, yaxis=None, toolbar=None, height=160, responsive=True)
    df = pd.DataFrame({k: ran[k].values for k in ("name", "stage", "worker", "start", "end", "seconds")})
    df["worker"] = df["worker"].astype(str).map(_worker_label)
    workers = sorted(df.worker.unique())
    start = hv.Dimension("start", label="time since the first cell started", unit="s")
    end = hv.Dimension("end", label="end", unit="s")
    worker = hv.Dimension("worker", label="worker process")
    seconds = hv.Dimension("seconds", label="compute time", unit="s")
    name = hv.Dimension("name", label="cell")
    segs = []
    for stage, part in df.groupby("stage"):
        segs.append(hv.Segments(part, kdims=[start, worker, end, worker], vdims=[name, seconds],
                                label=STAGE_LABELS.get(str(stage), str(stage))).opts(
            color=STAGE_COLORS.get(str(stage), "#555555"), line_width=14, tools=["hover"]))
    # the legend sits below the plot, one entry a line: inside it would cover the bars of the top
    # worker, and in one row it is wider than the plot at 800 px
    return hv.Overlay(segs).opts(
        title="cells on the workers (hover for the cell)", xlabel="time since the first cell started (s)",
        ylabel="worker process", height=max(300, 180 + 40 * len(workers)), responsive=True, legend_position="bottom",
        legend_cols=1, show_grid=True)


def state_bars(ds: xr.Dataset) -> hv.Bars:
    """How many cells are stored, missing, computed, failed or blocked."""
    states = list(STATE_COLORS)
    counts = [int((ds.state.values == s).sum()) for s in states]
    data = pd.DataFrame({"state": [STATE_LABELS[s] for s in states], "cells": counts})
    colors = {STATE_LABELS[s]: c for s, c in STATE_COLORS.items()}
    return hv.Bars(data, hv.Dimension("state", label="state"), hv.Dimension("cells", label="number of cells")).opts(
        color="state", cmap=colors, title="cells by state", height=220, responsive=True, tools=["hover"],
        ylabel="number of cells", xrotation=30, line_color="#616161", show_legend=False)


__all__ = ["STAGE_COLORS", "STAGE_LABELS", "STATE_COLORS", "STATE_LABELS", "cell_timeline", "state_bars"]

"""Plots of a sweep's cells (a Dataset along ``cell`` from the Sweeps page): when each cell ran
on which worker, and how many cells are in each state."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import xarray as xr

STATE_COLORS = {"stored": "#9e9e9e", "missing": "#e0e0e0", "done": "#2e7d32", "failed": "#c62828", "blocked": "#ef6c00"}
STAGE_COLORS = {"train": "#1565c0", "evaluate": "#6a1b9a", "assemble": "#00838f"}


def cell_timeline(ds: xr.Dataset) -> hv.Overlay | hv.Text:
    """One bar per computed cell from its start to its end, one row per Dask worker, coloured by
    stage (training, Monte-Carlo point, assembly): the gaps are the scheduler's and the
    dependencies' cost, the overlap the parallelism."""
    ran = ds.where(np.isfinite(ds.start), drop=True) if ds.sizes.get("cell") else ds
    if not ran.sizes.get("cell"):
        return hv.Text(0.5, 0.5, "no cell computed in this session yet").opts(
            xaxis=None, yaxis=None, toolbar=None, height=160, responsive=True)
    df = pd.DataFrame({k: ran[k].values for k in ("name", "stage", "worker", "start", "end", "seconds")})
    df["worker"] = df["worker"].astype(str)
    workers = sorted(df.worker.unique())
    segs = []
    for stage, part in df.groupby("stage"):
        segs.append(hv.Segments(part, kdims=["start", "worker", "end", "worker"], vdims=["name", "seconds"],
                                label=str(stage)).opts(color=STAGE_COLORS.get(str(stage), "#555555"), line_width=14,
                                                       tools=["hover"]))
    return hv.Overlay(segs).opts(
        title="cells on the workers (hover for the cell)", xlabel="seconds after the first cell started",
        ylabel="worker", height=max(180, 60 + 40 * len(workers)), responsive=True, legend_position="top_right",
        show_grid=True)


def state_bars(ds: xr.Dataset) -> hv.Bars:
    """How many cells are stored, missing, computed, failed or blocked."""
    states = list(STATE_COLORS)
    counts = [int((ds.state.values == s).sum()) for s in states]
    data = pd.DataFrame({"state": states, "cells": counts})
    return hv.Bars(data, "state", "cells").opts(
        color="state", cmap=STATE_COLORS, title="cells by state", height=220, responsive=True, tools=["hover"],
        ylabel="cells")


__all__ = ["STAGE_COLORS", "STATE_COLORS", "cell_timeline", "state_bars"]

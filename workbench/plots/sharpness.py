"""Plots of the sharpness-aware training views (thesis ch. 5)."""

from __future__ import annotations

import holoviews as hv
import xarray as xr

LABELS = {"sam": "SAM", "asam": "ASAM", "samson2": "SAMSON₂", "samsoninf": "SAMSON∞"}


def perturbation_plot(ds: xr.Dataset) -> hv.Overlay:
    """Fig 5.1: ``ε*(w)`` per optimizer for weights in ``[-c, c]`` with ``∇L = 1``."""
    colors = hv.Cycle.default_cycles["default_colors"]
    curves = [hv.Curve((ds.w.values, ds.epsilon.sel(optimizer=m).values), hv.Dimension("w", label="weight w"),
                       hv.Dimension("epsilon", label="perturbation ε*(w)"), label=LABELS.get(str(m), str(m)))
              .opts(color=colors[i % len(colors)], line_width=2)
              for i, m in enumerate(ds.optimizer.values)]
    return hv.Overlay(curves).opts(responsive=True, min_height=300, legend_position="top",
                                   title=f"ε*(w), ρ = {ds.attrs['rho']:g}, weights in ±{ds.attrs['c']:g} (Fig 5.1)")

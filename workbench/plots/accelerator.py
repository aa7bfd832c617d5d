"""Plots of the Accelerator page: energy per inference by layer and component (stacked bars),
accuracy against ADC resolution; the accuracy distribution is the playground's
(:func:`~workbench.plots.playground.accuracy_distribution`).  Pure functions Dataset -> HoloViews."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import xarray as xr

from .playground import ACCENT, CLEAN, CURRENT, accuracy_distribution
from .units import si_prefix

#: one colour per energy component (order of :data:`workbench.hardware.profile.COMPONENTS`)
COMPONENT_COLORS = {"array": "#1f77b4", "dac": "#ff7f0e", "adc": "#d62728", "weight_buffer": "#9467bd",
                    "activation_buffer": "#8c564b", "accumulation": "#2ca02c"}
#: the components in words (legend, explanation)
COMPONENT_WORDS = {"array": "crossbar array", "dac": "DACs", "adc": "ADCs", "weight_buffer": "weight buffer",
                   "activation_buffer": "activation buffer", "accumulation": "digital accumulation"}
#: SI prefixes for an energy axis: (factor, unit)
def energy_unit(joules: float) -> tuple[float, str]:
    """``(factor, unit)`` to show an energy of about ``joules``: ``energy_unit(1.2e-7) == (1e-9, "nJ")``."""
    return si_prefix(joules, "J")


def fmt_energy(joules: float) -> str:
    """``1.22e-07`` -> ``'122 nJ'``."""
    factor, unit = energy_unit(joules)
    return f"{joules / factor:.3g} {unit}"


def fmt_time(seconds: float) -> str:
    """``2.01e-05`` -> ``'20.1 µs'``."""
    factor, unit = si_prefix(seconds, "s", smallest=1e-12)
    return f"{seconds / factor:.3g} {unit}"


def layer_energy_table(ds: xr.Dataset) -> xr.DataArray:
    """Energy per inference (J) by layer and component: the mean over draws when ``ds`` has them."""
    e = ds.layer_energy_j
    return e.mean("draw") if "draw" in e.dims else e


def energy_bars(ds: xr.Dataset) -> hv.Bars:
    """Stacked bars: energy per inference of each layer, split by component, in the SI unit that
    suits the largest layer (the unit on the axis)."""
    e = layer_energy_table(ds)
    layers = [str(v) for v in e.layer.values]
    comps = [str(v) for v in e.component.values]
    vals = np.asarray(e.transpose("layer", "component").values, dtype=float)
    factor, unit = energy_unit(float(vals.sum(axis=1).max()) if vals.size else 0.0)
    rows = [(layer, COMPONENT_WORDS.get(c, c), vals[i, j] / factor)
            for i, layer in enumerate(layers) for j, c in enumerate(comps)]
    colors = [COMPONENT_COLORS.get(c, ACCENT) for c in comps]
    kdims = [hv.Dimension("layer", label="layer"), hv.Dimension("component", label="component")]
    vdim = hv.Dimension("energy", label=f"energy per inference ({unit})")
    bars = hv.Bars(rows, kdims, vdim).opts(
        stacked=True, cmap=colors, responsive=True, min_height=360, xrotation=30, xlabel="layer",
        tools=["hover"], legend_position="bottom", legend_cols=3, title="energy per inference by layer and component",
        yformatter="%.3g")
    return bars


def accuracy_vs_adc(study: xr.Dataset, current: int | None = None) -> hv.Overlay:
    """Mean accuracy (band: 95 % CI of the mean over draws) against ADC resolution (bits)."""
    bits = np.asarray(study.adc_bits.values, dtype=float)
    acc = np.asarray(study.accuracy.values, dtype=float)
    n = acc.shape[-1]
    mean = acc.mean(-1)
    half = 1.96 * acc.std(-1, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
    xd = hv.Dimension("adc_bits", label="ADC resolution (bits)")
    yd = hv.Dimension("accuracy", label="test accuracy", range=(0, 1.02))
    over = (hv.Spread((bits, mean, half), xd, [yd, "ci"]).opts(fill_alpha=0.25, fill_color=ACCENT, line_alpha=0)
            * hv.Curve((bits, mean), xd, yd).opts(color=ACCENT, line_width=2)
            * hv.Scatter((bits, mean), xd, yd).opts(color=ACCENT, size=6, tools=["hover"]))
    clean = float(study.attrs.get("clean_accuracy", np.nan))
    if np.isfinite(clean):
        over = over * hv.HLine(clean).opts(color=CLEAN, line_dash="dashed", line_width=2)
    if current is not None:
        over = over * hv.VLine(float(current)).opts(color=CURRENT, line_width=2)
    return over.opts(ylim=(0, 1.02), responsive=True, min_height=280, show_legend=False,
                     title="accuracy vs ADC resolution")


__all__ = ["COMPONENT_COLORS", "COMPONENT_WORDS", "accuracy_distribution", "accuracy_vs_adc", "energy_bars",
           "energy_unit", "fmt_energy", "fmt_time", "layer_energy_table"]

"""Plots of the crossbar power and NAS views (thesis ch. 6): pure functions Dataset → HoloViews."""

from __future__ import annotations

import re

import holoviews as hv
import numpy as np
import xarray as xr
from bokeh.models import NumeralTickFormatter

from ..nas.search import objective_matrix, pareto_mask
from .units import si_prefix

STRATEGY_COLORS = {"dataset": "#7f7f7f", "M1": "#1f77b4", "M2": "#d62728", "M3": "#2ca02c", "live": "#9467bd"}
STRATEGY_LABELS = {"dataset": "best collected", "M1": "M1: architecture", "M2": "M2: architecture + g_u",
                   "M3": "M3: M1 with g_u scaled", "live": "live search (estimated)"}
ACC = hv.Dimension("accuracy", label="test accuracy")
#: crossbar power has no physical unit here: only ratios between networks mean something
POW = hv.Dimension("power", label="crossbar power per inference (arbitrary units)")
#: the quantities a Pareto view can put on an axis (variables of a NAS study), in a fixed order
FRONT_AXES = ("accuracy", "power", "energy_j", "latency_s")
#: what each of them is called on an axis and in a title
AXIS_NAMES = {"accuracy": "test accuracy", "power": "crossbar power per inference",
              "energy_j": "energy per inference", "latency_s": "latency per inference"}
SHORT_NAMES = {"accuracy": "accuracy", "power": "power", "energy_j": "energy", "latency_s": "latency"}


def si_unit(values, unit: str) -> tuple[float, str]:
    """``(factor, "nJ")``: the SI prefix that shows ``values`` (J or s) as numbers ≥ 1 (the largest
    magnitude picks it); multiply the values by ``factor``."""
    v = np.abs(np.asarray(values, float))
    v = v[np.isfinite(v) & (v > 0)]
    factor, label = si_prefix(float(v.max()) if v.size else 1.0, unit)
    return 1.0 / factor, label


def axis_dimension(name: str, values) -> tuple[hv.Dimension, float]:
    """The axis of the study variable ``name`` (:data:`FRONT_AXES`) for ``values``, and the factor
    that turns them into its units: accuracy (1), power (arbitrary units), energy in pJ/nJ/µJ…,
    latency in ns/µs/ms… (whichever shows the largest value as a number ≥ 1)."""
    if name == "accuracy":
        return ACC, 1.0
    if name == "power":
        return POW, 1.0
    unit = {"energy_j": "J", "latency_s": "s"}.get(name)
    if unit is None:
        raise ValueError(f"{name!r} is not a Pareto axis; axes: {', '.join(FRONT_AXES)}")
    factor, text = si_unit(values, unit)
    return hv.Dimension(name, label=f"{AXIS_NAMES[name]} ({text})"), factor


def short_layer_name(name: str) -> str:
    """``stages.0.1.conv2.conv`` -> ``stage 1 block 2 conv2``; ``stem.conv`` -> ``stem``."""
    m = re.fullmatch(r"stages\.(\d+)\.(\d+)\.(\w+?)(?:\.conv)?", name)
    if m:
        part = "skip" if m.group(3) == "shortcut" else m.group(3)
        return f"stage {int(m.group(1)) + 1} block {int(m.group(2)) + 1} {part}"
    return {"stem.conv": "stem", "head": "head (classifier)"}.get(name, name)


def number_formatter(values) -> NumeralTickFormatter:
    """Tick labels as plain numbers at the values' scale (``151,927``, ``2.5``, ``0.0012``), never ``2.000e+4``."""
    v = np.asarray(values, float)
    v = np.abs(v[np.isfinite(v)])
    top = float(v.max()) if v.size else 1.0
    fmt = "0,0" if top >= 100 else "0.[00]" if top >= 1 else "0.[0000]"
    return NumeralTickFormatter(format=fmt)


def _front_line(acc, pw):
    """Staircase of a non-dominated set, sorted by power (by the x values in general)."""
    o = np.argsort(pw)
    return np.asarray(pw)[o], np.asarray(acc)[o]


def _pair_front(xv, yv, x: str, y: str) -> np.ndarray:
    """Mask of the points non-dominated on the two axes (accuracy maximised, every cost minimised)."""
    return pareto_mask(objective_matrix({x: xv, y: yv}, [x, y]))


def pareto_axes(ds: xr.Dataset, x: str, y: str) -> tuple[hv.Dimension, float, hv.Dimension, float]:
    """``(X, fx, Y, fy)``: the axes :func:`pareto_plot` draws for ``x``, ``y`` and the factors from the
    study's units to theirs (a click at ``(cx, cy)`` is the point ``(cx / fx, cy / fy)`` of the study)."""
    def values(v):
        return np.concatenate([ds[v].values.ravel()]
                              + ([ds[f"collected_{v}"].values.ravel()] if f"collected_{v}" in ds else []))
    X, fx = axis_dimension(x, values(x))
    Y, fy = axis_dimension(y, values(y))
    return X, fx, Y, fy


def pareto_plot(ds: xr.Dataset, selected: tuple[str, int] | None = None, live: dict | None = None,
                x: str = "power", y: str = "accuracy") -> hv.Overlay:
    """Fig 6.2: re-simulated power–accuracy points of every strategy, their Pareto fronts (lines),
    the collected states (estimated on n_a/n_p minibatches, faint), the selected point, and an
    optional live front ``{"accuracy", "power"}`` streamed by a running search.

    ``x``, ``y``: the study variables on the axes (:data:`FRONT_AXES` present in ``ds``; default
    power–accuracy): energy and latency in readable SI units (nJ, µs, …).  Each strategy's line is
    its front on those two quantities (a study searched on more objectives has points off it)."""
    if x == y or x not in ds or y not in ds:
        raise ValueError(f"axes x={x!r}, y={y!r} must be two different variables of the study "
                         f"({', '.join(v for v in FRONT_AXES if v in ds)})")
    xs = [ds[x].values.ravel()] + ([ds[f"collected_{x}"].values.ravel()] if f"collected_{x}" in ds else [])
    ys = [ds[y].values.ravel()] + ([ds[f"collected_{y}"].values.ravel()] if f"collected_{y}" in ds else [])
    X, fx, Y, fy = pareto_axes(ds, x, y)
    steps = "steps-pre" if x == "accuracy" else "steps-post"     # the staircase bounds what the front dominates
    els = []
    if f"collected_{x}" in ds and f"collected_{y}" in ds:
        els.append(hv.Scatter((ds[f"collected_{x}"].values * fx, ds[f"collected_{y}"].values * fy), X, Y,
                              label="collected (estimated)").opts(color="#cccccc", size=3, alpha=0.5))
    for s in ds.strategy.values:
        sub = ds.sel(strategy=s)
        ok = np.isfinite(sub[x].values) & np.isfinite(sub[y].values)
        a, p = sub[y].values[ok], sub[x].values[ok]
        pts = [(float(pp * fx), float(aa * fy), str(s), int(i), float(sd)) for pp, aa, i, sd in
               zip(p, a, sub.point.values[ok], sub.accuracy_std.values[ok])]
        color = STRATEGY_COLORS.get(str(s), "black")
        els.append(
            hv.Scatter(pts, X, [Y, "strategy", "point", "std"], label=STRATEGY_LABELS.get(str(s), str(s))).opts(
                color=color, size=8, tools=["hover", "tap"]
            )
        )
        f = _pair_front(p, a, x, y) if (x, y) != ("power", "accuracy") else sub.on_front.values[ok]
        if f.any():
            xl, yl = _front_line(a[f] * fy, p[f] * fx)
            els.append(hv.Curve((xl, yl), X, Y).opts(color=color, line_width=2, interpolation=steps))
    if live and x in live and y in live:
        xl, yl = _front_line(np.asarray(live[y], float) * fy, np.asarray(live[x], float) * fx)
        els.append(hv.Curve((xl, yl), X, Y, label=STRATEGY_LABELS["live"]).opts(color=STRATEGY_COLORS["live"],
                                                                                 line_dash="dashed", line_width=2))
    if selected is not None:
        s, i = selected
        pt = ds.sel(strategy=s).isel(point=i)
        els.append(hv.Scatter([(float(pt[x]) * fx, float(pt[y]) * fy)], X, Y).opts(
            color="black", size=16, marker="circle", fill_alpha=0, line_width=3))
    title = ("Power–accuracy Pareto fronts (Fig 6.2)" if (x, y) == ("power", "accuracy") else
             f"{SHORT_NAMES[x].capitalize()}–{SHORT_NAMES[y]} Pareto fronts")
    opts = {} if y == "accuracy" else {"yformatter": number_formatter(np.concatenate(ys) * fy)}
    return hv.Overlay(els).opts(
        responsive=True,
        min_height=460,
        legend_position="bottom",
        legend_cols=3,
        show_grid=True,
        xformatter=number_formatter(np.concatenate(xs) * fx),
        title=title,
        **opts,
    )


def _bar_height(n: int) -> int:
    return 90 + 18 * n


def layer_power_bars(layer_power: xr.DataArray, title: str = "Crossbar power per layer") -> hv.Bars:
    """Horizontal bars, one per layer (in network order, first on top), so long layer names stay readable."""
    names = [short_layer_name(str(n)) for n in layer_power.layer.values]
    vals = np.asarray(layer_power.values, float)
    return hv.Bars((names[::-1], vals[::-1]), hv.Dimension("layer", label="crossbar layer"),
                   hv.Dimension("power", label="power per inference (arbitrary units)")).opts(
        invert_axes=True, responsive=True, height=_bar_height(len(names)), color="#dd8452", tools=["hover"],
        xformatter=number_formatter(vals), title=title)


def g_u_bars(g_u_rel: xr.DataArray, title: str = "g_u / g_u^d per layer") -> hv.Bars:
    """g_u of each layer as a multiple of its default g_u^d = ‖W‖∞ (eq 6.1–6.2), horizontal bars."""
    names = [short_layer_name(str(n)) for n in g_u_rel.layer.values]
    vals = np.asarray(g_u_rel.values, float)
    return hv.Bars(
        (names[::-1], vals[::-1]),
        hv.Dimension("layer", label="crossbar layer"),
        hv.Dimension("g_u", label="g_u / g_u^d", range=(0, 1.6)),
    ).opts(
        invert_axes=True, responsive=True, height=_bar_height(len(names)), color="#4c72b0", tools=["hover"], title=title
    )


def accuracy_histogram(acc: np.ndarray, title: str = "Accuracy over Monte-Carlo draws") -> hv.Histogram:
    acc = np.asarray(acc, dtype=float)
    lo, hi = float(acc.min()), float(acc.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.005, hi + 0.005
    freq, edges = np.histogram(acc, bins=min(15, max(3, acc.size // 2)), range=(lo, hi))
    return hv.Histogram((edges, freq), kdims=[hv.Dimension("accuracy", label="test accuracy")], vdims=["draws"]).opts(
        responsive=True, min_height=260, color="#55a868", title=title)


def robustness_curve(ds: xr.Dataset) -> hv.Overlay:
    """Accuracy (mean ± std over draws) of one state as its conductance noise is scaled."""
    m, s = ds.accuracy.mean("draw").values, ds.accuracy.std("draw").values
    x = ds.scale.values
    xd = hv.Dimension("scale", label=f"noise σ multiple (σ = {ds.attrs.get('sigma', float('nan')):g} µS)")
    yd = hv.Dimension("accuracy", label="test accuracy", range=(0, 1.02))
    return (
        hv.Spread((x, m, s), xd, [yd, "std"]).opts(alpha=0.2)
        * hv.Curve((x, m), xd, yd).opts(line_width=2)
        * hv.Scatter((x, m), xd, yd).opts(size=6)
    ).opts(responsive=True, min_height=260, title="Robustness of this network")


def selection_plot(ds: xr.Dataset) -> hv.Overlay:
    """Fig 6.1: smallest n_a and n_p satisfying eq 6.7 vs the tolerance δ."""
    d = hv.Dimension("delta", label="tolerance δ")
    n = hv.Dimension("n", label="minibatches")
    return (hv.Curve((ds.delta.values, ds.n_a.values), d, n, label="n_a (accuracy)").opts(line_width=2) *
            hv.Scatter((ds.delta.values, ds.n_a.values), d, n).opts(size=6) *
            hv.Curve((ds.delta.values, ds.n_p.values), d, n, label="n_p (power)").opts(line_width=2, line_dash="dashed")
            ).opts(responsive=True, min_height=280, logx=True, legend_position="right",
                   title=f"Smallest n_a, n_p with Pr(rank right) > {1 - ds.attrs.get('epsilon', 0.05):g} (Fig 6.1)")

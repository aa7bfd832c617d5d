"""Plots of the noise playground."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import xarray as xr

ACCENT = "#1f77b4"
CLEAN = "#2ca02c"
CURRENT = "#d62728"


def _label(da: xr.DataArray) -> str:
    units = da.attrs.get("units", "")
    name = da.attrs.get("long_name", da.name)
    return f"{name} ({units})" if units and units != "1" else name


def accuracy_distribution(ds: xr.Dataset, label: str = "current setting") -> hv.Overlay:
    """Accuracy over Monte-Carlo draws as a violin with its box, the clean accuracy as a line."""
    acc = np.asarray(ds.accuracy.values, dtype=float)
    data = {"setting": [label] * acc.size, "accuracy": acc}
    clean = float(ds.attrs.get("clean_accuracy", np.nan))
    low = float(np.nanmin(np.append(acc, clean if np.isfinite(clean) else 1.0)))
    ylim = (max(0.0, low - 0.05), 1.01)
    vdim = hv.Dimension("accuracy", label=_label(ds.accuracy))
    box = hv.BoxWhisker(data, "setting", vdim).opts(box_fill_color=ACCENT, box_alpha=0.35, whisker_color="black")
    pts = hv.Scatter(([label] * acc.size, acc), "setting", vdim).opts(color="black", size=4, alpha=0.5, jitter=0.25)
    over = box * pts
    if np.isfinite(clean):
        over = over * hv.HLine(clean).opts(color=CLEAN, line_dash="dashed", line_width=2)
    return over.opts(title=f"accuracy over {acc.size} draws", ylim=ylim, responsive=True, min_height=300,
                     show_legend=False)


def noise_curve_plot(curve: xr.Dataset, current: float | None = None, log_x: bool | None = None) -> hv.Overlay:
    """Mean accuracy (band: 95 % CI of the mean) against the swept knob; the current setting as a
    vertical line and the clean accuracy as a dashed horizontal line.

    For a log axis the knob value 0 (noise-free) cannot be placed: it is shown by the clean line.
    """
    knob = curve.attrs.get("knob") or [d for d in curve.dims if d != "draw"][0]
    x = np.asarray(curve[knob].values, dtype=float)
    log_x = (knob == "p") if log_x is None else log_x
    keep = x > 0 if log_x else np.ones_like(x, dtype=bool)
    xd = hv.Dimension(knob, label=_label(curve[knob]))
    yd = hv.Dimension("accuracy", label="test accuracy", range=(0, 1.02))
    mean, lo, hi = (np.asarray(curve[v].values, dtype=float)[keep] for v in ("accuracy_mean", "ci95_low", "ci95_high"))
    xs = x[keep]
    band = hv.Spread((xs, mean, mean - lo, hi - mean), xd, [yd, "lo", "hi"]).opts(
        fill_alpha=0.25, fill_color=ACCENT, line_alpha=0
    )
    line = hv.Curve((xs, mean), xd, yd).opts(color=ACCENT, line_width=2)
    dots = hv.Scatter((xs, mean), xd, yd).opts(color=ACCENT, size=6, tools=["hover"])
    over = band * line * dots
    clean = float(curve.attrs.get("clean_accuracy", np.nan))
    if np.isfinite(clean):
        over = over * hv.HLine(clean).opts(color=CLEAN, line_dash="dashed", line_width=2)
    if current is not None and (current > 0 or not log_x):
        over = over * hv.VLine(float(current)).opts(color=CURRENT, line_width=2)
    return over.opts(logx=log_x, ylim=(0, 1.02), responsive=True, min_height=300, show_legend=False,
                     title=f"accuracy vs {curve[knob].attrs.get('long_name', knob)}")


def layer_cost_bars(costs: dict[str, float], what: str = "energy", units: str = "") -> hv.Bars:
    """Per-layer memory energy (eq 3.30 terms) or crossbar power (eq 3.41) as bars."""
    names = list(costs)
    vals = [float(costs[n]) for n in names]
    label = f"{what} ({units})" if units else what
    return hv.Bars((names, vals), hv.Dimension("layer"), hv.Dimension(what, label=label)).opts(
        color=ACCENT, xrotation=45, responsive=True, min_height=260, tools=["hover"], title=f"{what} per layer",
        yformatter="%.3g")


def training_curve(history: dict[str, list[float]] | xr.Dataset) -> tuple[hv.Overlay, hv.Overlay]:
    """Training loss and test accuracy per epoch (a live view during training), as two plots.

    Two separate plots, not an ``hv.Layout``: a layout of responsive plots in a pane that only
    stretches its width drew its subplots with no height at all (empty panels, axis text clipped)."""
    if isinstance(history, xr.Dataset):
        history = {k: history[k].values.tolist() for k in ("loss", "test_accuracy")}
    loss = np.asarray(history.get("loss", []), dtype=float)
    acc = np.asarray(history.get("test_accuracy", []), dtype=float)
    ep = np.arange(1, loss.size + 1)
    xd = hv.Dimension("epoch", label="epoch")
    loss_d = hv.Dimension("loss", label="training loss (nats, cross-entropy)")
    acc_d = hv.Dimension("test_accuracy", label="test accuracy", range=(0, 1.02))
    style = dict(responsive=True, height=230, line_width=2, show_legend=False, xticks=_epoch_ticks(ep.size))
    c1 = hv.Curve((ep, loss), xd, loss_d) * hv.Scatter((ep, loss), xd, loss_d).opts(color=ACCENT, size=6)
    c2 = hv.Curve((ep, acc), xd, acc_d) * hv.Scatter((ep, acc), xd, acc_d).opts(color=CLEAN, size=6)
    return (c1.opts(hv.opts.Curve(color=ACCENT, **style)).opts(title="training loss per epoch", show_legend=False),
            c2.opts(hv.opts.Curve(color=CLEAN, **style)).opts(title="test accuracy per epoch", ylim=(0, 1.02),
                                                              show_legend=False))


def _epoch_ticks(n: int) -> list[int]:
    """Whole epochs only (at most about ten ticks)."""
    step = max(1, -(-n // 10))
    return list(range(1, max(n, 1) + 1, step))

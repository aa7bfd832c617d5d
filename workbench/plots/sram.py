"""Plots of the under-volted SRAM page (thesis ch. 4): pure functions of Datasets."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import xarray as xr

from .playground import ACCENT, CLEAN, CURRENT

METHOD_STYLE = {
    "fp16": ("16-bit weights, reliable, width varied", "#7f7f7f", "square"),
    "bc": ("1-bit weights, reliable, width varied", "#1f77b4", "triangle"),
    "bc_uniform": ("1-bit weights, one BER p for all layers", "#ff7f0e", "circle"),
    "lanmax": ("1-bit weights, LaNMax BER per layer, α varied", "#2ca02c", "diamond"),
}

#: the energy axis of Fig 4.4 per reference (experiments.sram.energy_of); a dataset without the attr predates
#: the thesis' convention and was relative to the 16-bit network
ENERGY_LABELS = {
    "same-network": "memory energy E, relative to the full-width 1-bit network read reliably",
    "fp16": "memory energy E, relative to the full-width 16-bit network read reliably",
}


def uniform_ber_plot(ds: xr.Dataset, p_train: float | None = None, p: float | None = None) -> hv.Overlay:
    """Fig 4.2: mean test accuracy against test BER ``p`` for each training BER ``p_t``."""
    curves = []
    xs = ds.p.values
    keep = xs > 0
    colors = hv.Cycle.default_cycles["default_colors"]
    for i, pt in enumerate(ds.p_train.values):
        mean = ds.accuracy_mean.sel(p_train=pt).values[keep]
        width = 2 if (p_train is None or not np.isclose(pt, p_train)) else 5
        label = f"p_t = {pt:g}"
        curves.append(hv.Curve((xs[keep], mean), hv.Dimension("p", label="test BER p"),
                               hv.Dimension("accuracy", label="mean test accuracy"), label=label)
                      .opts(color=colors[i % len(colors)], line_width=width, tools=["hover"]))
        curves.append(
            hv.Scatter((xs[keep], mean), "p", "accuracy", label=label).opts(color=colors[i % len(colors)], size=5)
        )
    over = hv.Overlay(curves)
    if p is not None and p > 0:
        over = over * hv.VLine(float(p)).opts(color=CURRENT, line_width=2)
    return over.opts(logx=True, ylim=(0, 1.02), responsive=True, min_height=340, legend_position="right",
                     title="accuracy vs test BER p, one curve per training BER (Fig 4.2)")


def sensitivity_plot(ds: xr.Dataset) -> hv.Overlay:
    """Fig 4.3: accuracy with all layers at ``base_p`` and one layer at ``high_p``, one box per layer."""
    acc = ds.accuracy.transpose("layer", ...).values.reshape(ds.sizes["layer"], -1)
    layers = [str(layer) for layer in ds.layer.values]
    data = {"layer": np.repeat(layers, acc.shape[1]), "accuracy": acc.ravel()}
    box = hv.BoxWhisker(data, "layer", hv.Dimension("accuracy", label="test accuracy")).opts(
        box_fill_color=ACCENT, box_alpha=0.4, xrotation=45)
    base = float(np.nanmean(ds.baseline.values)) if "baseline" in ds else np.nan
    over = box
    if np.isfinite(base):
        over = over * hv.HLine(base).opts(color=CLEAN, line_dash="dashed", line_width=2)
    if str(ds.attrs.get("base_p_kind", "uniform")).startswith("per layer"):
        others = "the others at their own BERs"
    else:
        others = f"the others at p = {float(ds.attrs.get('base_p', 0.01)):g}"
    return over.opts(ylim=(0, 1.02), responsive=True, min_height=320,
                     title=f"one layer at p = {float(ds.attrs.get('high_p', 0.5)):g}, {others} (Fig 4.3)")


def param_count_bars(counts: dict[str, int] | xr.DataArray) -> hv.Bars:
    """Fig 4.1: number of weights per layer."""
    if isinstance(counts, xr.DataArray):
        counts = dict(zip([str(layer) for layer in counts.layer.values], counts.values.tolist()))
    return hv.Bars(
        (list(counts), list(counts.values())), "layer", hv.Dimension("count", label="number of weights")
    ).opts(
        color="#7f7f7f",
        xrotation=45,
        responsive=True,
        min_height=260,
        toolbar="above",
        logy=False,
        tools=["hover"],
        title="weights per layer (Fig 4.1)",
    )


def energy_accuracy_plot(ds: xr.Dataset) -> hv.Overlay:
    """Fig 4.4: mean accuracy against memory energy (eq 3.30 relative to ``ds.attrs["energy_reference"]``,
    :data:`ENERGY_LABELS`) for each method, log energy.  Each point carries its 95 % confidence interval
    over Monte-Carlo draws as a whisker where one exists (a reliable memory has no draws to vary)."""
    layers = []
    energy = hv.Dimension("energy", label=ENERGY_LABELS[ds.attrs.get("energy_reference", "fp16")])
    accuracy = hv.Dimension("accuracy", label="mean test accuracy")
    for method, (label, color, marker) in METHOD_STYLE.items():
        sel = ds.where(ds.method == method, drop=True)
        if not sel.point.size:
            continue
        order = np.argsort(sel.energy.values)
        e, a = sel.energy.values[order], sel.accuracy_mean.values[order]
        pts = {
            "energy": e,
            "accuracy": a,
            "value": sel.value.values[order],
            "point": sel.point.values[order].astype(int),
        }
        layers.append(hv.Curve((e, a), energy, accuracy, label=label).opts(color=color, alpha=0.6))
        if "ci95_low" in sel and "ci95_high" in sel:
            lo, hi = sel.ci95_low.values[order], sel.ci95_high.values[order]
            ok = np.isfinite(lo) & np.isfinite(hi)
            if ok.any():
                layers.append(hv.ErrorBars((e[ok], a[ok], a[ok] - lo[ok], hi[ok] - a[ok]), energy,
                                           [accuracy, "neg", "pos"]).opts(color=color, line_width=1.5))
        layers.append(hv.Scatter(pts, energy, [accuracy, "value", "point"], label=label).opts(
            color=color, marker=marker, size=10, tools=["hover", "tap"]))
    return hv.Overlay(layers).opts(
        logx=True,
        responsive=True,
        min_height=380,
        legend_position="bottom",
        padding=0.06,
        toolbar="above",
        legend_cols=2,
        title="accuracy vs memory energy (Fig 4.4), click a point",
    )


def lanmax_study_plot(ds: xr.Dataset, target: str = "common") -> hv.Overlay:
    """Energy ratio at equal accuracy (baseline E ÷ LaNMax E) per LaNMax variant and baseline at the
    study's ``target`` accuracy (one of its ``target`` coordinate), with
    its 95 % bootstrap CI over seeds (:func:`workbench.experiments.lanmax_study.energy_ratio`), log
    axis; parity (1) and the thesis' 2.4× vs a uniform BER drawn as lines.  Variants whose LaNMax
    curve misses the target accuracy have no point."""
    variant = hv.Dimension("variant", label="LaNMax variant")
    ratio = hv.Dimension("ratio", label="baseline energy ÷ LaNMax energy at equal accuracy")
    layers = []
    styles = {"uniform": ("vs one BER p for all layers", "#ff7f0e", "circle"),
              "width": ("vs reliable 1-bit weights, width varied", "#1f77b4", "triangle")}
    names = [str(v) for v in ds.variant_name.values]
    for base, (label, color, marker) in styles.items():
        sel = ds.sel(baseline=base, target=target)
        r, lo, hi = sel.energy_ratio.values, sel.ratio_ci95_low.values, sel.ratio_ci95_high.values
        ok = np.isfinite(r) & (r > 0)
        x = [n for n, k in zip(names, ok) if k]
        if not x:
            continue
        clo, chi = np.clip(lo[ok], 1e-3, None), np.clip(hi[ok], 1e-3, 1e3)
        layers.append(hv.ErrorBars((x, r[ok], r[ok] - clo, chi - r[ok]), variant, [ratio, "neg", "pos"]).opts(
            color=color, line_width=2))
        layers.append(hv.Scatter((x, r[ok]), variant, ratio, label=label).opts(color=color, marker=marker, size=11,
                                                                               tools=["hover"]))
    layers.append(hv.HLine(1.0).opts(color="black", line_dash="dashed", line_width=1))
    layers.append(hv.HLine(float(ds.attrs.get("thesis_ratio", 2.4))).opts(color=ACCENT, line_dash="dotted"))
    return hv.Overlay(layers).opts(
        logy=True, responsive=True, min_height=320, legend_position="bottom", toolbar="above", padding=0.1,
        title=f"LaNMax energy ratio at equal accuracy ({target} target)")


def layer_p_bars(p: dict[str, float], title: str = "BER per layer (Fig 4.5)") -> hv.Overlay:
    """One point per layer at its BER ``p`` on a log axis (a bar on a log axis would start at an
    arbitrary floor and suggest a length that means nothing).  A reliable layer (``p = 0``) has no
    place on a log axis: it is drawn as an open square on the axis floor, ``1e-5``."""
    names = list(p)
    vals = np.array([float(p[n]) for n in names])
    floor = 1e-5
    dim_p = hv.Dimension("p", label="bit error rate p")
    layer = hv.Dimension("layer", values=names)          # the network's order, whichever points are drawn first
    noisy = hv.Scatter(([n for n, v in zip(names, vals) if v > 0], vals[vals > 0]), layer, dim_p).opts(
        color=ACCENT, size=11, tools=["hover"])
    zero = [n for n, v in zip(names, vals) if v <= 0]
    reliable = hv.Scatter((zero, np.full(len(zero), floor)), layer, dim_p,
                          label="reliable (p = 0)" if zero else "").opts(color=ACCENT, marker="square", fill_alpha=0,
                                                                          size=11)
    return (noisy * reliable).opts(logy=True, ylim=(floor / 2, 1), xrotation=45, responsive=True, min_height=280,
                                   toolbar="above", legend_position="right", show_legend=bool(zero),
                                   title=title)


def lanmax_trajectory_plot(traj: xr.Dataset | dict) -> hv.Overlay:
    """Per-layer ``p`` after each epoch of a LaNMax run (streamed live during a run)."""
    if isinstance(traj, xr.Dataset):
        epochs = traj.epoch.values
        series = {str(layer): traj.p.sel(layer=layer).values for layer in traj.layer.values}
    else:
        epochs = np.arange(1, len(next(iter(traj.values()), [])) + 1)
        series = traj
    colors = hv.Cycle.default_cycles["default_colors"]
    curves = [
        hv.Curve(
            (epochs, np.maximum(np.asarray(v, float), 1e-6)),
            hv.Dimension("epoch"),
            hv.Dimension("p", label="bit error rate p"),
            label=name,
        ).opts(color=colors[i % len(colors)], line_width=2)
        for i, (name, v) in enumerate(series.items())
    ]
    if not curves:
        curves = [hv.Curve([], "epoch", "p")]
    return hv.Overlay(curves).opts(logy=True, responsive=True, min_height=280, legend_position="right",
                                   title="LaNMax: learned p per layer by epoch")


def spectra_plot(ds: xr.Dataset, layer: str) -> hv.Layout:
    """Fig 4.6–4.7: top singular values of a layer's unfolding per training BER, and their
    relative change against the smallest training BER."""
    sv = ds.singular_value.sel(layer=layer).mean("seed")
    colors = hv.Cycle.default_cycles["default_colors"]
    rank = sv["rank"].values
    rank_dim = hv.Dimension("rank", label="index i (1 = largest singular value)")
    left = hv.Overlay([hv.Curve((rank, sv.sel(p_train=pt).values), rank_dim,
                                hv.Dimension("sv", label="singular value λ_i (mean over seeds)"), label=f"p_t = {pt:g}")
                       .opts(color=colors[i % len(colors)], line_width=2)
                       for i, pt in enumerate(sv.p_train.values)]).opts(
        responsive=True, min_height=300, legend_position="right", title=f"top singular values of {layer}")
    rc = ds.relative_change.sel(layer=layer)
    right = hv.Overlay([hv.Curve((rank, rc.sel(p_train=pt).values), rank_dim,
                                 hv.Dimension("rc", label="relative change Δ_i (fraction)"), label=f"p_t = {pt:g}")
                        .opts(color=colors[i % len(colors)], line_width=2)
                        for i, pt in enumerate(rc.p_train.values)]).opts(
        responsive=True, min_height=300, legend_position="right",
        title=f"change against p_t = {float(rc.p_train.values[0]):g} (Fig 4.8)")
    return (left + right).cols(1)

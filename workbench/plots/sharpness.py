"""Plots of the sharpness-aware training views (thesis ch. 5)."""

from __future__ import annotations

import holoviews as hv
import xarray as xr

from ..experiments.sharpness import noise_dim

LABELS = {"sam": "SAM", "asam": "ASAM", "samson2": "SAMSON₂", "samsoninf": "SAMSON∞"}


def perturbation_plot(ds: xr.Dataset) -> hv.Overlay:
    """Fig 5.1: ``ε*(w)`` per optimizer for weights in ``[-c, c]`` with ``∇L = 1``."""
    colors = hv.Cycle.default_cycles["default_colors"]
    sp = ds.attrs.get("samson_p", float("nan"))
    names = {**LABELS, "samson_p": f"SAMSON (p = {sp:g})"}
    curves = [hv.Curve((ds.w.values, ds.epsilon.sel(optimizer=m).values), hv.Dimension("w", label="weight w"),
                       hv.Dimension("epsilon", label="perturbation ε*(w)"), label=names.get(str(m), str(m)))
              .opts(color=colors[i % len(colors)], line_width=2)
              for i, m in enumerate(ds.optimizer.values)]
    return hv.Overlay(curves).opts(responsive=True, min_height=300, legend_position="top",
                                   title=f"ε*(w), ρ = {ds.attrs['rho']:g}, weights in ±{ds.attrs['c']:g} (Fig 5.1)")


# ---------------------------------------------------------------------------------------------
# chapter-5 study views (datasets of workbench.experiments.sharpness)

def _colors(methods) -> dict[str, str]:
    cycle = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
             "#17becf", "#393b79", "#637939"]
    return {str(m): cycle[i % len(cycle)] for i, m in enumerate(methods)}


def _label(ds: xr.Dataset, m) -> str:
    return str(ds.label.sel({"method": m}).values) if "label" in ds.coords else str(m)


#: the noise axis of each noise mode, in words and with its unit (σ_c is a ratio: no unit)
LEVEL_AXIS = {"sigma_c": "multiplicative noise σ_c (std of δ, each conductance × δ)",
              "sigma": "additive noise σ (µS, std of ε added to each conductance)"}
#: the noise symbol of each noise mode as a title shows it
LEVEL_SYMBOL = {"sigma_c": "σ_c", "sigma": "σ (µS)"}


def level_axis(ds: xr.Dataset) -> str:
    """The noise axis label of a robustness Dataset: words and a unit that mean something."""
    return LEVEL_AXIS[noise_dim(ds)]


def robustness_plot(ds: xr.Dataset, methods=None, adabs: bool = True, highlight: str | None = None,
                    custom: xr.Dataset | None = None, custom_label: str = "your network") -> hv.Overlay:
    """Fig 5.2: accuracy vs conductance noise, mean over seeds and draws, band = ± std over seeds × draws.

    Multiplicative noise ``g~ = g·δ, δ ~ N(1, σ_c²)`` (eq 3.37), additive ``g~ = g + ε,
    ε ~ N(0, σ²)`` µS (eq 3.36).  ``adabs`` picks the study's AdaBS slice (the title says which);
    ``highlight`` draws one method thicker; ``custom`` (a one-network robustness Dataset) is drawn
    dashed in black on top.  The legend sits right of the plot, outside the data."""
    methods = [str(m) for m in (methods if methods is not None else ds.method.values)]
    colors = _colors(ds.method.values)
    sub = ds.sel(adabs=adabs) if "adabs" in ds.dims else ds
    knob = noise_dim(ds)
    x = sub[knob].values
    level = hv.Dimension(knob, label=level_axis(ds))
    acc = hv.Dimension("accuracy", label="test accuracy (fraction correct)", range=(0, 1.02))
    elements = []
    for m in methods:
        a = sub.accuracy.sel({"method": m})
        mean = a.mean(("seed", "draw")).values
        std = a.std(("seed", "draw")).values
        lw = 4 if m == highlight else 2
        alpha = 1.0 if (highlight is None or m == highlight) else 0.45
        elements.append(hv.Spread((x, mean, std), level, [acc, "std"]).opts(color=colors[m], alpha=0.12 * alpha))
        elements.append(hv.Curve((x, mean), level, acc, label=_label(ds, m)).opts(color=colors[m], line_width=lw,
                                                                                  alpha=alpha))
    if custom is not None:
        c = custom.sel(adabs=adabs) if "adabs" in custom.dims else custom
        cm = c.accuracy.mean([d for d in c.accuracy.dims if d != knob]).values
        elements.append(hv.Curve((c[knob].values, cm), level, acc, label=custom_label).opts(
            color="black", line_dash="dashed", line_width=3))
    symbol = LEVEL_SYMBOL[knob]
    title = f"Accuracy vs {symbol}, {'with' if adabs else 'without'} AdaBS (Fig 5.2)"
    return hv.Overlay(elements).opts(responsive=True, min_height=420, legend_position="right",
                                     title=title, show_grid=True)


def clean_accuracy_points(ds: xr.Dataset, methods=None) -> hv.Overlay:
    """Clean accuracy per method (Tab 5.1): each trained network read as stored (no conductance
    noise, no AdaBS), a point at the mean over seeds with a whisker of ± one standard deviation
    over seeds.  Points, not bars: the accuracies sit near 1, where a bar's length would mean
    nothing once the axis does not start at 0."""
    methods = [str(m) for m in (methods if methods is not None else ds.method.values)]
    ca = ds.clean_accuracy.sel({"method": methods})
    labels = [_label(ds, m) for m in methods]
    n = int(ca.sizes["seed"])
    mean = ca.mean("seed").values
    std = ca.std("seed", ddof=1).values if n > 1 else ca.std("seed").values
    lo = max(0.0, float((mean - std).min()) - 0.005)
    hi = min(1.0, float((mean + std).max()) + 0.005)
    mdim = hv.Dimension("method", label="training method")
    adim = hv.Dimension("clean", label="clean test accuracy", range=(lo, hi))
    errs = hv.ErrorBars((labels, mean, std), mdim, [adim, "std"]).opts(line_width=2)
    pts = hv.Scatter((labels, mean, std), mdim, [adim, hv.Dimension("std", label="std over seeds")]).opts(
        size=9, color="#4c72b0", tools=["hover"])
    return (errs * pts).opts(responsive=True, min_height=260, xrotation=45, show_grid=True,
                             title=f"Clean accuracy, no noise, no AdaBS: mean ± one std over {n} seeds (Tab 5.1)")


def sharpness_scatter(ds: xr.Dataset, variant: str = "samson2", group: str = "all") -> hv.Overlay:
    """Fig 5.4: m-sharpness of each trained network vs its robustness acc(0) − acc(σ_c high)."""
    colors = {"normal": "#1f77b4", "clipping": "#d62728", "noise": "#2ca02c"}
    pts = []
    for m in ds.method.values:
        mode = str(ds["mode"].sel({"method": m}).values)
        if group != "all" and mode != group:
            continue
        for s in ds.seed.values:
            pts.append((float(ds.sharpness.sel({"method": m, "seed": s, "variant": variant})),
                        float(ds.robustness.sel({"method": m, "seed": s})), _label(ds, m), int(s), mode))
    kdims = [
        hv.Dimension(
            "sharpness", label=f"m-sharpness ({LABELS.get(variant, variant)}, ρ = {ds.attrs.get('rho', 0.5):g})"
        )
    ]
    vdims = [hv.Dimension("robustness", label=f"accuracy lost from σ_c = 0 to σ_c = {ds.attrs.get('high', 0.4):g}"),
             "method", "seed", "mode"]
    scatter = hv.Scatter(pts, kdims, vdims).opts(color="mode", cmap=colors, size=9, tools=["hover"], responsive=True,
                                                 min_height=360, show_legend=True, legend_position="right")
    r = float(ds.pearson_r.sel(variant=variant, group=group))
    p = float(ds.p_value.sel(variant=variant, group=group))
    n = int(ds.n_points.sel(variant=variant, group=group))
    return scatter.opts(title=f"Sharpness vs robustness ({group}): Pearson r = {r:.2f}, p = {p:.2g}, n = {n} (Fig 5.4)")


def quantization_plot(ds: xr.Dataset, methods=None) -> hv.Overlay:
    """Fig 5.6: accuracy vs bits of post-training linear quantisation, mean over seeds."""
    methods = [str(m) for m in (methods if methods is not None else ds.method.values)]
    colors = _colors(ds.method.values)
    curves = [hv.Curve((ds.bits.values, ds.accuracy.sel({"method": m}).mean("seed").values),
                       hv.Dimension("bits", label="bits per weight"), hv.Dimension("accuracy", label="test accuracy"),
                       label=_label(ds, m)).opts(color=colors[m], line_width=2) *
              hv.Scatter((ds.bits.values, ds.accuracy.sel({"method": m}).mean("seed").values), "bits", "accuracy").opts(
                  color=colors[m], size=6)
              for m in methods]
    return hv.Overlay(curves).opts(responsive=True, min_height=340, legend_position="right", show_grid=True,
                                   title="Post-training linear quantisation, first layer excluded (Fig 5.6)")


def _transform_label(name: str) -> str:
    """``rotation_20`` → ``rotated 20°``, ``shear_28.6`` → ``sheared 28.6°``, ``zoom_60`` → ``zoomed to 60 %``."""
    kind, _, value = str(name).partition("_")
    return {"rotation": f"rotated {value}°", "shear": f"sheared {value}°", "zoom": f"zoomed to {value} %"}.get(
        kind, str(name)
    )


def ood_heatmap(ds: xr.Dataset, methods=None) -> hv.Layout:
    """Fig 5.7 / Tab B: accuracy per OOD test set and method (mean over seeds), and wins per method
    (stacked, so each keeps the page's width)."""
    methods = [str(m) for m in (methods if methods is not None else ds.method.values)]
    mean = ds.accuracy.sel({"method": methods}).mean("seed")
    rows = [(_transform_label(t), _label(ds, m), float(mean.sel({"method": m, "transform": t})))
            for m in methods for t in ds.transform.values]
    heat = hv.HeatMap(rows, [hv.Dimension("transform", label="test set"), "method"],
                      hv.Dimension("accuracy", label="test accuracy")).opts(
        cmap="viridis", colorbar=True, tools=["hover"], xrotation=45, responsive=True, min_height=400,
        title="Accuracy on transformed test sets (mean over seeds, Fig 5.7)")
    wins = hv.Bars(([_label(ds, m) for m in methods], ds.wins.sel({"method": methods}).values),
                   hv.Dimension("method", label="training method"), hv.Dimension("wins", label="test sets won")).opts(
        xrotation=45, responsive=True, min_height=300, color="#55a868", tools=["hover"],
        title="Test sets on which each method is best")
    return (heat + wins).cols(1)


def drift_plot(ds: xr.Dataset, methods=None) -> hv.Overlay:
    """Fig 5.5: accuracy on aihwkit's PCM model vs time since programming, mean over seeds and draws."""
    methods = [str(m) for m in (methods if methods is not None else ds.method.values)]
    colors = _colors(ds.method.values)
    t = ds.t_inference.values
    tdim = hv.Dimension("t", label="time since programming (s)")
    adim = hv.Dimension("accuracy", label="test accuracy")
    els = []
    for m in methods:
        a = ds.accuracy.sel({"method": m})
        mean = a.mean([d for d in a.dims if d != "t_inference"]).values
        els.append(hv.Curve((t, mean), tdim, adim, label=_label(ds, m)).opts(color=colors[m], line_width=2))
        els.append(hv.Scatter((t, mean), tdim, adim).opts(color=colors[m], size=6))
    return hv.Overlay(els).opts(logx=True, responsive=True, min_height=340, legend_position="right", show_grid=True,
                                title="PCM drift through IBM aihwkit (1 s, 1 h, 1 day, 1 year; Fig 5.5)")


def rho_plot(ds: xr.Dataset, method: str, highlight: float | None = None) -> hv.Overlay:
    """Accuracy vs σ_c for each ρ of one sharpness-aware method (the trade-off ρ controls)."""
    sub = ds.sel({"method": method})
    level = hv.Dimension("sigma_c", label="multiplicative noise σ_c")
    acc = hv.Dimension("accuracy", label="test accuracy", range=(0, 1.02))
    els = []
    rhos = [float(r) for r in sub.rho.values if r == r]
    for i, r in enumerate(rhos):
        mean = sub.accuracy_mean.isel(rho_index=i).mean("seed").values
        hl = highlight is not None and abs(r - highlight) < 1e-12
        els.append(hv.Curve((sub.sigma_c.values, mean), level, acc, label=f"ρ = {r:g}").opts(
            line_width=4 if hl else 2, alpha=1.0 if hl or highlight is None else 0.5))
    return hv.Overlay(els).opts(
        responsive=True,
        min_height=340,
        legend_position="right",
        show_grid=True,
        title=f"{_label(ds, method)}: accuracy vs σ_c for each ρ (seed {int(ds.seed.values[0])})",
    )

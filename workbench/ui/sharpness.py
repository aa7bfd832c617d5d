"""The "Sharpness & robustness" page: robustness curves per training method, the optimizer and ρ of
your own network, sharpness vs robustness, ρ trade-off, quantisation, OOD, PCM drift and the
perturbation explorer (thesis ch. 5)."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import panel as pn
import param

from ..plots.sharpness import (clean_accuracy_bars, drift_plot, ood_heatmap, perturbation_plot, quantization_plot,
                               rho_plot, robustness_plot, sharpness_scatter)
from .sharpness_explorer import REGENERATE, RHO_CHOICES, SharpnessExplorer, is_sharpness_aware
from .base import ExplorerPage, hv_pane, regenerate_footer, spinner

TEXT = {
    "robustness": ("**Robustness to conductance noise (Fig 5.2).** Each curve is one training method: mean accuracy over "
                   "3 seeds × 10 Monte-Carlo draws of the crossbar noise, the band ± one std. Multiplicative noise "
                   "multiplies every conductance by δ ~ N(1, σ_c²) (eq 3.37); additive noise adds ε ~ N(0, σ²) µS at "
                   "g_u = 25 µS (eq 3.36). AdaBS re-estimates the batch-norm statistics under the noise first. Pick an "
                   "optimizer and ρ on the left: its own curve is drawn dashed (train it if it is not in the store)."),
    "sharpness": ("**m-sharpness vs robustness (Fig 5.4, Tab 5.10).** m-sharpness (eq 3.24 for SAM, eq 5.5 for ASAM and "
                  "SAMSON; ρ = 0.5, minibatches of 128) is the loss increase under the worst first-order perturbation; "
                  "robustness is acc(σ_c = 0) − acc(σ_c = 0.4) with AdaBS. Each point is one trained network."),
    "rho": ("**ρ controls the trade-off.** Each sharpness-aware method trained with every ρ of its thesis grid (Table 5.6), "
            "seed 0, with AdaBS."),
    "quantization": ("**Post-training linear quantisation (Fig 5.6).** Symmetric per-tensor k-bit weights, no retraining; "
                     "the first layer stays in full precision."),
    "ood": ("**Out-of-distribution test sets (Fig 5.7).** The test images rotated by 20°/40°, sheared by 28.6°/57.3° and "
            "zoomed to 60–140 %; a method wins a transform when its mean over seeds is the highest."),
    "drift": ("**PCM drift (Fig 5.5).** The networks programmed on IBM aihwkit's PCM model (programming and read noise, "
              "conductance drift, global drift compensation), read 1 s, 1 h, 1 day and 1 year later; mean of 10 draws."),
    "perturbation": ("**What each optimizer perturbs (Fig 5.1).** ε*(w) for one layer of weights evenly spread in ±c with "
                     "a unit gradient: SAM moves every weight alike, ASAM in proportion to |w|, SAMSON normalises by the "
                     "layer's ‖W‖_p, so the perturbation no longer depends on the layer's scale."),
}


class SharpnessPage(ExplorerPage):
    """Sharpness-aware training against memristor noise."""

    explorer = param.ClassSelector(class_=SharpnessExplorer)
    explorer_class = SharpnessExplorer
    title = "Sharpness & robustness"

    def __init__(self, **params):
        super().__init__(**params)
        ex = self.explorer
        self._method = pn.widgets.Select.from_param(ex.param.method, label="optimizer / method",
                                                    options={v: k for k, v in _labels().items()})
        self._rho = pn.widgets.DiscreteSlider(label="ρ (neighbourhood size)", options=RHO_CHOICES, value=_snap(ex.rho))
        self._rho.param.watch(lambda e: setattr(ex, "rho", float(e.new)), "value")
        ex.param.watch(lambda e: setattr(self._rho, "value", _snap(e.new)), "rho")
        self._adabs = pn.widgets.Checkbox.from_param(ex.param.adabs, label="AdaBS")
        self._noise = pn.widgets.RadioButtonGroup.from_param(ex.param.noise, label="noise")
        self._shown = pn.widgets.MultiChoice.from_param(ex.param.shown, label="methods on the plots",
                                                        options={v: k for k, v in _labels().items()})
        self._seed = pn.widgets.IntInput.from_param(ex.param.seed, label="seed", width=90)
        self._epochs = pn.widgets.IntInput.from_param(ex.param.epochs, label="epochs", width=90)
        self._run_controls("train", "Train")
        ex.param.watch(self._running, ["method"])
        self._variant = pn.widgets.Select.from_param(ex.param.variant, label="m-sharpness of")
        self._group = pn.widgets.RadioButtonGroup.from_param(ex.param.group, label="training modes")
        self._pert_rho = pn.widgets.FloatSlider.from_param(ex.param.pert_rho, label="ρ", step=0.01)
        self._pert_c = pn.widgets.FloatSlider.from_param(ex.param.pert_c, label="weights in ±c", step=0.01)
        self._pert_p = pn.widgets.FloatSlider.from_param(ex.param.pert_p, label="norm p (extra SAMSON curve)", step=0.5)
        if pn.state.location is not None:
            pn.state.location.sync(ex, {"method": "method", "rho": "rho", "adabs": "adabs"})
        self._start()

    def _running(self, *_):
        super()._running()
        self._rho.disabled = not is_sharpness_aware(self.explorer.method)

    # ---------------------------------------------------------------- views
    def _curves_ds(self):
        ex = self.explorer
        return ex.robustness if ex.noise == "multiplicative" else ex.additive

    @param.depends("explorer.robustness", "explorer.additive", "explorer.noise", "explorer.adabs", "explorer.shown",
                   "explorer.selected", "explorer.method")
    def _robustness(self):
        ex = self.explorer
        ds = self._curves_ds()
        if ds is None:
            return spinner("loading the robustness study…")
        adabs = ex.adabs if bool(np.isin(ex.adabs, ds.adabs.values)) else bool(ds.adabs.values[0])
        shown = [m for m in ex.shown if m in ds.method.values]
        custom = ex.selected
        if custom is not None and custom.attrs.get("noise") != ex.noise:
            custom = None
        plot = robustness_plot(ds, shown, adabs=adabs, highlight=ex.method, custom=custom,
                               custom_label=ex.selected_label or "your network")
        return pn.Column(hv_pane(plot), hv_pane(clean_accuracy_bars(ds, shown)), sizing_mode="stretch_width")

    @param.depends("explorer.selected", "explorer.selected_label")
    def _readout(self):
        ex = self.explorer
        ds = ex.selected
        if ds is None:
            return pn.pane.Markdown(f"**{ex.selected_label or ex.describe()}** — not trained yet.")
        m = ds.accuracy_mean.isel(method=0, seed=0, adabs=0)
        rows = " | ".join(f"{float(v):.3f}" for v in m.values)
        head = " | ".join(f"{float(v):g}" for v in m.level.values)
        return pn.pane.Markdown(f"**{ex.selected_label}** (clean {float(ds.clean_accuracy.values.ravel()[0]):.3f})\n\n"
                                f"| {ds.attrs['level_name']} | {head} |\n|---|{'---|' * m.sizes['level']}\n"
                                f"| accuracy | {rows} |", sizing_mode="stretch_width")

    @param.depends("explorer.history")
    def _loss(self):
        h = self.explorer.history
        if not h:
            return pn.pane.Markdown("*Training loss appears here, epoch by epoch, while a network trains.*")
        curve = hv.Curve((np.arange(1, len(h) + 1), h), "epoch", hv.Dimension("loss", label="training loss")).opts(
            responsive=True, min_height=200, line_width=2, title="Training loss of the live run")
        return hv_pane(curve)

    @param.depends("explorer.sharpness", "explorer.variant", "explorer.group")
    def _sharpness(self):
        ds = self.explorer.sharpness
        if ds is None:
            return spinner("loading the m-sharpness study…")
        table = ds[["pearson_r", "p_value", "n_points"]].to_dataframe().round(3).reset_index()
        return pn.Column(hv_pane(sharpness_scatter(ds, self.explorer.variant, self.explorer.group)),
                         pn.pane.DataFrame(table, index=False, sizing_mode="stretch_width"), sizing_mode="stretch_width")

    @param.depends("explorer.rho_sweep", "explorer.method", "explorer.rho")
    def _rho_view(self):
        ds, ex = self.explorer.rho_sweep, self.explorer
        if ds is None:
            return spinner("loading the ρ study…")
        method = ex.method if ex.method in ds.method.values else str(ds.method.values[-1])
        return hv_pane(rho_plot(ds, method, highlight=ex.rho if method == ex.method else None))

    @param.depends("explorer.quantization", "explorer.shown")
    def _quantization(self):
        ds = self.explorer.quantization
        if ds is None:
            return spinner("loading the quantisation study…")
        return hv_pane(quantization_plot(ds, [m for m in self.explorer.shown if m in ds.method.values]))

    @param.depends("explorer.ood", "explorer.shown")
    def _ood(self):
        ds = self.explorer.ood
        if ds is None:
            return spinner("loading the OOD study…")
        return hv_pane(ood_heatmap(ds))

    @param.depends("explorer.drift", "explorer.shown")
    def _drift(self):
        ds = self.explorer.drift
        if ds is None:
            return spinner("loading the PCM drift study…")
        shown = [m for m in self.explorer.shown if m in ds.method.values]
        year = ds.accuracy.isel(t_inference=-1).mean(("seed", "draw"))
        lines = ", ".join(f"{_label_of(ds, m)} {float(year.sel({'method': m})):.3f}" for m in shown)
        return pn.Column(hv_pane(drift_plot(ds, shown)), pn.pane.Markdown(f"After one year: {lines}."),
                         sizing_mode="stretch_width")

    @param.depends("explorer.perturbation")
    def _perturbation(self):
        return hv_pane(perturbation_plot(self.explorer.perturbation))

    def __panel__(self):
        controls = pn.Column("#### Your network", self._method, self._rho, pn.Row(self._seed, self._epochs),
                             pn.Row(self._run, self._cancel), self._progress, "#### Curves", self._noise, self._adabs,
                             self._shown, width=300)
        tabs = pn.Tabs(
            ("Robustness", pn.Column(pn.Row(controls, pn.Column(self._robustness, self._readout, self._loss,
                                                                sizing_mode="stretch_width"), sizing_mode="stretch_width"),
                                     pn.pane.Markdown(TEXT["robustness"]), sizing_mode="stretch_width")),
            ("Sharpness vs robustness", pn.Column(pn.Row(self._variant, self._group), self._sharpness,
                                                  pn.pane.Markdown(TEXT["sharpness"]), sizing_mode="stretch_width")),
            ("ρ trade-off", pn.Column(self._rho_view, pn.pane.Markdown(TEXT["rho"]), sizing_mode="stretch_width")),
            ("Quantisation", pn.Column(self._quantization, pn.pane.Markdown(TEXT["quantization"]), sizing_mode="stretch_width")),
            ("Out of distribution", pn.Column(self._ood, pn.pane.Markdown(TEXT["ood"]), sizing_mode="stretch_width")),
            ("PCM drift", pn.Column(self._drift, pn.pane.Markdown(TEXT["drift"]), sizing_mode="stretch_width")),
            ("Perturbation ε*(w)", pn.Column(pn.Row(self._pert_rho, self._pert_c, self._pert_p), self._perturbation,
                                             pn.pane.Markdown(TEXT["perturbation"]), sizing_mode="stretch_width")),
            dynamic=True, sizing_mode="stretch_width")
        foot = regenerate_footer(REGENERATE)
        return pn.Column(self._status, tabs, foot, sizing_mode="stretch_width")


def _labels() -> dict[str, str]:
    from ..experiments.sharpness import LABELS
    return dict(LABELS)


def _snap(rho: float) -> float:
    """The ρ slider's choice nearest to ``rho``."""
    return min(RHO_CHOICES, key=lambda r: abs(r - rho))


def _label_of(ds, method: str) -> str:
    return str(ds.label.sel({"method": method}).values)

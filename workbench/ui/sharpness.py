"""The "Sharpness & robustness" page: robustness curves per training method, the optimizer and ρ of
your own network, sharpness vs robustness, ρ trade-off, quantisation, OOD, PCM drift and the
perturbation explorer (thesis ch. 5)."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import panel as pn
import param

from ..experiments.sharpness import noise_dim
from ..plots.sharpness import (
    clean_accuracy_points,
    drift_plot,
    ood_heatmap,
    perturbation_plot,
    quantization_plot,
    rho_plot,
    robustness_plot,
    sharpness_scatter,
)
from .base import ExplorerPage, about_fold, downloads, hv_pane, number_field, plain_error, regenerate_footer, spinner
from .sharpness_explorer import REGENERATE, RHO_CHOICES, SharpnessExplorer, is_sharpness_aware
from .urlstate import PageURL, URLKnob, URLValueError, fmt_number

#: the page's sub-tabs: URL value → tab title
TABS = {"robustness": "Robustness", "sharpness": "Sharpness vs robustness", "rho": "ρ trade-off",
        "quantization": "Quantisation", "ood": "Out of distribution", "drift": "PCM drift",
        "perturbation": "Perturbation ε*(w)"}

TEXT = {
    "robustness": (
        "**Robustness to conductance noise (Fig 5.2).** Each curve is one training method: mean accuracy over "
        "3 seeds × 10 Monte-Carlo draws of the crossbar noise, the band ± one std. Multiplicative noise "
        "multiplies every conductance by δ ~ N(1, σ_c²) (eq 3.37); additive noise adds ε ~ N(0, σ²) µS at "
        "g_u = 25 µS (eq 3.36). AdaBS re-estimates the batch-norm statistics under the noise first. "
        "SAM (sharpness-aware minimisation) trains against the worst weight perturbation within a radius ρ; "
        "ASAM scales that radius with each weight's size; SAMSON scales it with each layer's norm. "
        "*+ clip* keeps the weights within ±c during training; *SGD + noise* trains under injected "
        "conductance noise. Pick an optimizer and ρ above: its own curve is drawn dashed (press Train "
        "if that network is not in the results store yet)."
    ),
    "sharpness": (
        "**m-sharpness vs robustness (Fig 5.4, Tab 5.10).** m-sharpness (eq 3.24 for SAM, eq 5.5 for ASAM and "
        "SAMSON; ρ = 0.5, minibatches of 128) is the loss increase under the worst first-order perturbation; "
        "robustness is acc(σ_c = 0) − acc(σ_c = 0.4) with AdaBS. Each point is one trained network."
    ),
    "rho": (
        "**ρ controls the trade-off.** Each sharpness-aware method trained with every ρ of its thesis grid "
        "(Table 5.6), seed 0, with AdaBS."
    ),
    "quantization": (
        "**Post-training linear quantisation (Fig 5.6).** Symmetric per-tensor k-bit weights, no retraining; "
        "the first layer stays in full precision."
    ),
    "ood": (
        "**Out-of-distribution test sets (Fig 5.7).** The test images rotated by 20°/40°, sheared by 28.6°/57.3° and "
        "zoomed to 60–140 %; a method wins a transform when its mean over seeds is the highest."
    ),
    "drift": (
        "**PCM drift (Fig 5.5).** The networks programmed on IBM aihwkit's PCM model (programming and read noise, "
        "conductance drift, global drift compensation), read 1 s, 1 h, 1 day and 1 year later; mean of 10 draws."
    ),
    "perturbation": (
        "**What each optimizer perturbs (Fig 5.1).** ε*(w) for one layer of weights evenly spread in ±c with "
        "a unit gradient: SAM moves every weight alike, ASAM in proportion to |w|, SAMSON normalises by the "
        "layer's ‖W‖_p, so the perturbation no longer depends on the layer's scale."
    ),
}


class SharpnessPage(ExplorerPage):
    """Sharpness-aware training against memristor noise."""

    explorer_class = SharpnessExplorer
    title = "Sharpness & robustness"
    tab = param.Selector(default="robustness", objects=list(TABS), doc="sub-tab of the page")

    def __init__(self, **params):
        super().__init__(**params)
        ex = self.explorer
        labels = _labels()
        self._method = pn.widgets.Select.from_param(ex.param.method, label="optimizer / method",
                                                    options={v: k for k, v in labels.items()},
                                                    sizing_mode="stretch_width", min_width=160)
        self._rho = pn.widgets.DiscreteSlider(label="ρ (neighbourhood size)", options=RHO_CHOICES, value=_snap(ex.rho),
                                              sizing_mode="stretch_width", min_width=160)
        self._rho.param.watch(lambda e: setattr(ex, "rho", float(e.new)), "value")
        ex.param.watch(lambda e: setattr(self._rho, "value", _snap(e.new)), "rho")
        self._rho_note = pn.pane.Markdown(pn.bind(lambda t: f"<small>{t}</small>" if t else "", ex.param.rho_note),
                                          sizing_mode="stretch_width", margin=(0, 10), css_classes=["rho-note"])
        # the box shows AdaBS as the curves use it; the user's own choice (ex.adabs) is kept for the
        # noise mode where it applies
        self._adabs = pn.widgets.Checkbox(label="AdaBS (re-estimate batch-norm statistics under the noise)",
                                          value=ex.effective_adabs())
        self._adabs.param.watch(self._adabs_ticked, "value")
        self._adabs_note = pn.pane.Markdown("", visible=False, margin=(0, 10), css_classes=["adabs-note"],
                                            sizing_mode="stretch_width")
        self._noise = pn.widgets.RadioButtonGroup.from_param(ex.param.noise, label="noise")
        self._shown = pn.widgets.MultiChoice.from_param(ex.param.shown, label="methods on the plots",
                                                        options={v: k for k, v in labels.items()},
                                                        sizing_mode="stretch_width", min_width=160)
        self._seed = number_field(ex, "seed", "seed", width=120)
        self._epochs = number_field(ex, "epochs", "epochs", width=120)
        self._run_controls("train", "Train")
        ex.param.watch(self._running, ["method"])
        ex.param.watch(self._adabs_state, ["noise", "adabs"])
        self._adabs_state()
        self._variant = pn.widgets.Select.from_param(ex.param.variant, label="m-sharpness of",
                                                     options={_variant_label(v): v for v in ex.param.variant.objects})
        self._group = pn.widgets.RadioButtonGroup.from_param(ex.param.group, label="training modes")
        self._pert_rho = pn.widgets.FloatSlider.from_param(ex.param.pert_rho, label="ρ", step=0.01, min_width=160,
                                                           sizing_mode="stretch_width")
        self._pert_c = pn.widgets.FloatSlider.from_param(ex.param.pert_c, label="weights in ±c", step=0.01,
                                                         min_width=160, sizing_mode="stretch_width")
        self._pert_p = pn.widgets.FloatSlider.from_param(ex.param.pert_p, label="norm p (extra SAMSON curve)", step=0.5,
                                                         min_width=160, sizing_mode="stretch_width")
        self._tabs = self._build_tabs()
        self._tabs.param.watch(lambda e: setattr(self, "tab", list(TABS)[e.new]), "active")
        self.param.watch(lambda e: setattr(self._tabs, "active", list(TABS).index(e.new)), "tab")
        #: the page's settings as URL keys, in the order they apply (ρ after the method, which resets it)
        self.url = PageURL([
            URLKnob("tab", self, "tab", label="sub-tab"),
            URLKnob("method", ex, "method", label="optimizer / method"),
            URLKnob("rho", ex, "rho", label="ρ", parse=_parse_rho),
            URLKnob("adabs", ex, "adabs", label="AdaBS"),
            URLKnob("noise", ex, "noise", label="noise"),
            URLKnob("shown", ex, "shown", label="methods on the plots"),
            URLKnob("seed", ex, "seed", label="seed"),
            URLKnob("epochs", ex, "epochs", label="epochs"),
            URLKnob("variant", ex, "variant", label="m-sharpness of"),
            URLKnob("group", ex, "group", label="training modes"),
            URLKnob("pert_rho", ex, "pert_rho", label="perturbation ρ", fmt=lambda v: fmt_number(round(v, 2))),
            URLKnob("pert_c", ex, "pert_c", label="weights in ±c", fmt=lambda v: fmt_number(round(v, 2))),
            URLKnob("pert_p", ex, "pert_p", label="norm p", fmt=lambda v: fmt_number(round(v, 1))),
        ])
        self._start()

    def _running(self, *_):
        super()._running()
        self._rho.disabled = not is_sharpness_aware(self.explorer.method)

    def _adabs_ticked(self, event):
        if not self._adabs.disabled and self.explorer.adabs != event.new:
            self.explorer.adabs = event.new

    def _adabs_state(self, *_):
        """In a noise mode whose study was run with one AdaBS setting only, the checkbox cannot change
        the curves: it shows that setting, is disabled, and a note says why."""
        ex = self.explorer
        choices = ex.adabs_choices()
        fixed = len(set(choices)) == 1
        self._adabs.disabled = fixed
        self._adabs.value = ex.effective_adabs()
        if fixed:
            used = "with" if choices[0] else "without"
            other = "" if ex.adabs == choices[0] else (
                f" Your choice ({'with' if ex.adabs else 'without'} AdaBS) applies again under "
                f"{'multiplicative' if ex.noise == 'additive' else 'additive'} noise.")
            self._adabs_note.object = (f"<small>The {ex.noise}-noise study was run {used} AdaBS only, so these "
                                       f"curves are {used} AdaBS.{other}</small>")
        self._adabs_note.visible = fixed

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
        adabs = ex.effective_adabs()
        if not bool(np.isin(adabs, ds.adabs.values)):
            adabs = bool(ds.adabs.values[0])
        shown = [m for m in ex.shown if m in ds.method.values]
        custom = ex.selected
        if custom is not None and (custom.attrs.get("noise") != ex.noise or bool(custom.adabs.values[0]) != adabs):
            custom = None
        plot = robustness_plot(ds, shown, adabs=adabs, highlight=ex.method, custom=custom,
                               custom_label=ex.selected_label or "your network")
        return pn.Column(pn.pane.HoloViews(plot, linked_axes=False, sizing_mode="stretch_width", min_height=420,
                                           css_classes=["robustness-plot"]),
                         self._downloads("robustness", plot, ds, ex.noise, f"adabs={adabs}"),
                         hv_pane(clean_accuracy_points(ds, shown)), sizing_mode="stretch_width")

    @staticmethod
    def _downloads(what: str, plot, ds, *knobs):
        return downloads(lambda: plot, lambda: ds, lambda: ["sharpness", what, *knobs])

    @param.depends("explorer.selected", "explorer.selected_label")
    def _readout(self):
        ex = self.explorer
        ds = ex.selected
        if ds is None:
            return pn.pane.Markdown(f"**{ex.selected_label or ex.describe()}** — not trained yet.")
        m = ds.accuracy_mean.isel(method=0, seed=0, adabs=0)
        adabs = "with" if bool(ds.adabs.values[0]) else "without"
        rows = " | ".join(f"{float(v):.3f}" for v in m.values)
        knob = noise_dim(ds)
        head = " | ".join(f"{float(v):g}" for v in m[knob].values)
        symbol = "σ_c" if ds.attrs.get("level_name") == "sigma_c" else "σ (µS)"
        clean = float(ds.clean_accuracy.values.ravel()[0])
        return pn.pane.Markdown(
            f"**{ex.selected_label}** — clean accuracy {clean:.3f} (the trained network as stored: no noise, no AdaBS)"
            f"\n\n| {ds.attrs.get('noise', 'noise')} noise {symbol} | {head} |\n|---|{'---|' * m.sizes[knob]}\n"
            f"| mean accuracy {adabs} AdaBS ({ds.attrs.get('draws', '')} draws) | {rows} |",
            sizing_mode="stretch_width", styles={"overflow-x": "auto"})

    @param.depends("explorer.history")
    def _loss(self):
        h = self.explorer.history
        if not h:
            return pn.pane.Markdown("*Training loss appears here, epoch by epoch, while a network trains.*")
        curve = hv.Curve(
            (np.arange(1, len(h) + 1), h), "epoch", hv.Dimension("loss", label="training loss (cross-entropy)")
        ).opts(responsive=True, min_height=200, line_width=2, title="Training loss of the live run")
        return hv_pane(curve)

    @param.depends("explorer.sharpness", "explorer.variant", "explorer.group")
    def _sharpness(self):
        ds = self.explorer.sharpness
        if ds is None:
            return spinner("loading the m-sharpness study…")
        table = ds[["pearson_r", "p_value", "n_points"]].to_dataframe().round(3).reset_index()
        table["variant"] = [_variant_label(v) for v in table["variant"]]
        table = table.rename(columns={"variant": "m-sharpness of", "group": "training modes", "pearson_r": "Pearson r",
                                      "p_value": "p-value", "n_points": "networks"})
        plot = sharpness_scatter(ds, self.explorer.variant, self.explorer.group)
        return pn.Column(
            hv_pane(plot),
            self._downloads("m-sharpness", plot, ds, self.explorer.variant, self.explorer.group),
            pn.pane.DataFrame(table, index=False, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    @param.depends("explorer.rho_sweep", "explorer.method", "explorer.rho")
    def _rho_view(self):
        ds, ex = self.explorer.rho_sweep, self.explorer
        if ds is None:
            return spinner("loading the ρ study…")
        method = ex.method if ex.method in ds.method.values else str(ds.method.values[-1])
        plot = rho_plot(ds, method, highlight=ex.rho if method == ex.method else None)
        return pn.Column(hv_pane(plot), self._downloads("rho", plot, ds, method), sizing_mode="stretch_width")

    @param.depends("explorer.quantization", "explorer.shown")
    def _quantization(self):
        ds = self.explorer.quantization
        if ds is None:
            return spinner("loading the quantisation study…")
        plot = quantization_plot(ds, [m for m in self.explorer.shown if m in ds.method.values])
        return pn.Column(hv_pane(plot), self._downloads("quantization", plot, ds), sizing_mode="stretch_width")

    @param.depends("explorer.ood", "explorer.shown")
    def _ood(self):
        ds = self.explorer.ood
        if ds is None:
            return spinner("loading the OOD study…")
        plot = ood_heatmap(ds)
        return pn.Column(hv_pane(plot), self._downloads("ood", plot, ds), sizing_mode="stretch_width")

    @param.depends("explorer.drift", "explorer.shown")
    def _drift(self):
        ds = self.explorer.drift
        if ds is None:
            return spinner("loading the PCM drift study…")
        shown = [m for m in self.explorer.shown if m in ds.method.values]
        year = ds.accuracy.isel(t_inference=-1).mean(("seed", "draw"))
        lines = ", ".join(f"{_label_of(ds, m)} {float(year.sel({'method': m})):.3f}" for m in shown)
        plot = drift_plot(ds, shown)
        return pn.Column(
            hv_pane(plot),
            self._downloads("pcm-drift", plot, ds),
            pn.pane.Markdown(f"Mean test accuracy after one year: {lines}."),
            sizing_mode="stretch_width",
        )

    @param.depends("explorer.perturbation")
    def _perturbation(self):
        ds, ex = self.explorer.perturbation, self.explorer
        plot = perturbation_plot(ds)
        return pn.Column(hv_pane(plot), self._downloads("perturbation", plot, ds, f"rho={ex.pert_rho:g}",
                                                        f"c={ex.pert_c:g}"), sizing_mode="stretch_width")

    @param.depends("explorer.status", "explorer.error")
    def _status(self):
        ex = self.explorer
        items = [pn.pane.Markdown(f"**Status:** {ex.status or 'ready'}", sizing_mode="stretch_width")]
        if ex.error:
            items.append(pn.pane.Alert(plain_error(ex.error), alert_type="danger", sizing_mode="stretch_width"))
        return pn.Column(*items, sizing_mode="stretch_width")

    def _build_tabs(self) -> pn.Tabs:
        # controls above the plots in a wrapping row: on a narrow screen the plots keep the full width
        network = pn.Column("#### Your network", self._method, self._rho, self._rho_note,
                            pn.FlexBox(self._seed, self._epochs), pn.Row(self._run, self._cancel), self._progress,
                            sizing_mode="stretch_width", min_width=260, styles={"flex": "1 1 300px"})
        curves = pn.Column("#### Curves", self._noise, self._adabs, self._adabs_note, self._shown,
                           sizing_mode="stretch_width", min_width=260, styles={"flex": "1 1 300px"})
        wide = {"sizing_mode": "stretch_width"}
        tabs = pn.Tabs(
            (TABS["robustness"], pn.Column(pn.FlexBox(network, curves, **wide), self._robustness, self._readout,
                                           self._loss, pn.pane.Markdown(TEXT["robustness"]), **wide)),
            (TABS["sharpness"], pn.Column(pn.FlexBox(self._variant, self._group, **wide), self._sharpness,
                                          pn.pane.Markdown(TEXT["sharpness"]), **wide)),
            (TABS["rho"], pn.Column(self._rho_view, pn.pane.Markdown(TEXT["rho"]), **wide)),
            (TABS["quantization"], pn.Column(self._quantization, pn.pane.Markdown(TEXT["quantization"]), **wide)),
            (TABS["ood"], pn.Column(self._ood, pn.pane.Markdown(TEXT["ood"]), **wide)),
            (TABS["drift"], pn.Column(self._drift, pn.pane.Markdown(TEXT["drift"]), **wide)),
            (TABS["perturbation"], pn.Column(pn.FlexBox(self._pert_rho, self._pert_c, self._pert_p, **wide),
                                             self._perturbation, pn.pane.Markdown(TEXT["perturbation"]), **wide)),
            dynamic=True, **wide)
        tabs.active = list(TABS).index(self.tab)
        return tabs

    def __panel__(self):
        return pn.Column(
            self._status, self._tabs, about_fold(regenerate_footer(REGENERATE)), sizing_mode="stretch_width"
        )


def _labels() -> dict[str, str]:
    from ..experiments.sharpness import LABELS
    return dict(LABELS)


def _snap(rho: float) -> float:
    """The ρ slider's choice nearest to ``rho``."""
    return min(RHO_CHOICES, key=lambda r: abs(r - rho))


def _label_of(ds, method: str) -> str:
    return str(ds.label.sel({"method": method}).values)


def _variant_label(variant: str) -> str:
    from ..plots.sharpness import LABELS
    return LABELS.get(variant, variant)


def _parse_rho(text: str) -> float:
    """ρ from a link: one of the slider's choices (the thesis grids, Table 5.6)."""
    allowed = ", ".join(fmt_number(r) for r in RHO_CHOICES)
    try:
        value = float(text)
    except ValueError:
        raise URLValueError(f"ρ must be one of {allowed}") from None
    for r in RHO_CHOICES:
        if abs(r - value) <= 1e-9 * max(1.0, abs(r)):
            return float(r)
    raise URLValueError(f"ρ must be one of {allowed}")

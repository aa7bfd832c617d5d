"""The "Under-volted SRAM" page: uniform BER, layer sensitivity, per-layer p and LaNMax,
energy–accuracy, weight spectra (thesis ch. 4)."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import panel as pn
import param

from ..plots.sram import (energy_accuracy_plot, lanmax_trajectory_plot, layer_p_bars, param_count_bars,
                          sensitivity_plot, spectra_plot, uniform_ber_plot)
from .explorer import P_CHOICES
from .sram_explorer import REGENERATE, SRAMExplorer
from .base import ExplorerPage, regenerate_footer

TEXT = {
    "uniform": ("**Uniform BER (Fig 4.2).** BinaryConnect networks trained with every weight read through a binary "
                "symmetric channel at BER *p_t*, tested over a range of BERs *p* (mean over seeds and Monte-Carlo "
                "draws). A network is most accurate near the BER it was trained at."),
    "sensitivity": ("**Layer sensitivity (Fig 4.1, 4.3).** Every layer at the base BER, one layer at *p = 0.5*: the box "
                    "shows the accuracy over seeds and draws. Some layers (often the first) cannot tolerate noise, "
                    "others barely notice it — the opportunity LaNMax exploits. The dashed line is the base accuracy."),
    "editor": ("**Per-layer BER.** Type a BER for any layer: the memory energy (eq 3.30, ÷ the network stored "
               "reliably in 16 bits) updates as you type. A LaNMax run (Algorithm 1) learns these values: each "
               "epoch it perturbs *p* per layer, regresses the loss on the perturbation, and steps *p* along the "
               "normalised slope; larger α trades accuracy for energy."),
    "energy": ("**Energy vs accuracy (Fig 4.4).** Full precision and noiseless BinaryConnect nets of several widths, "
               "BinaryConnect at a uniform BER, and LaNMax over α. Click a point to see its per-layer BER."),
    "spectra": ("**Weight spectra (Fig 4.6–4.8).** Top singular values of the mode-0 unfolding of a layer's weights, "
                "for nets trained at each *p_t*, and their change relative to the smallest *p_t*."),
}


class SRAMPage(ExplorerPage):
    """Under-volted SRAM and LaNMax."""

    explorer = param.ClassSelector(class_=SRAMExplorer)
    explorer_class = SRAMExplorer
    title = "Under-volted SRAM"

    def __init__(self, **params):
        super().__init__(**params)
        ex = self.explorer
        self._p_train = pn.widgets.DiscreteSlider.from_param(ex.param.p_train, label="training BER p_t")
        self._p = pn.widgets.DiscreteSlider(label="test BER p (log scale)", options=P_CHOICES[1:], value=0.01, formatter="%.0e")
        self._p.param.watch(lambda e: setattr(ex, "p", e.new), "value_throttled")
        self._inputs = {}
        for layer, value in ex.layer_p.items():
            w = pn.widgets.TextInput(label=f"p of {layer}", value=f"{value:g}", width=140)
            w.param.watch(lambda e, layer=layer: self._typed(layer, e.new), "value_input")
            self._inputs[layer] = w
        ex.param.watch(self._sync_inputs, "layer_p")
        self._edit_error = pn.pane.Alert("", alert_type="warning", visible=False)
        self._alpha = pn.widgets.FloatSlider.from_param(ex.param.alpha, label="α (energy weight)", step=0.01, start=0.0, end=10.0)
        self._width = pn.widgets.DiscreteSlider.from_param(ex.param.width, label="width")
        self._epochs = pn.widgets.IntInput.from_param(ex.param.epochs, label="epochs")
        self._run_controls("run_lanmax", "Run LaNMax")
        self._layer = pn.widgets.Select.from_param(ex.param.spectra_layer, label="layer")
        if pn.state.location is not None:
            pn.state.location.sync(ex, {"p_train": "p_t", "alpha": "alpha", "spectra_layer": "layer"})
        self._start()

    # ---------------------------------------------------------------- editor
    def _typed(self, layer: str, text: str) -> None:
        try:
            self.explorer.set_layer_p(layer, float(text))
        except ValueError as exc:
            self._edit_error.object = f"{layer}: {text!r} is not a valid BER — {exc}"
            self._edit_error.visible = True
            return
        self._edit_error.visible = False

    def _sync_inputs(self, event) -> None:
        for layer, value in event.new.items():
            w = self._inputs.get(layer)
            if w is not None:
                try:
                    same = float(w.value_input or w.value) == value
                except ValueError:
                    same = False
                if not same:
                    w.value = f"{value:g}"

    # ---------------------------------------------------------------- views
    @param.depends("explorer.uniform", "explorer.p_train", "explorer.p")
    def _uniform(self):
        ds = self.explorer.uniform
        if ds is None:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=30), "loading the uniform-BER study…")
        return pn.pane.HoloViews(uniform_ber_plot(ds, self.explorer.p_train, self.explorer.p), linked_axes=False,
                                 sizing_mode="stretch_width")

    @param.depends("explorer.sensitivity")
    def _sensitivity(self):
        ds = self.explorer.sensitivity
        if ds is None:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=30), "loading the sensitivity study…")
        return pn.Column(pn.pane.HoloViews(sensitivity_plot(ds), linked_axes=False, sizing_mode="stretch_width"),
                         pn.pane.HoloViews(param_count_bars(ds.param_count), linked_axes=False, sizing_mode="stretch_width"),
                         sizing_mode="stretch_width")

    @param.depends("explorer.layer_p")
    def _energy_readout(self):
        return pn.indicators.Number(label="memory energy ÷ reliable 16-bit", value=self.explorer.edited_energy(),
                                    format="{value:.5f}", font_size="28pt", title_size="11pt")

    @param.depends("explorer.layer_p")
    def _edited_bars(self):
        return pn.pane.HoloViews(layer_p_bars(self.explorer.layer_p, "edited BER per layer"), linked_axes=False,
                                 sizing_mode="stretch_width")

    @param.depends("explorer.lanmax_p", "explorer.lanmax_loss")
    def _trajectory(self):
        loss = self.explorer.lanmax_loss
        curve = hv.Curve((np.arange(1, len(loss) + 1), loss), "epoch", hv.Dimension("loss", label="training loss")).opts(
            responsive=True, min_height=280, line_width=2, title="LaNMax: training loss by epoch")
        return pn.Row(pn.pane.HoloViews(lanmax_trajectory_plot(self.explorer.lanmax_p), linked_axes=False,
                                        sizing_mode="stretch_width"),
                      pn.pane.HoloViews(curve, linked_axes=False, sizing_mode="stretch_width"), sizing_mode="stretch_width")

    @param.depends("explorer.energy")
    def _energy_plot(self):
        ds = self.explorer.energy
        if ds is None:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=30), "loading the energy–accuracy study…")
        plot = energy_accuracy_plot(ds)
        tap = hv.streams.Tap(source=plot, x=None, y=None)
        tap.add_subscriber(lambda x, y: self._pick(x, y))
        ratios = self.explorer.ratios()
        text = ""
        if ratios:
            text = (f"**Energy at equal accuracy ({ratios['target_accuracy']:.3f}):** a uniform BER needs "
                    f"{ratios.get('ratio_vs_bc_uniform', float('nan')):.2f}× and noiseless BinaryConnect (any width) "
                    f"{ratios.get('ratio_vs_bc', float('nan')):.2f}× the memory energy of LaNMax (above 1: LaNMax "
                    f"saves energy). The thesis reports 2.4× and 3.3× for WRN-28-10 on CIFAR-10.")
        return pn.Column(pn.pane.HoloViews(plot, linked_axes=False, sizing_mode="stretch_width"), pn.pane.Markdown(text),
                         sizing_mode="stretch_width")

    def _pick(self, x, y):
        ds = self.explorer.energy
        if x is None or y is None or ds is None or x <= 0:
            return
        d = (np.log10(ds.energy.values) - np.log10(x)) ** 2 / 0.25 + (ds.accuracy_mean.values - y) ** 2 / 0.01
        self.explorer.selected = int(np.argmin(d))

    @param.depends("explorer.selected", "explorer.energy", "explorer.point_sensitivity")
    def _details(self):
        info = self.explorer.point_details()
        if info is None:
            return pn.pane.Markdown("*Click a network on the plot to see its per-layer BER.*")
        head = (f"**{info['method']}** ({'width' if info['method'] in ('fp16', 'bc') else 'p' if info['method'] == 'bc_uniform' else 'α'}"
                f" = {info['value']:g}): accuracy {info['accuracy']:.3f}, energy {info['energy']:.4f}, ρ = {info['rho']:.2f}")
        sens = self.explorer.point_sensitivity
        if info["method"] == "fp16":
            sens_view = pn.pane.Markdown("*Full-precision networks are stored reliably: no BER to be sensitive to.*")
        elif sens is None:
            sens_view = pn.Row(pn.indicators.LoadingSpinner(value=True, size=25), "sensitivity of this network…")
        else:
            sens_view = pn.pane.HoloViews(sensitivity_plot(sens), linked_axes=False, sizing_mode="stretch_width")
        return pn.Column(pn.pane.Markdown(head), pn.pane.HoloViews(layer_p_bars(info["p"]), linked_axes=False,
                                                                   sizing_mode="stretch_width"),
                         sens_view, sizing_mode="stretch_width")

    @param.depends("explorer.spectra", "explorer.spectra_layer")
    def _spectra(self):
        ds = self.explorer.spectra
        if ds is None:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=30), "loading the spectra…")
        from ..analysis.spectra import spectra_ttest
        layer = self.explorer.spectra_layer
        pts = ds.p_train.values
        lines = []
        for rank in (0, 1):
            try:
                t = spectra_ttest(ds, layer, rank, float(pts[0]), float(pts[-1]))
                lines.append(f"λ{rank + 1}: Welch t = {t['t']:.2f}, p-value = {t['p_value']:.3g} "
                             f"(p_t = {pts[0]:g} vs {pts[-1]:g})")
            except Exception as exc:  # too few seeds for a test
                lines.append(f"λ{rank + 1}: no test ({exc})")
        return pn.Column(pn.pane.HoloViews(spectra_plot(ds, layer), linked_axes=False, sizing_mode="stretch_width"),
                         pn.pane.Markdown("  \n".join(lines)), sizing_mode="stretch_width")

    def __panel__(self):
        editor = pn.Column(*self._inputs.values(), self._edit_error, width=200)
        lanmax = pn.Column("#### LaNMax", self._alpha, self._width, self._epochs, pn.Row(self._run, self._cancel), self._progress, width=260)
        tabs = pn.Tabs(
            ("Uniform BER", pn.Column(pn.Row(self._p_train, self._p), self._uniform, pn.pane.Markdown(TEXT["uniform"]),
                                      sizing_mode="stretch_width")),
            ("Layer sensitivity", pn.Column(self._sensitivity, pn.pane.Markdown(TEXT["sensitivity"]), sizing_mode="stretch_width")),
            ("Per-layer p & LaNMax", pn.Column(pn.Row(editor, pn.Column(self._energy_readout, self._edited_bars,
                                                                         sizing_mode="stretch_width"), lanmax,
                                                      sizing_mode="stretch_width"),
                                               self._trajectory, pn.pane.Markdown(TEXT["editor"]), sizing_mode="stretch_width")),
            ("Energy vs accuracy", pn.Column(pn.Row(self._energy_plot, self._details, sizing_mode="stretch_width"),
                                             pn.pane.Markdown(TEXT["energy"]), sizing_mode="stretch_width")),
            ("Spectra", pn.Column(self._layer, self._spectra, pn.pane.Markdown(TEXT["spectra"]), sizing_mode="stretch_width")),
            dynamic=True, sizing_mode="stretch_width")
        foot = regenerate_footer(REGENERATE)
        return pn.Column(self._status, tabs, foot, sizing_mode="stretch_width")

"""The noise playground page (a ``pn.viewable.Viewer`` over :class:`NoiseExplorer`)."""

from __future__ import annotations

import panel as pn
import param

from ..experiments.shipped import REGENERATE_COMMAND
from ..plots import accuracy_distribution, layer_cost_bars, noise_curve_plot, training_curve
from .explorer import NO_LAYER, P_CHOICES, NoiseExplorer
from .base import number_field
from .tasks import session_dispatch
from .urlstate import PageURL, URLKnob

URL_KNOBS = ["technology", "p", "noise", "sigma_c", "sigma", "g_u", "layer", "layer_value", "draws", "seed", "epochs"]

EXPLAIN = {
    "distribution": (
        "**Accuracy over Monte-Carlo draws.** Each dot is the test accuracy of one read of the weights "
        "through the noisy memory (fresh noise every draw). The box spans the middle half of the draws; "
        "the dashed green line is the accuracy of the same network on an ideal memory."),
    "curve": (
        "**Accuracy against the noise knob.** The line is the mean over draws and the band its 95 % "
        "confidence interval; the red line marks the current setting, the dashed green line the clean accuracy."),
    "cost_sram": (
        "**Memory energy.** Reading a bit at error rate *p* costs η(p) = −log(p)/a of the nominal "
        "supply (eq 3.27, a = 12.8); the network's energy sums ζ·η(p)·count(W) over layers (eq 3.30), "
        "here divided by the same network stored reliably in 16 bits."),
    "cost_memristor": (
        "**Crossbar power.** Weights become conductances in [g_min, g_u] on a positive and a negative "
        "crossbar (eq 3.34–3.35); power sums the memristor and amplifier terms of every layer "
        "(eq 3.41–3.44), per inference. Smaller g_u saves power but, with additive noise, costs accuracy."),
    "train": (
        "**Hardware-aware training.** The network is retrained reading its weights through the noisy "
        "memory at every step (straight-through gradients); it then replaces the network evaluated above."),
}


def _throttled_slider(widget: pn.widgets.Widget, obj: param.Parameterized, name: str, to_widget=None):
    """Link ``widget`` → ``obj.name`` on release (``value_throttled``) and ``obj.name`` → widget.

    A change of ``obj.name`` from elsewhere (the URL, a notebook) moves both the widget's
    ``value`` and its ``value_throttled``: otherwise releasing the slider on the value it showed
    when it was built sent no change at all (``value_throttled`` still held that value), and the
    page kept computing the old setting."""
    syncing = []

    def push(event):
        if not syncing and event.new is not None and getattr(obj, name) != event.new:
            setattr(obj, name, event.new)
    widget.param.watch(push, "value_throttled")

    def pull(event):
        value = to_widget(event.new) if to_widget else event.new
        syncing.append(True)
        try:
            with param.edit_constant(widget):
                widget.param.update(value=value, value_throttled=value)
        finally:
            syncing.pop()
    obj.param.watch(pull, name)
    return widget


def _nearest(options, value):
    return min(options, key=lambda o: abs(o - value))


class NoisePlayground(pn.viewable.Viewer):
    """Pick a memory, drag its noise, watch accuracy and energy/power respond."""

    explorer = param.ClassSelector(class_=NoiseExplorer)
    title = "Noise playground"

    def __init__(self, **params):
        fresh = "explorer" not in params
        if fresh:
            params["explorer"] = NoiseExplorer(autorun=False)
        super().__init__(**params)
        ex = self.explorer
        self._widgets = w = {}
        w["technology"] = pn.widgets.RadioButtonGroup.from_param(ex.param.technology, label="memory", color="primary", variant="outline",
                                                                 options={"under-volted SRAM": "sram", "memristor crossbar": "memristor"})
        w["p"] = _throttled_slider(pn.widgets.DiscreteSlider(label="bit error rate p (log scale)", options=P_CHOICES,
                                                             value=_nearest(P_CHOICES, ex.p), formatter="%.0e"),
                                   ex, "p", lambda v: _nearest(P_CHOICES, v))
        w["noise"] = pn.widgets.RadioButtonGroup.from_param(ex.param.noise, label="noise model")
        w["sigma_c"] = _throttled_slider(pn.widgets.FloatSlider(label="σ_c (multiplicative)", start=0, end=0.5, step=0.01,
                                                                value=ex.sigma_c), ex, "sigma_c")
        w["sigma"] = _throttled_slider(pn.widgets.FloatSlider(label="σ (additive, µS)", start=0, end=8, step=0.1,
                                                              value=ex.sigma), ex, "sigma")
        w["g_u"] = _throttled_slider(pn.widgets.FloatSlider(label="g_u (µS)", start=0.5, end=25, step=0.5, value=ex.g_u), ex, "g_u")
        w["layer"] = pn.widgets.Select.from_param(ex.param.layer, label="override one layer")
        w["layer_value"] = _throttled_slider(pn.widgets.FloatSlider(label="that layer's value", start=0, end=0.5, step=0.01,
                                                                    value=ex.layer_value), ex, "layer_value")
        w["draws"] = number_field(ex, "draws", "Monte-Carlo draws")
        w["seed"] = number_field(ex, "seed", "seed")
        w["epochs"] = number_field(ex, "epochs", "training epochs")
        w["train"] = pn.widgets.Button.from_param(ex.param.train, label="Train with this noise", color="success")
        w["cancel"] = pn.widgets.Button.from_param(ex.param.cancel, label="Cancel", color="danger")
        w["use_clean"] = pn.widgets.Button.from_param(ex.param.use_clean, label="Back to clean network", color="light")
        self._progress = pn.indicators.Progress(value=0, max=100, bar_color="success", sizing_mode="stretch_width")
        ex.param.watch(self._sync_visibility, ["technology", "noise", "layer", "training", "trained_with"])
        ex.param.watch(lambda e: setattr(self._progress, "value", e.new), "train_progress")
        self._sync_visibility()
        dispatch = session_dispatch(ex.runner)
        if dispatch is not None:
            ex.dispatch = dispatch
        #: the page's settings as URL keys (the workbench writes and applies them)
        self.url = PageURL([URLKnob(k, ex, k) for k in URL_KNOBS])
        if fresh and ex.result is None:
            ex.refresh()

    def _sync_visibility(self, *_):
        ex, w = self.explorer, self._widgets
        sram = ex.technology == "sram"
        w["p"].visible = sram
        for k in ("noise", "g_u"):
            w[k].visible = not sram
        w["sigma_c"].visible = not sram and ex.noise == "multiplicative"
        w["sigma"].visible = not sram and ex.noise == "additive"
        w["layer_value"].visible = ex.layer != NO_LAYER
        knob = ex.layer_memory_knob()
        w["layer_value"].name = {"p": "that layer's p", "sigma_c": "that layer's σ_c", "g_u": "that layer's g_u ÷ 25 µS"}[knob]
        w["cancel"].disabled = not ex.training
        w["train"].disabled = ex.training
        w["use_clean"].visible = ex.trained_with is not None
        self._progress.visible = ex.training

    # ---------------------------------------------------------------- plots (pure functions of state)
    @param.depends("explorer.result")
    def _distribution(self):
        ds = self.explorer.result
        if ds is None:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=40), "evaluating…")
        return pn.pane.HoloViews(accuracy_distribution(ds), linked_axes=False, sizing_mode="stretch_width", min_height=320)

    @param.depends("explorer.curve", "explorer.result")
    def _curve(self):
        ds = self.explorer.curve
        if ds is None:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=40), "computing the curve…")
        ex = self.explorer
        current = {"p": ex.p, "sigma_c": ex.sigma_c, "g_u": ex.g_u, "sigma": ex.sigma}[ds.attrs["knob"]]
        return pn.pane.HoloViews(noise_curve_plot(ds, current), linked_axes=False, sizing_mode="stretch_width", min_height=320)

    @param.depends("explorer.result")
    def _cost(self):
        info = self.explorer.energy_readout()
        if not info:
            return pn.pane.Markdown("")
        fmt = "{value:.4f}" if self.explorer.technology == "sram" else "{value:.4g}"
        number = pn.indicators.Number(label=info["label"], value=info["value"], format=fmt, font_size="28pt", title_size="11pt")
        extra = f"η(p) = {info['eta']:.3f} per bit read" if "eta" in info else f"units: {info['units']}"
        bars = layer_cost_bars(info["per_layer"], "energy share" if "eta" in info else "power", info["units"])
        return pn.Column(number, pn.pane.Markdown(extra), pn.pane.HoloViews(bars, linked_axes=False, sizing_mode="stretch_width", min_height=260),
                         sizing_mode="stretch_width")

    @param.depends("explorer.history")
    def _training(self):
        h = self.explorer.history
        if not h or not h.get("loss"):
            return pn.pane.Markdown("*No training run in this session yet.*")
        return pn.pane.HoloViews(training_curve(h), linked_axes=False, sizing_mode="stretch_width", min_height=240)

    @param.depends("explorer.status", "explorer.error", "explorer.evaluating")
    def _status(self):
        ex = self.explorer
        items = [pn.pane.Markdown(f"**Status:** {ex.status}", margin=(0, 10))]
        if ex.error:
            items.append(pn.pane.Alert(f"**Error:** {ex.error}", alert_type="danger"))
        return pn.Column(*items, sizing_mode="stretch_width")

    def sidebar(self) -> pn.Column:
        w = self._widgets
        return pn.Column(
            "### Memory", w["technology"], w["p"], w["noise"], w["sigma_c"], w["sigma"], w["g_u"],
            "### One layer", w["layer"], w["layer_value"],
            "### Evaluation", w["draws"], w["seed"],
            "### Hardware-aware training", w["epochs"], pn.Row(w["train"], w["cancel"]), self._progress, w["use_clean"],
            pn.pane.Markdown(f"<small>Opens on results shipped in <code>data/store</code>; regenerate them with "
                             f"<code>{REGENERATE_COMMAND}</code>. Other settings are computed on demand and cached.</small>"),
            width=320)

    def main(self) -> pn.Column:
        return pn.Column(
            self._status,
            pn.Row(pn.Column(self._distribution, pn.pane.Markdown(EXPLAIN["distribution"]), sizing_mode="stretch_width"),
                   pn.Column(self._cost, pn.bind(lambda t: pn.pane.Markdown(EXPLAIN[f"cost_{t}"]), self.explorer.param.technology),
                             sizing_mode="stretch_width"),
                   sizing_mode="stretch_width"),
            self._curve, pn.pane.Markdown(pn.bind(lambda t: f"<small>{t}</small>", self.explorer.param.curve_status)),
            pn.pane.Markdown(EXPLAIN["curve"]),
            "### Training", self._training, pn.pane.Markdown(EXPLAIN["train"]),
            sizing_mode="stretch_width")

    def __panel__(self):
        return pn.Row(self.sidebar(), self.main(), sizing_mode="stretch_width")

"""The noise playground page (a ``pn.viewable.Viewer`` over :class:`NoiseExplorer`)."""

from __future__ import annotations

import panel as pn
import param

from ..experiments.shipped import REGENERATE_COMMAND
from ..plots import accuracy_distribution, layer_cost_bars, noise_curve_plot, training_curve
from .base import ExplorerPage, about_fold, downloads, number_field, plain_error, regenerate_footer, throttled_link
from .explorer import NO_LAYER, P_CHOICES, NoiseExplorer
from .urlstate import PageURL, URLKnob

URL_KNOBS = ["technology", "network", "p", "noise", "sigma_c", "sigma", "g_u", "layer", "layer_value", "draws", "seed",
             "epochs"]

EXPLAIN = {
    "distribution": (
        "**Accuracy over Monte-Carlo draws.** Each dot is the test accuracy of one read of the weights "
        "through the noisy memory (fresh noise every draw). The box spans the middle half of the draws; "
        "the dashed green line is the accuracy of the same network on an ideal memory."),
    "curve": (
        "**Accuracy against the noise knob.** The line is the mean over draws and the band its 95 % "
        "confidence interval; the red line marks the current setting, the dashed green line the clean accuracy."),
    "cost_sram": (
        "**Memory energy.** Lowering an SRAM's supply voltage saves energy but makes bits flip with "
        "probability *p*. Reading a bit at error rate *p* costs η(p) = −log(p)/a of the energy at the nominal "
        "supply (η, the relative read energy; eq 3.27, a = 12.8). The network's memory energy sums "
        "ζ·η(p)·count(W) over its layers (eq 3.30), where count(W) is a layer's number of weights and ζ the "
        "bits stored per weight (ζ = 1 for this network's binary weights). The number above divides that by "
        "the energy of the same network read from reliable memory (η = 1), as the thesis does (§4.4: "
        "p = 0.01 everywhere gives E = η(0.01) = 0.36); the bars split it by layer."),
    "cost_memristor": (
        "**Crossbar power.** Weights become conductances between g_min and g_u (the largest conductance used, "
        "in microsiemens) on a positive and a negative crossbar (eq 3.34–3.35). Reading a conductance adds noise: "
        "*multiplicative* noise of relative spread σ_c (σ_c = 0.1: about ±10 % of the conductance) or *additive* "
        "noise of spread σ in µS, whatever the conductance. The power sums the memristor "
        "and amplifier terms of every layer (eq 3.41–3.44), per inference. Smaller g_u saves power but, with "
        "additive noise, costs accuracy."),
    "train": (
        "**Hardware-aware training.** The network is retrained reading its weights through the noisy "
        "memory at every step (straight-through gradients); it then replaces the network evaluated above."),
}


def _nearest(options, value):
    return min(options, key=lambda o: abs(o - value))


class NoisePlayground(ExplorerPage):
    """Pick a memory, drag its noise, watch accuracy and energy/power respond."""

    explorer_class = NoiseExplorer
    title = "Noise playground"

    def __init__(self, **params):
        super().__init__(**params)
        ex = self.explorer
        self._widgets = w = {}
        w["technology"] = pn.widgets.RadioButtonGroup.from_param(
            ex.param.technology, label="memory", color="primary", variant="outline",
            options={"under-volted SRAM": "sram", "memristor crossbar": "memristor"})
        w["network"] = pn.widgets.Select.from_param(
            ex.param.network, label="network", description="the built-in network of this memory, or one an installed "
            "package registers under the workbench.models entry points")
        w["p"] = throttled_link(pn.widgets.DiscreteSlider(label="bit error rate p (log scale)", options=P_CHOICES,
                                                          value=_nearest(P_CHOICES, ex.p), formatter="%.0e"),
                                ex, "p", lambda v: _nearest(P_CHOICES, v))
        w["noise"] = pn.widgets.RadioButtonGroup.from_param(ex.param.noise, label="noise model")
        w["sigma_c"] = throttled_link(pn.widgets.FloatSlider(label="σ_c (multiplicative)", start=0, end=0.5, step=0.01,
                                                             value=ex.sigma_c), ex, "sigma_c")
        w["sigma"] = throttled_link(pn.widgets.FloatSlider(label="σ (additive, µS)", start=0, end=8, step=0.1,
                                                           value=ex.sigma), ex, "sigma")
        w["g_u"] = throttled_link(pn.widgets.FloatSlider(label="g_u (µS)", start=0.5, end=25, step=0.5, value=ex.g_u),
                                  ex, "g_u")
        w["layer"] = pn.widgets.Select.from_param(ex.param.layer, label="override one layer")
        w["layer_value"] = throttled_link(pn.widgets.FloatSlider(label="that layer's value", start=0, end=0.5,
                                                                 step=0.01, value=ex.layer_value), ex, "layer_value")
        w["draws"] = number_field(ex, "draws", "Monte-Carlo draws")
        w["seed"] = number_field(ex, "seed", "seed")
        w["epochs"] = number_field(ex, "epochs", "training epochs")
        self._run_controls("train", "Train with this noise")
        w["train"], w["cancel"] = self._run, self._cancel
        w["step_epoch"] = pn.widgets.Button.from_param(ex.param.step_epoch, label="Step one epoch", color="primary",
                                                       css_classes=["step-epoch"])
        w["play"] = pn.widgets.Button.from_param(ex.param.play, label="▶ Play", color="primary", css_classes=["play"])
        w["pause"] = pn.widgets.Button.from_param(ex.param.pause, label="⏸ Pause", color="light", css_classes=["pause"])
        ex.param.watch(self._stepping, ["running", "playing", "stepped"])
        self._stepping()
        w["use_clean"] = pn.widgets.Button.from_param(ex.param.use_clean, label="Back to clean network", color="light")
        # uploads are read here and kept in this session's explorer; a file is data, never code
        w["upload_weights"] = pn.widgets.FileInput(accept=".pt,.pth", label="weights (.pt)", multiple=False,
                                                   sizing_mode="stretch_width", css_classes=["upload-weights"])
        w["upload_test"] = pn.widgets.FileInput(accept=".npz", label="test set (.npz)", multiple=False,
                                                sizing_mode="stretch_width", css_classes=["upload-test"])
        w["upload_weights"].param.watch(lambda e: self._uploaded(e, ex.upload_weights), "value")
        w["upload_test"].param.watch(lambda e: self._uploaded(e, ex.upload_test_set), "value")
        w["forget_uploads"] = pn.widgets.Button.from_param(ex.param.forget_uploads, label="Forget my files",
                                                           color="light")
        self._curve_progress = pn.indicators.Progress(value=0, max=100, bar_color="primary", visible=False,
                                                      sizing_mode="stretch_width", min_width=100)
        ex.param.watch(self._curve_bar, ["curve_done", "curve_total"])
        ex.param.watch(self._sync_visibility, ["technology", "noise", "layer", "trained_with"])
        self._sync_visibility()
        #: the page's settings as URL keys (the workbench writes and applies them)
        self.url = PageURL([URLKnob(k, ex, k) for k in URL_KNOBS] + [ex.trained_knob()])
        self._start()

    @staticmethod
    def _uploaded(event, use) -> None:
        widget = event.obj
        if event.new:
            use(widget.filename or "the file", event.new)

    @param.depends("explorer.uploads", "explorer.upload_error")
    def _upload_status(self):
        ex = self.explorer
        items = []
        if ex.upload_error:
            items.append(pn.pane.Alert(f"**File not used:** {ex.upload_error}. Nothing was changed.",
                                       alert_type="danger", css_classes=["upload-error"]))
        if ex.uploads:
            items.append(pn.pane.Markdown("In use (this session only): " + "; ".join(ex.uploads.values()),
                                          css_classes=["upload-status"]))
        self._widgets["forget_uploads"].visible = bool(ex.uploads)
        return pn.Column(*items, sizing_mode="stretch_width")

    def _stepping(self, *_):
        ex, w = self.explorer, self._widgets
        w["step_epoch"].disabled = ex.running or ex.playing
        w["play"].disabled = ex.playing
        w["pause"].disabled = not ex.playing

    @param.depends("explorer.stepped", "explorer.playing", "explorer.epochs")
    def _epoch_line(self):
        ex = self.explorer
        if not ex.stepped:
            return pn.pane.Markdown("<small>Step or play a training one epoch at a time: the curve above is "
                                    "redrawn after each epoch.</small>", css_classes=["epoch-line"])
        return pn.pane.Markdown(f"**Epoch {ex.stepped} of {ex.epochs}**" + (" · playing" if ex.playing else ""),
                                css_classes=["epoch-line"])

    def _curve_bar(self, *_):
        ex = self.explorer
        self._curve_progress.visible = ex.curve_total > 0
        self._curve_progress.value = int(100 * ex.curve_done / ex.curve_total) if ex.curve_total else 0

    def _sync_visibility(self, *_):
        ex, w = self.explorer, self._widgets
        sram = ex.technology == "sram"
        w["p"].visible = sram
        for k in ("noise", "g_u"):
            w[k].visible = not sram
        w["sigma_c"].visible = not sram and ex.noise == "multiplicative"
        w["sigma"].visible = not sram and ex.noise == "additive"
        w["layer_value"].visible = ex.layer != NO_LAYER
        w["layer_value"].name = {"p": "that layer's p", "sigma_c": "that layer's σ_c",
                                 "g_u": "that layer's g_u ÷ 25 µS"}[ex.curve_knob]
        w["use_clean"].visible = ex.trained_with is not None

    # ---------------------------------------------------------------- plots (pure functions of state)
    @param.depends("explorer.result")
    def _distribution(self):
        ds = self.explorer.result
        if ds is None:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=40),
                          "evaluating the accuracy over Monte-Carlo draws…")
        a = ds.attrs
        summary = (f"Mean accuracy **{a['accuracy_mean']:.3f}**, 95 % confidence interval "
                   f"[{a['ci95_low']:.3f}, {a['ci95_high']:.3f}], over {ds.sizes['draw']} draws.")
        plot = accuracy_distribution(ds)
        return pn.Column(pn.pane.HoloViews(plot, linked_axes=False, sizing_mode="stretch_width", min_height=320),
                         pn.pane.Markdown(summary, margin=(0, 10)),
                         downloads(lambda: plot, lambda: ds, lambda: ["playground", "accuracy", *self._knob_words()]),
                         sizing_mode="stretch_width")

    def _knob_words(self) -> list[str]:
        ex = self.explorer
        if ex.technology == "sram":
            return ["sram", f"p={ex.p:g}"]
        return ["memristor", f"sigma_c={ex.sigma_c:g}" if ex.noise == "multiplicative" else f"sigma={ex.sigma:g}",
                f"g_u={ex.g_u:g}"]

    @param.depends("explorer.curve", "explorer.result")
    def _curve(self):
        ds = self.explorer.curve
        if ds is None:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=40), "computing the accuracy-vs-noise curve…")
        ex = self.explorer
        knob = ds.attrs["knob"]
        if knob == "p" and not (ds[knob] > 0).any():       # a log axis cannot place p = 0 alone
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=40), "computing the accuracy-vs-p curve…")
        current = {"p": ex.p, "sigma_c": ex.sigma_c, "g_u": ex.g_u, "sigma": ex.sigma}[knob]
        plot = noise_curve_plot(ds, current)
        return pn.Column(pn.pane.HoloViews(plot, linked_axes=False, sizing_mode="stretch_width", min_height=320),
                         downloads(lambda: plot, lambda: ds,
                                   lambda: ["playground", f"curve-{knob}", *self._knob_words()]),
                         sizing_mode="stretch_width")

    @param.depends("explorer.result")
    def _cost(self):
        info = self.explorer.energy_readout()
        if not info:
            return pn.pane.Markdown("")
        if "eta" in info:
            value = (f"<div style='font-size:28pt;line-height:1.1'>{info['value']:.4f}</div>"
                     f"<div>= {100 * info['value']:.2f} % of the reference energy; "
                     f"η(p) = {info['eta']:.3f} of the nominal read energy per bit</div>")
            per_layer = {k: 100 * v for k, v in info["per_layer"].items()}
            bars = layer_cost_bars(per_layer, "share of the reference energy", "%")
        else:
            # crossbar power is a large number in arbitrary units: shown in millions when it is
            scale, units = (1e6, "millions of arbitrary units") if info["value"] >= 1e6 else (1.0, info["units"])
            shown = f"{info['value'] / scale:.3g}" + (" million" if scale > 1 else "")
            value = f"<div style='font-size:28pt;line-height:1.1'>{shown}</div>"
            bars = layer_cost_bars({k: v / scale for k, v in info["per_layer"].items()}, "power", units)
        readout = pn.pane.HTML(f"<div style='font-size:11pt'>{info['label']}</div>{value}", sizing_mode="stretch_width",
                               css_classes=["cost-readout"])
        return pn.Column(readout,
                         pn.pane.HoloViews(bars, linked_axes=False, sizing_mode="stretch_width", min_height=260),
                         sizing_mode="stretch_width")

    @param.depends("explorer.history")
    def _training(self):
        h = self.explorer.history
        if not h or not h.get("loss"):
            return pn.pane.Markdown("*No training run in this session yet.*")
        loss, acc = training_curve(h)
        return pn.FlexBox(*(pn.pane.HoloViews(p, linked_axes=False, sizing_mode="stretch_width", height=240,
                                              min_width=260, styles={"flex": "1 1 260px"},
                                              css_classes=["training-plot"])
                            for p in (loss, acc)),
                          flex_wrap="wrap", sizing_mode="stretch_width")

    @param.depends("explorer.status", "explorer.error", "explorer.evaluating")
    def _status(self):
        ex = self.explorer
        items = [pn.pane.Markdown(f"**Status:** {ex.status}", margin=(0, 10), css_classes=["playground-status"])]
        if ex.error:
            items.append(pn.pane.Alert(plain_error(ex.error), alert_type="danger"))
        return pn.Column(*items, sizing_mode="stretch_width")

    def sidebar(self) -> pn.Column:
        w = self._widgets
        return pn.Column(
            "### Memory", w["technology"], w["network"], w["p"], w["noise"], w["sigma_c"], w["sigma"], w["g_u"],
            "### One layer", w["layer"], w["layer_value"],
            "### Evaluation", w["draws"], w["seed"],
            "### Hardware-aware training", w["epochs"], pn.Row(w["train"], w["cancel"]), self._progress,
            pn.FlexBox(w["step_epoch"], w["play"], w["pause"], flex_wrap="wrap"), self._epoch_line, w["use_clean"],
            "### Your files",
            pn.pane.Markdown("<small>A state dict (.pt) for the chosen network, or a test set (.npz of x_test, y_test "
                             "in the training data's units: digits are pixel intensities ÷ 16, 8×8, labels 0–9). "
                             f"At most {NoiseExplorer.MAX_UPLOAD_BYTES // 2**20} MiB; kept in this session only, "
                             "never stored.</small>"),
            w["upload_weights"], w["upload_test"],
            self._upload_status, w["forget_uploads"],
            width=280)

    def main(self) -> pn.Column:
        ex = self.explorer
        half = {"sizing_mode": "stretch_width", "min_width": 260, "styles": {"flex": "1 1 300px"}}
        return pn.Column(
            f"## {self.title}",
            self._status,
            pn.FlexBox(pn.Column(self._distribution, pn.pane.Markdown(EXPLAIN["distribution"]), **half),
                       pn.Column(self._cost,
                                 pn.bind(lambda t: pn.pane.Markdown(EXPLAIN[f"cost_{t}"]), ex.param.technology),
                                 **half),
                       flex_wrap="wrap", sizing_mode="stretch_width"),
            self._curve,
            pn.pane.Markdown(pn.bind(lambda t: t, ex.param.curve_status), margin=(0, 10), css_classes=["curve-status"]),
            self._curve_progress,
            pn.pane.Markdown(EXPLAIN["curve"]),
            "### Training", self._training, pn.pane.Markdown(EXPLAIN["train"]),
            about_fold(regenerate_footer(REGENERATE_COMMAND),
                       pn.pane.Markdown("<small>Other settings are computed when first asked for and kept in the "
                                        "results store; a link to a retrained network opens it when this server's "
                                        "store holds it.</small>")),
            sizing_mode="stretch_width", min_width=300)

    def __panel__(self):
        return pn.FlexBox(self.sidebar(), self.main(), flex_wrap="nowrap", sizing_mode="stretch_width")

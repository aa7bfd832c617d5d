"""The Accelerator page (a ``pn.viewable.Viewer`` over :class:`AcceleratorExplorer`): a network on
a crossbar chip with converters, tiles and faults; where its energy goes, how long an inference
takes, and what each saving costs in accuracy."""

from __future__ import annotations

import math

import pandas as pd
import panel as pn
import param
from bokeh.models.widgets.tables import NumberFormatter

from ..experiments.accelerator import REGENERATE_COMMAND
from ..knobs import KnobError
from ..plots.accelerator import accuracy_distribution, accuracy_vs_adc, energy_bars, fmt_energy, fmt_time
from .accelerator_explorer import LAYER_KNOBS, AcceleratorExplorer, explain
from .base import ExplorerPage, about_fold, downloads, number_field, plain_error, regenerate_footer, throttled_link
from .urlstate import PageURL

#: the table's column titles
COLUMN_TITLES = {"adc_bits": "ADC bits", "dac_bits": "DAC bits", "stuck_at": "stuck-at", "act_p": "act. BER"}

INTRO = (
    "An analog accelerator stores the weights as conductances of crossbar tiles. **DACs** turn each layer's "
    "inputs into row voltages, every column sums its currents, and **ADCs** turn the sums back into numbers; "
    "a layer larger than a tile is split and the tiles' partial sums are added digitally. Activations wait "
    "between layers in **SRAM buffers**. Fewer converter bits save energy but round the signals; stuck "
    "devices and flipped buffer bits are faults of a real chip. Energy (J) and time (s) per inference come "
    "from the hardware profile, whose constants cite ISAAC (Shafiee et al., ISCA 2016, Table 6) and "
    "Horowitz (ISSCC 2014).")


class AcceleratorPage(ExplorerPage):
    """Converter bits, tiles, faults and a hardware profile; energy per layer and component,
    latency, and the accuracy over Monte-Carlo draws."""

    explorer_class = AcceleratorExplorer
    title = "Accelerator"

    def __init__(self, **params):
        super().__init__(**params)
        ex = self.explorer
        self._widgets = w = {}
        w["profile"] = pn.widgets.Select.from_param(ex.param.profile, label="hardware profile",
                                                    sizing_mode="stretch_width")
        w["adc_bits"] = throttled_link(pn.widgets.IntSlider(label="ADC bits", start=2, end=12, step=1,
                                                            value=ex.adc_bits, css_classes=["adc-bits"],
                                                            sizing_mode="stretch_width"), ex, "adc_bits")
        w["dac_bits"] = throttled_link(pn.widgets.IntSlider(label="DAC bits", start=2, end=12, step=1,
                                                            value=ex.dac_bits, css_classes=["dac-bits"],
                                                            sizing_mode="stretch_width"), ex, "dac_bits")
        w["sigma_c"] = throttled_link(pn.widgets.FloatSlider(label="σ_c (conductance noise)", start=0, end=0.5,
                                                             step=0.01, value=ex.sigma_c,
                                                             sizing_mode="stretch_width"), ex, "sigma_c")
        w["stuck_at"] = throttled_link(pn.widgets.FloatSlider(label="stuck-at rate", start=0, end=0.5, step=0.005,
                                                              value=ex.stuck_at, sizing_mode="stretch_width"),
                                       ex, "stuck_at")
        w["act_p"] = throttled_link(pn.widgets.FloatSlider(label="activation BER", start=0, end=0.1, step=0.001,
                                                           value=ex.act_p, format="0.000",
                                                           sizing_mode="stretch_width"), ex, "act_p")
        for k, label in (("tile_rows", "tile rows"), ("tile_cols", "tile columns"),
                         ("act_bits", "activation bits"), ("draws", "Monte-Carlo draws"), ("seed", "seed")):
            w[k] = number_field(ex, k, label)
        self._cancel = pn.widgets.Button.from_param(ex.param.cancel, label="Cancel", color="danger", width=90)
        self._progress = pn.indicators.Progress(value=0, max=100, bar_color="primary", visible=False,
                                                sizing_mode="stretch_width", css_classes=["accelerator-progress"])
        ex.param.watch(self._busy, ["evaluating", "progress"])
        self._busy()
        #: the profile's constants, each a bounded number field (a preset choice resets them)
        self._hw_fields = [number_field(ex.hw, k, k, description=ex.hw.param[k].doc)
                           for k in ex.hw.param if k != "name"]
        self._table = pn.widgets.Tabulator(self._frame(), show_index=False, sizing_mode="stretch_width",
                                           layout="fit_data_stretch", height=170, css_classes=["layer-table"],
                                           formatters={k: NumberFormatter(format="0" if k.endswith("bits") else
                                                                          "0.[0000]") for k in LAYER_KNOBS},
                                           titles={"layer": "layer", **COLUMN_TITLES},
                                           editors={"layer": None, **{k: {"type": "number"} for k in LAYER_KNOBS}})
        self._table.on_edit(self._edited)
        ex.param.watch(lambda *_: self._refresh_table(), ["overrides"])
        self.url = PageURL(ex.url_knobs())
        self._start()

    def _busy(self, *_):
        self._progress.visible = self.explorer.evaluating
        self._progress.value = self.explorer.progress
        self._cancel.disabled = not self.explorer.evaluating

    # ---------------------------------------------------------------- per-layer table
    def _frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.explorer.layer_rows(), columns=["layer", *LAYER_KNOBS]).astype(
            {k: "float64" for k in LAYER_KNOBS})

    def _refresh_table(self) -> None:
        self._table.value = self._frame()

    def _edited(self, event) -> None:
        ex = self.explorer
        layer = ex.layers[event.row]
        value = event.value
        if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
            value = None
        elif event.column in ("adc_bits", "dac_bits") and float(value) == int(float(value)):
            value = int(float(value))
        try:
            ex.set_layer(layer, event.column, value)
        except KnobError as exc:
            ex.refuse(str(exc))
            self._refresh_table()

    # ---------------------------------------------------------------- views (pure functions of state)
    @param.depends("explorer.status", "explorer.error")
    def _status(self):
        ex = self.explorer
        items = [pn.pane.Markdown(f"**Status:** {ex.status or 'ready'}", margin=(0, 10),
                                  css_classes=["accelerator-status"])]
        if ex.error:
            items.append(pn.pane.Alert(plain_error(ex.error), alert_type="danger", css_classes=["accelerator-error"]))
        return pn.Column(*items, sizing_mode="stretch_width")

    @param.depends("explorer.result")
    def _energy(self):
        ds = self.explorer.result
        if ds is None:
            return pn.Row(pn.indicators.LoadingSpinner(value=True, size=40), "evaluating the accelerator…")
        total = float(ds.energy_j.mean())
        readout = pn.pane.HTML(
            f"<div style='font-size:11pt'>energy per inference</div>"
            f"<div style='font-size:24pt;line-height:1.1' class='energy-total'>{fmt_energy(total)}</div>"
            f"<div style='font-size:11pt'>latency per inference <b class='latency'>{fmt_time(float(ds.latency_s))}"
            f"</b></div>", sizing_mode="stretch_width", css_classes=["energy-readout"])
        plot = energy_bars(ds)
        return pn.Column(readout,
                         pn.pane.HoloViews(plot, linked_axes=False, sizing_mode="stretch_width", min_height=380,
                                           css_classes=["energy-bars"]),
                         downloads(lambda: plot, lambda: ds, lambda: ["accelerator", "energy", *self._words()]),
                         pn.pane.Markdown(explain(ds), css_classes=["energy-explanation"]),
                         sizing_mode="stretch_width")

    def _words(self) -> list[str]:
        ex = self.explorer
        return [ex.profile, f"adc={ex.adc_bits}", f"dac={ex.dac_bits}", f"tile={ex.tile_rows}x{ex.tile_cols}"]

    @param.depends("explorer.result")
    def _distribution(self):
        ds = self.explorer.result
        if ds is None:
            return pn.pane.Markdown("")
        a = ds.attrs
        plot = accuracy_distribution(ds)
        summary = (f"Mean accuracy **<span class='accuracy-mean'>{a['accuracy_mean']:.4f}</span>**, 95 % confidence "
                   f"interval [{a['ci95_low']:.3f}, {a['ci95_high']:.3f}], over {ds.sizes['draw']} draws; the dashed "
                   "line is the network on an ideal memory.")
        return pn.Column(pn.pane.HoloViews(plot, linked_axes=False, sizing_mode="stretch_width", min_height=300),
                         pn.pane.Markdown(summary, css_classes=["accuracy-summary"]),
                         downloads(lambda: plot, lambda: ds, lambda: ["accelerator", "accuracy", *self._words()]),
                         sizing_mode="stretch_width")

    @param.depends("explorer.study", "explorer.adc_bits")
    def _study(self):
        st = self.explorer.study
        if st is None:
            return pn.pane.Markdown("<small>The shipped ADC study is not in this server's results store.</small>")
        return pn.Column(pn.pane.HoloViews(accuracy_vs_adc(st, self.explorer.adc_bits), linked_axes=False,
                                           sizing_mode="stretch_width", min_height=280),
                         pn.pane.Markdown("<small>Shipped: the default setting with ADCs of "
                                          f"{', '.join(str(int(b)) for b in st.adc_bits.values)} bits (band: 95 % "
                                          "confidence interval of the mean; red line: the current ADC bits).</small>"),
                         sizing_mode="stretch_width")

    def sidebar(self) -> pn.Column:
        w = self._widgets
        profile_card = pn.Card(*self._hw_fields, title="profile constants (SI units)", collapsed=True,
                               sizing_mode="stretch_width")
        return pn.Column(
            "### Chip", w["profile"], profile_card,
            "### All layers", w["adc_bits"], w["dac_bits"], pn.Row(w["tile_rows"], w["tile_cols"]), w["sigma_c"],
            w["stuck_at"], w["act_p"], w["act_bits"],
            "### Evaluation", pn.Row(w["draws"], w["seed"]), pn.Row(self._cancel), self._progress,
            sizing_mode="stretch_width", min_width=260, max_width=340, styles={"flex": "1 1 280px"})

    def main(self) -> pn.Column:
        half = {"sizing_mode": "stretch_width", "min_width": 260, "styles": {"flex": "1 1 300px"}}
        return pn.Column(
            f"## {self.title}", pn.pane.Markdown(INTRO), self._status,
            pn.FlexBox(pn.Column(self._energy, **half), pn.Column(self._distribution, **half),
                       flex_wrap="wrap", sizing_mode="stretch_width"),
            "### Per-layer settings",
            pn.pane.Markdown("<small>A blank cell uses the all-layers setting; type a value to change that layer "
                             "alone, delete it to go back.</small>"),
            self._table,
            "### What the ADC bits cost", self._study,
            about_fold(regenerate_footer(REGENERATE_COMMAND),
                       pn.pane.Markdown("<small>Other settings are computed when first asked for and kept in the "
                                        "results store. The energy model and its sources: "
                                        "<code>workbench/hardware/profile.py</code>; the converter, tile and fault "
                                        "models: <code>workbench/hardware/periphery.py</code>.</small>")),
            sizing_mode="stretch_width", min_width=280, styles={"flex": "3 1 320px"})

    def __panel__(self):
        return pn.FlexBox(self.sidebar(), self.main(), flex_wrap="wrap", sizing_mode="stretch_width")


__all__ = ["AcceleratorPage"]
